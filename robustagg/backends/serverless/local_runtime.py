"""A local AWS Lambda for development and tests: no Docker, no AWS. This module is its front end.

:class:`LocalLambda` serves the Lambda **Invoke API** (``POST /2015-03-31/functions/<name>/
invocations``) on 127.0.0.1, so the same boto3 invoker used against AWS runs against it through
``endpoint_url``; each invocation runs in an execution environment of its
:class:`~.local_pool.EnvironmentPool` (an awslambdaric process; timeouts, memory, crashes and the
log tail are the pool's).

Enforced here as Lambda does (quotas and error shapes from the Lambda developer guide; the
limits are those of :mod:`robustagg.costmodel`):

* request payload: 6 MB (RequestResponse) and 1 MB (Event) -> 413 ``RequestTooLargeException``;
* function name, invocation type and a JSON body, with Lambda's error types;
* concurrency: a synchronous invoke with every environment busy is refused with 429
  ``TooManyRequestsException``; Event invocations are queued and retried twice on error.

Every server here binds 127.0.0.1 only.
"""
from __future__ import annotations

import atexit
import base64
import json
import os
import queue
import sys
import tempfile
import threading
import time
import uuid
from urllib.parse import unquote, urlparse

from robustagg.costmodel import (LAMBDA_ASYNC_PAYLOAD, LAMBDA_MAX_MEMORY_MB, LAMBDA_MAX_TIMEOUT_S,
                                 LAMBDA_MIN_MEMORY_MB, LAMBDA_SYNC_PAYLOAD)

from .local_pool import EnvironmentPool, Function, LoopbackServer, QuietHandler, send_json


