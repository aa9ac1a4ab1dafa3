"""The Lambda backend: each round, n stateless worker invocations through boto3, tensors through a store.

``TrainConfig(backend="lambda", backend_kwargs={...})``. One round:

1. the server writes the parameters once to ``ra/<run>/r<round>/params`` (wire format);
2. with Redis and ``worker_auth="round"``, it creates each asked worker's ACL user for this
   round (:mod:`.stores.redis_acl`: read this round's parameters and its own shard, write its
   own gradient key, nothing else), the password derived from the worker's round token;
3. it invokes the function once per asked worker (``RequestResponse`` by default, or ``Event``),
   with an event naming the run, the round and the worker, with the digests of the parameter and
   shard blobs and the worker's round token; never the store's location or a credential (the
   function has those in its own configuration, :mod:`.function_config`);
4. each worker writes its gradient once to its key ``ra/<run>/r<round>/grad/<worker>/<nonce>``
   (the nonce derived from its token: no other worker can name it) with a digest keyed by its
   token (compressed: a ``sparse_grad`` blob of k indices and values, or under ``randk_shared``
   the k values on the mask of the event's ``mask_seed``); the server waits for the keys until
   the round deadline, decodes each blob against (run, round, worker, float32, d or k, token) and counts any mismatch, a function error or a late
   answer as an omission of that worker, with the reason in ``Arrivals.errors``;
5. the round's keys and ACL users are deleted.

Shards are written to the store once, at ``start``, followed by the run's epoch marker
(:func:`.stores.epoch_key`: random bytes). A store may lose its data at any time (a Redis
restart without persistence, a failover), and with it the shards, the round's parameters, its
round users and the gradients written so far. So while gradients are missing the server looks
at the marker; when it is gone, the server writes the shards and the marker again and re-runs
the round for the workers without a gradient (at most twice, within the round's deadline).
Gradients are pure functions of (seed, worker, round, parameters), so a re-run changes no
result; the workers still missing at the deadline are omissions, as always.

With ``local=True`` the backend runs the
function on :class:`~.local_runtime.LocalLambda` (127.0.0.1, awslambdaric processes) configured
as a deployed function would be (``RA_STORE`` in its environment) and, without a ``store``
setting, a private ``redis-server`` it starts and stops. Its admin password stays with the
server: the workers log in as their round users.

``round_stats`` keeps, per round: publish, invoke (first to last answer), collect (store wait +
decode) and cleanup times (summed over re-runs), the billed milliseconds and peak memory reported
in the log tails, and ``store_restored``: how many times the store's data was written again.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import torch

from robustagg.compression import check_message
from robustagg.compression import mask_seed as round_mask_seed

from ..base import Arrivals, Backend, refuse_residual, spec_compressor
from . import wire
from .function_config import AUTH_MODES, function_environment
from .handler import LAMBDA_COMPRESSORS, SCHEMA_VERSION
from .provision_watch import ProvisionWatch
from .stores import (epoch_key, grad_key, make_store, params_key, redis_acl, release_run,
                     round_prefix, shard_key)

HANDLER = "robustagg.backends.serverless.handler.handler"
_SPEC_FIELDS = ("model", "model_kwargs", "batch_size", "seed", "is_byzantine", "attack",
                "attack_kwargs", "workers", "compression", "compression_kwargs")
_LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
_ATTEMPTS = 3         # a round whose store lost its data is re-run at most twice
_LOSS_CHECK_S = 0.1   # while gradients are missing, look at the epoch marker this often


class LambdaBackend(Backend):
    """Workers as Lambda invocations.

    ``function_name``: the deployed function (see ``deploy/``); ``store``: store configuration
    (``{"kind": "redis", "host", "port", "password_env"}`` or ``{"kind": "s3", "bucket", ...}``),
    as reachable from the server; ``worker_auth``: how workers log in to Redis, ``"round"``
    (default: per-round ACL users the server creates, which needs ``ACL SETUSER`` rights) or
    ``"function"`` (a standing worker user in the function's configuration); it must match the
    deployed function's ``RA_STORE``. With ``local=True``, ``worker_store``: the store as the
    functions reach it, with the standing worker user's credentials for ``"function"``
    (default: ``store``), written into the local function's environment; ``environment``:
    more variables for it. ``invocation``: ``RequestResponse`` or ``Event``; ``endpoint_url``,
    ``region``, ``profile``: where and as whom to invoke; ``retries``: extra attempts on
    throttling and transport errors; ``log_tail``: read billed durations from the log tail.
    ``concurrency``: invocations in flight at most (default: all workers at once); with
    ``local=True`` also the local function's concurrency, so ``concurrency=2`` runs 10 workers
    through 2 warm processes.
    ``local=True``: run the function here on :class:`LocalLambda` with ``memory_mb``,
    ``timeout_s`` and ``prewarm``.
    ``stats_path``: append each round's ``round_stats`` record there as a JSON line.
    ``watch_threshold``: every 10 rounds, say (log and ``round_stats["provisioning"]``) when
    ``memory_mb`` is over- or under-provisioned by more than this share, judged from the
    workers' billed durations and peak memory (:mod:`.provision_watch`; None: no watch);
    ``sizing``: the calibrated curve ``python -m experiments.cost --right-size`` wrote, to judge
    against.
    """

    def __init__(self, function_name: str = "robustagg-worker", *, local: bool = False,
                 store: dict | None = None, worker_store: dict | None = None,
                 invocation: str = "RequestResponse", endpoint_url: str | None = None,
                 region: str = "us-east-1", profile: str | None = None, retries: int = 2,
                 log_tail: bool = True, memory_mb: int = 1024, timeout_s: float = 60.0,
                 concurrency: int | None = None, prewarm: bool = True, run_id: str | None = None,
                 handler: str = HANDLER, environment: dict | None = None,
                 stats_path: str | None = None, worker_auth: str | None = None,
                 watch_threshold: float | None = 0.25, sizing: dict | None = None):
        if invocation not in ("RequestResponse", "Event"):
            raise ValueError(f"lambda backend: invocation must be 'RequestResponse' or 'Event', "
                             f"got {invocation!r}")
        if store is None and not local:
            raise ValueError("lambda backend: give a store (e.g. {'kind': 'redis', 'host': ..., "
                             "'password_env': ...}) reachable from Lambda, or local=True")
        if store is not None and not isinstance(store, dict):
            raise ValueError(f"lambda backend: store must be a dict of settings, got {type(store).__name__}")
        self.function_name, self.local, self.invocation = function_name, local, invocation
        self.store_config, self.worker_store = store, worker_store
        self.endpoint_url, self.region, self.profile = endpoint_url, region, profile
        self.retries, self.log_tail = retries, log_tail
        self.memory_mb, self.timeout_s, self.concurrency = memory_mb, timeout_s, concurrency
        self.prewarm, self.handler, self.environment = prewarm, handler, dict(environment or {})
        self.stats_path = stats_path
        kind = (store or {"kind": "redis"}).get("kind")
        self.worker_auth = worker_auth or ("round" if kind == "redis" else "function")
        if self.worker_auth not in AUTH_MODES or (self.worker_auth == "round" and kind != "redis"):
            raise ValueError(f"lambda backend: worker_auth must be 'function', or 'round' with a "
                             f"redis store; got worker_auth={worker_auth!r} with a {kind} store")
        self.run_id = wire.check_run_id(run_id) if run_id else secrets.token_hex(6)
        self._secret = os.urandom(32)
        self._epoch = os.urandom(16)  # the value of the run's epoch marker in the store
        self._redis = self._lambda = self._pool = self.store = self.compressor = None
        self._round_users = False  # the server may create round users (checked at start)
        self.round_stats: list[dict] = []
        threads = int(self.environment.get("RA_TORCH_THREADS", 1))
        self.watch = None if watch_threshold is None else ProvisionWatch(
            memory_mb, watch_threshold, threads, sizing)

    # ---- lifecycle ----
    def start(self, specs, data=None):
        from robustagg.run.data import load_dataset
        from robustagg.run.worker import shard_indices

        from .invoker import LambdaInvoker

        for s in specs:
            if not isinstance(s.model, str):
                raise ValueError(f"lambda backend: workers rebuild the model from its registry name; "
                                 f"got model={s.model!r} for worker {s.worker_id}")
        self.n = len(specs)
        self.compressor = spec_compressor(specs)
        if specs[0].compression not in LAMBDA_COMPRESSORS:
            raise ValueError(f"lambda backend: compression={specs[0].compression!r} is not offered "
                             f"(its mask is not a seed a worker can expand); offered: "
                             f"{list(LAMBDA_COMPRESSORS)}")
        refuse_residual(self.compressor, "lambda", "a function keeps nothing between invocations")
        store_cfg = self.store_config
        if store_cfg is None:  # local=True without a store: a private redis-server
            from .stores.redis_server import LocalRedisServer

            self._redis = LocalRedisServer()
            store_cfg = self._redis.config()
        self.store = make_store(store_cfg)
        if self.worker_auth == "round":
            self._check_acl_rights()
            self._round_users = True
        self._data = data if data is not None else load_dataset(specs[0].dataset,
                                                                **specs[0].dataset_kwargs)
        self._shard_rows = {s.worker_id: shard_indices(s, self._data.y_train) for s in specs}
        digests = self._write_shards()
        self._events = {s.worker_id: {
            "version": SCHEMA_VERSION, "run_id": self.run_id, "worker_id": s.worker_id,
            "num_classes": self._data.num_classes, "input_shape": list(self._data.input_shape),
            "x_dtype": "float32", "y_dtype": "int64" if self._data.num_classes else "float32",
            "shard_digests": digests[s.worker_id], "spec": {k: getattr(s, k) for k in _SPEC_FIELDS}}
            for s in specs}
        endpoint, creds = self.endpoint_url, None
        if self.local:
            from .local_runtime import LocalLambda

            env = {**function_environment(self.worker_store or store_cfg, self.worker_auth),
                   **self.environment}
            self._lambda = LocalLambda(self.handler, name=self.function_name,
                                       memory_mb=self.memory_mb, timeout_s=self.timeout_s,
                                       concurrency=self.concurrency or self.n, environment=env,
                                       region=self.region)
            endpoint, creds = self._lambda.endpoint_url, _LOCAL_CREDENTIALS
            if self.prewarm:
                self._lambda.prewarm(self.concurrency or self.n)
        self.invoker = LambdaInvoker(self.function_name, endpoint_url=endpoint, region=self.region,
                                     profile=self.profile, invocation_type=self.invocation,
                                     read_timeout_s=self.timeout_s + 30, retries=self.retries,
                                     log_tail=self.log_tail, credentials=creds,
                                     max_connections=max(10, 2 * self.n))
        # at most `concurrency` invocations in flight: beyond it Lambda throttles (429)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency or max(4, 2 * self.n),
                                        thread_name_prefix="ra-invoke")

    def _write_shards(self) -> dict[int, list[str]]:
        """Write every worker's shard, then the run's epoch marker; returns the digests of the
        shard blobs by worker (the same bytes every time). At start, and again when the store
        has lost its data."""
        digests = {}
        for w, idx in self._shard_rows.items():
            digests[w] = []
            for part, kind, t in (("x", "shard_x", self._data.x_train[idx]),
                                  ("y", "shard_y", self._data.y_train[idx])):
                blob = wire.encode(t.contiguous(), kind=kind, run_id=self.run_id, round=0, worker=w)
                self.store.put(shard_key(self.run_id, w, part), blob, if_absent=False)
                digests[w].append(wire.digest_of(blob))
        self.store.put(epoch_key(self.run_id), self._epoch, if_absent=False)
        return digests

    def _store_intact(self) -> bool:
        """False when the store has lost what the server wrote since :meth:`_write_shards`."""
        return self.store.get(epoch_key(self.run_id)) == self._epoch

    def _check_acl_rights(self):
        """Fail at start, not in round 0, when the server may not create the round users."""
        probe = f"ra.{self.run_id}.probe"
        try:
            self.store.client.execute_command("ACL", "SETUSER", probe, "reset")
            self.store.client.execute_command("ACL", "DELUSER", probe)
        except Exception as e:
            raise ValueError(
                f"lambda backend: worker_auth='round' needs Redis >= 7 and a server user allowed "
                f"ACL SETUSER/DELUSER ({type(e).__name__}: {e}); or give worker_auth='function' "
                f"with a standing worker user (deploy/redis-acl.conf)") from None

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.store is not None:
            release_run(self.store, self.run_id, self._round_users)
        if self._lambda is not None:
            self._lambda.close()
        if self._redis is not None:
            self._redis.close()
        self._pool = self.store = self._lambda = self._redis = None

    # ---- one round ----
    def token(self, round: int, worker: int) -> bytes:
        """Worker ``worker``'s key for round ``round``: HMAC-SHA256(secret, run/round/worker)."""
        return hmac.new(self._secret, f"{self.run_id}/{round}/{worker}".encode(),
                        hashlib.sha256).digest()

    def event(self, round: int, worker: int, d: int, params_digest: str) -> dict:
        ev = {**self._events[worker], "round": round, "d": d, "params_digest": params_digest,
              "token": self.token(round, worker).hex()}
        if self.compressor is not None and self.compressor.shared:
            ev["mask_seed"] = round_mask_seed(self.compressor.seed, round)
        return ev

    def _decode(self, blob, round: int, w: int, d: int, token: bytes):
        """A worker's blob as its gradient (Tensor[d]) or message (SparseRow); WireError if it is
        not one."""
        meta = {"run_id": self.run_id, "round": round, "worker": w, "token": token}
        comp = self.compressor
        if comp is None:
            return wire.decode(blob, kind="grad", dtype=torch.float32, shape=(d,), **meta)
        k = comp.k(d)
        if comp.shared:
            answer = wire.decode(blob, kind="grad", dtype=torch.float32, shape=(k,), **meta).numpy()
        else:
            answer = wire.decode_sparse(blob, d=d, nnz=k, **meta)
        row = check_message(answer, d, k, comp.shared)
        if row is None:
            raise wire.WireError(f"not a {comp.name} message of {k} entries")
        return row

    def compute(self, round, params, worker_ids, timeout_s, mask=None):
        t0 = time.perf_counter()
        deadline = t0 + timeout_s
        blob = wire.encode(params.detach().float().contiguous(), kind="params", run_id=self.run_id,
                           round=round, worker=-1)
        tokens = {w: self.token(round, w) for w in worker_ids}
        out, tally = Arrivals(), _Tally()
        pending, restored = list(worker_ids), 0
        for attempt in range(_ATTEMPTS):
            self._attempt(round, blob, params.numel(), tokens, pending, deadline, timeout_s, out,
                          tally)
            pending = [w for w in pending if w not in out.grads]
            if not pending or attempt == _ATTEMPTS - 1 or time.perf_counter() >= deadline \
                    or self._store_intact():
                break
            # The store lost its data during the round (a Redis restart without persistence):
            # the shards, this round's parameters, round users and gradients. Write the shards
            # again and re-run the round, within its deadline, for the workers it cost.
            self._write_shards()
            restored += 1
            for w in pending:
                out.errors.pop(w, None)
        for w in out.errors:  # an answer without a usable gradient carries no loss either
            out.losses.pop(w, None)
            out.compute_s.pop(w, None)
        t_col = time.perf_counter()
        self.store.delete_prefix(round_prefix(self.run_id, round))
        if self.worker_auth == "round":
            redis_acl.revoke(self.store.client, self.run_id, worker_ids)
        t_end = time.perf_counter()
        out.wall_s = t_col - t0
        billed = [b for b, _ in tally.reports]
        stats = {"round": round, "publish_s": tally.publish_s, "invoke_s": tally.invoke_s,
                 "collect_s": tally.collect_s, "cleanup_s": t_end - t_col,
                 "billed_ms": sum(billed), "max_billed_ms": max(billed, default=0.0),
                 "max_memory_mb": max((m for _, m in tally.reports), default=0.0),
                 "omitted": len(out.errors), "store_restored": restored}
        verdict = self.watch.observe(tally.per_worker) if self.watch else None
        if verdict:
            stats["provisioning"] = verdict
        self.round_stats.append(stats)
        if self.stats_path:
            with open(self.stats_path, "a") as fh:
                fh.write(json.dumps(stats) + "\n")
        return out

    def _attempt(self, round, blob, d, tokens, workers, deadline, timeout_s, out, tally):
        """Publish the parameters ``blob``, invoke ``workers`` and collect their gradients (or
        the reasons they have none) into ``out`` until ``deadline``."""
        t0 = time.perf_counter()
        # the server is the only legitimate writer of the parameters: overwrite whatever is there
        self.store.put(params_key(self.run_id, round), blob, if_absent=False)
        digest = wire.digest_of(blob)
        if self.worker_auth == "round":
            redis_acl.grant_round(self.store.client, self.run_id, round,
                                  {w: tokens[w] for w in workers})
        t_pub = time.perf_counter()
        futures = {self._pool.submit(self.invoker.invoke, self.event(round, w, d, digest)): w
                   for w in workers}
        done, late = wait_futures(futures, timeout=max(0.0, deadline - time.perf_counter()))
        for f in late:
            f.cancel()  # not yet sent: never will be (a running one finishes and is ignored)
        t_inv = time.perf_counter()
        for f in done:
            w, res = futures[f], f.result()
            if not res.ok:
                out.errors[w] = (f"invocation failed: {res.error}" if res.error else
                                 f"function error {res.function_error}: "
                                 f"{_message(res.payload)}")
            elif isinstance(res.payload, dict) and res.payload.get("ok") is False:
                out.errors[w] = f"worker error {res.payload.get('error_type')}: {res.payload.get('error')}"
            elif isinstance(res.payload, dict) and res.payload.get("ok"):
                out.losses[w] = float(res.payload["loss"])
                out.compute_s[w] = float(res.payload["compute_s"])
            if res.billed_ms is not None:
                tally.reports.append((res.billed_ms, res.max_memory_mb or 0))
                tally.per_worker[w] = (res.billed_ms, res.max_memory_mb or 0)
        keys = {grad_key(self.run_id, round, w, tokens[w]): w for w in workers
                if w not in out.errors}
        blobs = self._gather(list(keys), deadline)
        for key, w in keys.items():
            if key not in blobs:
                out.errors[w] = f"no gradient within round_timeout_s={timeout_s}"
                continue
            try:
                out.grads[w] = self._decode(blobs[key], round, w, d, tokens[w])
            except wire.WireError as e:
                out.errors[w] = f"malformed gradient: {e}"
        tally.add(t0, t_pub, t_inv, time.perf_counter())

    def _gather(self, keys, deadline) -> dict:
        """The blobs of ``keys`` that are in the store by ``deadline``; early when the store has
        lost its data meanwhile (checked every _LOSS_CHECK_S while keys are missing)."""
        found = {}
        while True:
            missing = [k for k in keys if k not in found]
            left = max(0.0, deadline - time.perf_counter())
            found.update(self.store.wait(missing, timeout=min(_LOSS_CHECK_S, left)))
            if len(found) == len(keys) or time.perf_counter() >= deadline \
                    or not self._store_intact():
                return found


class _Tally:
    """A round's times and the invocations' REPORT figures, summed over its attempts."""

    def __init__(self):
        self.publish_s = self.invoke_s = self.collect_s = 0.0
        self.reports = []     # (billed ms, peak MB) of every invocation
        self.per_worker = {}  # worker -> (billed ms, peak MB) of its last invocation

    def add(self, t0, t_pub, t_inv, t_col):
        self.publish_s += t_pub - t0
        self.invoke_s += t_inv - t_pub
        self.collect_s += t_col - t_inv


def _message(payload) -> str:
    if isinstance(payload, dict):
        return str(payload.get("errorMessage", payload))[:300]
    return str(payload)[:300]
