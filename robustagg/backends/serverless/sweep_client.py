"""The launcher's side of the sweep function: one invocation per sweep cell, at most
``concurrency`` in flight, throttled invocations retried with exponential back-off, each
cell's result read from the store and checked.

:class:`SweepFunction` knows nothing of Hydra: it takes each cell's settings as plain data (the
fields of ``TrainConfig`` a cell's event may hold) and gives back a :class:`CellOutcome` per
cell, with the numbers of the invocation's ``REPORT`` line. With ``local=True`` it serves the
function on :class:`~.local_runtime.LocalLambda` (configured, as a deployed function is, by
``RA_STORE``) with a private ``redis-server`` unless a store is given.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import random
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from . import cell_result
from .function_config import AUTH_MODES, function_environment
from .stores import make_store, redis_acl, release_run
from .wire import check_run_id

EVENT_VERSION = 1
_LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


@dataclass
class CellOutcome:
    """One cell's invocation. ``result``: the checked result document (None when none was
    read); ``error``: why the cell has no usable result, or the run's own error; the REPORT
    numbers of the last attempt; ``attempts``: invocations made (throttled ones included)."""
    cell: int
    ok: bool
    result: dict | None = None
    error: str | None = None
    billed_ms: float | None = None
    duration_ms: float | None = None
    memory_mb: float | None = None
    max_memory_mb: float | None = None
    init_ms: float | None = None
    attempts: int = 0
    wall_s: float = 0.0


def is_throttled(res) -> bool:
    """True for Lambda's 429 ``TooManyRequestsException`` (concurrency) and rate throttling."""
    return res.status == 429 or any(s in (res.error or "") for s in
                                    ("TooManyRequests", "Throttl", "Rate Exceeded"))