class LocalLambda:
    """A local Lambda function running ``handler`` (``"module.function"``).

    ``memory_mb`` (Lambda's 128..10240), ``timeout_s`` (per invocation, at most 900),
    ``concurrency`` (environments at most), ``environment`` (variables given to the function,
    e.g. the name of a password variable and its value: the function's configuration, as on
    AWS), ``init_timeout_s`` (a cold start longer than this fails the invocation, like Lambda's
    10 s init limit, more generous by default because torch imports slowly on shared cores).
    """

    def __init__(self, handler: str = "robustagg.backends.serverless.handler.handler", *,
                 name: str = "robustagg-worker", memory_mb: int = 1024, timeout_s: float = 60.0,
                 concurrency: int = 10, environment: dict | None = None,
                 region: str = "us-east-1", init_timeout_s: float = 120.0,
                 python: str = sys.executable, cwd: str | None = None,
                 async_retries: int = 2):
        if not LAMBDA_MIN_MEMORY_MB <= memory_mb <= LAMBDA_MAX_MEMORY_MB:
            raise ValueError(f"memory_mb must be in Lambda's {LAMBDA_MIN_MEMORY_MB}.."
                             f"{LAMBDA_MAX_MEMORY_MB} MB, got {memory_mb}")
        if not 0 < timeout_s <= LAMBDA_MAX_TIMEOUT_S:
            raise ValueError(f"timeout_s must be in (0, {LAMBDA_MAX_TIMEOUT_S:g}] (Lambda's "
                             f"limit), got {timeout_s}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self._tmp = tempfile.TemporaryDirectory(prefix="ra_lambda_")
        self.fn = Function(handler=handler, name=name, memory_mb=memory_mb, timeout_s=timeout_s,
                           region=region, environment={k: str(v) for k, v in
                                                       (environment or {}).items()},
                           python=python, cwd=cwd or os.getcwd(), log_dir=self._tmp.name,
                           init_timeout_s=init_timeout_s)
        self.name, self.arn, self.async_retries = name, self.fn.arn, async_retries
        self.pool = EnvironmentPool(self.fn, concurrency)
        self._events: "queue.Queue" = queue.Queue()
        fn = self

        class InvokeAPI(QuietHandler):
            def do_POST(self):
                fn._serve_invoke(self)

            def do_GET(self):
                send_json(self, 404, {"Type": "User", "message": "only Invoke is served"},
                          {"x-amzn-ErrorType": "ResourceNotFoundException"})

        self._server = LoopbackServer(InvokeAPI)
        self.endpoint_url = f"http://{self._server.address}"
        self._dispatchers = [threading.Thread(target=self._dispatch_events, daemon=True)
                             for _ in range(concurrency)]
        for t in self._dispatchers:
            t.start()
        self._closed = False
        atexit.register(self.close)  # no orphaned runtime processes if the caller never closes

    @property
    def stats(self) -> dict:
        """Counts of invocations, cold starts, throttles, timeouts, OOM kills and errors."""
        return self.pool.counts()

    @property
    def environments(self) -> int:
        return self.pool.size

    def prewarm(self, n: int, timeout_s: float | None = None) -> int:
        """Start up to ``n`` environments and wait until they are ready; returns how many are."""
        return self.pool.prewarm(n, timeout_s)

    def _dispatch_events(self):
        while True:
            item = self._events.get()
            if item is None:
                return
            payload, attempt = item
            status, _, err, _ = self.pool.run(payload)
            if status == 429:  # every environment busy: wait and try again, as Lambda's queue does
                time.sleep(0.05)
                self._events.put((payload, attempt))
            elif err is not None and attempt < self.async_retries:
                self._events.put((payload, attempt + 1))

    # ---- the Invoke API ----
    def _serve_invoke(self, h: QuietHandler):
        def refuse(status, error_type, message, **extra):
            send_json(h, status, {"Type": "User", "message": message, **extra},
                      {"x-amzn-ErrorType": error_type})

        path = urlparse(h.path).path
        parts = path.split("/")
        if len(parts) != 5 or parts[1] != "2015-03-31" or parts[2] != "functions" \
                or parts[4] != "invocations":
            return refuse(404, "ResourceNotFoundException", f"unknown path {path}")
        name = unquote(parts[3])
        if name not in (self.name, self.arn):
            return refuse(404, "ResourceNotFoundException", f"Function not found: "
                          f"arn:aws:lambda:{self.fn.region}:000000000000:function:{name}")
        kind = h.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind not in ("RequestResponse", "Event", "DryRun"):
            return refuse(400, "InvalidParameterValueException", f"invalid invocation type {kind!r}")
        limit = LAMBDA_SYNC_PAYLOAD if kind != "Event" else LAMBDA_ASYNC_PAYLOAD
        n = int(h.headers.get("Content-Length") or 0)
        if n > limit:
            h.rfile.read(n)
            return refuse(413, "RequestTooLargeException",
                          f"Request must be smaller than {limit} bytes for the InvokeFunction "
                          f"operation")
        body = h.body() or b"{}"
        try:
            json.loads(body)
        except ValueError:
            return refuse(400, "InvalidRequestContentException",
                          "Could not parse request body into json")
        rid = {"x-amzn-RequestId": str(uuid.uuid4())}
        if kind == "DryRun":
            return send_json(h, 204, b"", rid)
        if kind == "Event":
            self._events.put((body, 0))
            return send_json(h, 202, b"", rid)
        status, result, err, tail = self.pool.run(body)
        if status == 429:
            return refuse(429, "TooManyRequestsException", "Rate Exceeded.",
                          Reason="ReservedFunctionConcurrentInvocationLimitExceeded")
        headers = {**rid, "X-Amz-Executed-Version": "$LATEST"}
        if err is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if h.headers.get("X-Amz-Log-Type") == "Tail":
            headers["X-Amz-Log-Result"] = base64.b64encode(tail).decode()
        send_json(h, 200, result or b"null", headers)

    # ---- lifecycle ----
    def close(self):
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._server.stop()
        for _ in self._dispatchers:
            self._events.put(None)
        self.pool.close()
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