def invoke_with_backoff(invoke, event: dict, attempts: int = 6, base_s: float = 0.5,
                        cap_s: float = 20.0, sleep=time.sleep, rng=random.random):
    """``invoke(event)`` until it is not throttled, at most ``attempts`` times, sleeping a
    random share of ``min(cap_s, base_s * 2**k)`` before retry k ("full jitter"); returns
    ``(last result, attempts made)``. Other failures are not retried: a cell is a whole run."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    for k in range(attempts):
        res = invoke(event)
        if not is_throttled(res) or k == attempts - 1:
            return res, k + 1
        sleep(rng() * min(cap_s, base_s * 2 ** k))


class SweepFunction:
    """Sweep cells as invocations of the sweep function ``function_name``.

    ``store``: the store as this process reaches it (required unless ``local``);
    ``worker_auth``: ``"round"`` (per-cell Redis users created here, the default with Redis) or
    ``"function"``, as the function's ``RA_STORE`` says; ``concurrency``: invocations in flight
    at most; ``attempts``, ``backoff_s``, ``backoff_cap_s``: retries of throttled invocations.
    ``local=True``: serve ``handler`` here with ``memory_mb``, ``timeout_s`` and
    ``function_concurrency`` environments (default ``concurrency``); ``environment``: more
    variables for it.
    """

    def __init__(self, function_name: str = "robustagg-sweep", *, local: bool = False,
                 handler: str | None = None, store: dict | None = None,
                 worker_auth: str | None = None, concurrency: int = 4,
                 function_concurrency: int | None = None, memory_mb: int = 3008,
                 timeout_s: float = 900.0, attempts: int = 6, backoff_s: float = 0.5,
                 backoff_cap_s: float = 20.0, endpoint_url: str | None = None,
                 region: str = "us-east-1", profile: str | None = None,
                 environment: dict | None = None, sweep_id: str | None = None):
        if store is None and not local:
            raise ValueError("sweep function: give a store reachable from Lambda, or local=True")
        if local and not handler:
            raise ValueError("sweep function: local=True needs the handler to serve ('module.function')")
        if concurrency < 1:
            raise ValueError(f"sweep function: concurrency must be >= 1, got {concurrency}")
        kind = (store or {"kind": "redis"}).get("kind")
        self.worker_auth = worker_auth or ("round" if kind == "redis" else "function")
        if self.worker_auth not in AUTH_MODES or (self.worker_auth == "round" and kind != "redis"):
            raise ValueError(f"sweep function: worker_auth must be 'function', or 'round' with a "
                             f"redis store; got {worker_auth!r} with a {kind} store")
        self.function_name, self.local, self.handler = function_name, local, handler
        self.store_config, self.concurrency = store, concurrency
        self.function_concurrency = function_concurrency or concurrency
        self.memory_mb, self.timeout_s = memory_mb, timeout_s
        self.attempts, self.backoff_s, self.backoff_cap_s = attempts, backoff_s, backoff_cap_s
        self.endpoint_url, self.region, self.profile = endpoint_url, region, profile
        self.environment = dict(environment or {})
        self.sweep_id = check_run_id(sweep_id) if sweep_id else secrets.token_hex(6)
        self._secret = os.urandom(32)
        self._redis = self._lambda = self.store = self.invoker = None
        self._acl = threading.Lock()

    def start(self) -> "SweepFunction":
        from .invoker import LambdaInvoker

        store_cfg = self.store_config
        if store_cfg is None:
            from .stores.redis_server import LocalRedisServer

            self._redis = LocalRedisServer()
            store_cfg = self._redis.config()
        self.store = make_store(store_cfg)
        endpoint, creds = self.endpoint_url, None
        if self.local:
            from .local_runtime import LocalLambda

            env = {**function_environment(store_cfg, self.worker_auth), **self.environment}
            self._lambda = LocalLambda(self.handler, name=self.function_name,
                                       memory_mb=self.memory_mb, timeout_s=self.timeout_s,
                                       concurrency=self.function_concurrency, environment=env,
                                       region=self.region)
            self._lambda.prewarm(self.function_concurrency)
            endpoint, creds = self._lambda.endpoint_url, _LOCAL_CREDENTIALS
        # throttling is retried here, with back-off; nothing else is (a cell is a whole run)
        self.invoker = LambdaInvoker(self.function_name, endpoint_url=endpoint,
                                     region=self.region, profile=self.profile,
                                     read_timeout_s=self.timeout_s + 30, retries=0,
                                     log_tail=True, credentials=creds,
                                     max_connections=max(10, self.concurrency))
        return self

    def token(self, cell: int) -> bytes:
        return hmac.new(self._secret, f"{self.sweep_id}/cell/{cell}".encode(),
                        hashlib.sha256).digest()

    def event(self, cell: int, config: dict) -> dict:
        """The invocation event of ``cell``: names, token and the cell's settings, nothing else."""
        return {"version": EVENT_VERSION, "sweep_id": self.sweep_id, "cell": int(cell),
                "token": self.token(cell).hex(), "config": config}

    def run(self, cells: dict):
        """Invoke every cell of ``cells`` (cell index -> config); yields each CellOutcome as it
        finishes."""
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="ra-cell") as pool:
            futures = [pool.submit(self._one, c, cfg) for c, cfg in cells.items()]
            for f in as_completed(futures):
                yield f.result()

    def _one(self, cell: int, config: dict) -> CellOutcome:
        t0 = time.perf_counter()
        tok = self.token(cell)
        if self.worker_auth == "round":
            with self._acl:
                cell_result.grant_cells(self.store.client, self.sweep_id, {cell: tok})
        try:
            res, tries = invoke_with_backoff(self.invoker.invoke, self.event(cell, config),
                                             self.attempts, self.backoff_s, self.backoff_cap_s)
            out = CellOutcome(cell, False, attempts=tries, billed_ms=res.billed_ms,
                              duration_ms=res.duration_ms, memory_mb=res.memory_mb,
                              max_memory_mb=res.max_memory_mb, init_ms=res.init_ms)
            key = cell_result.cell_key(self.sweep_id, cell, tok)
            blob = self.store.get(key) if res.ok else None
            if not res.ok:
                out.error = (f"invocation failed after {tries} attempt(s): {res.error}"
                             if res.error else f"function error {res.function_error}: "
                             f"{str(res.payload)[:300]}")
            elif blob is None:
                answer = res.payload if isinstance(res.payload, dict) else {}
                out.error = (f"no result in the store: {answer.get('error_type')}: "
                             f"{answer.get('error')}")
            else:
                try:
                    out.result = cell_result.decode(blob, self.sweep_id, cell, tok)
                except cell_result.ResultError as e:
                    out.error = f"malformed result: {e}"
                else:
                    out.ok = out.result["ok"]
                    if not out.ok:
                        out.error = f"{out.result['error_type']}: {out.result['error']}"
            self.store.delete_prefix(cell_result.cell_prefix(self.sweep_id, cell))
        finally:
            if self.worker_auth == "round":
                with self._acl:
                    redis_acl.revoke(self.store.client, self.sweep_id, [cell])
        out.wall_s = time.perf_counter() - t0
        return out

    def close(self) -> None:
        if self.store is not None:
            release_run(self.store, self.sweep_id, self.worker_auth == "round")
        if self._lambda is not None:
            self._lambda.close()
        if self._redis is not None:
            self._redis.close()
        self.store = self._lambda = self._redis = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
