"""A local AWS Lambda for development and tests: no Docker, no AWS.

:class:`LocalLambda` serves the Lambda **Invoke API** (``POST /2015-03-31/functions/<name>/
invocations``) on 127.0.0.1, so the same boto3 invoker used against AWS runs against it through
``endpoint_url``. Each invocation runs in an *execution environment*: a separate process started
as ``python -m awslambdaric <handler>`` (AWS's own runtime interface client) that talks to a
**Runtime API** (``/2018-06-01/runtime/...``) served by the environment on its own 127.0.0.1
port. Environments are reused while warm (the first invocation pays the cold start) and created
up to the ``concurrency`` limit.

Enforced as Lambda does (quotas and error shapes from the Lambda developer guide):

* request payload: 6 MB (RequestResponse) and 1 MB (Event) -> 413 ``RequestTooLargeException``;
  response payload 6 MB -> function error ``Function.ResponseSizeTooLarge``;
* timeout: the environment is killed and the answer is the function error ``Sandbox.Timedout``
  ("Task timed out after N.NN seconds");
* memory: the resident set of the environment's process is watched; past ``memory_mb`` it is
  killed (``Runtime.OutOfMemory``); a process that dies otherwise gives ``Runtime.ExitError``;
* concurrency: a synchronous invoke with every environment busy is refused with 429
  ``TooManyRequestsException``; Event invocations are queued and retried twice on error;
* the log tail (``X-Amz-Log-Type: Tail``) holds the last 4 KB of the invocation's log with the
  ``REPORT`` line (Duration, Billed Duration, Memory Size, Max Memory Used, Init Duration).

Every server here binds 127.0.0.1 only. Note: awslambdaric's native client crashes if a Runtime
API answer lacks ``Content-Type: application/json``, so every answer carries it.
"""
from __future__ import annotations

import atexit
import base64
import itertools
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024          # 6,291,456 bytes
ASYNC_PAYLOAD_LIMIT = 1024 * 1024
RESPONSE_LIMIT = 6 * 1024 * 1024
LOG_TAIL_BYTES = 4096
MB_PER_VCPU = 1769
_RUNTIME = "/2018-06-01/runtime"


def _json(handler: BaseHTTPRequestHandler, status: int, body, headers=None) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(data)


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stalls

    def log_message(self, *args):  # no access log on stderr
        pass

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Invocation:
    def __init__(self, payload: bytes, timeout_s: float, arn: str):
        self.id = str(uuid.uuid4())
        self.payload = payload
        self.arn = arn
        self.deadline_ms = 0
        self.timeout_s = timeout_s
        self.done = threading.Event()
        self.result: bytes = b""
        self.error_type: str | None = None  # None: success


def _rss_mb(pid: int, field: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


class Environment:
    """One execution environment: a Runtime API server and the awslambdaric process polling it."""

    def __init__(self, fn: "LocalLambda", index: int):
        self.fn = fn
        self.index = index
        self.queue: "queue.Queue[_Invocation]" = queue.Queue()
        self.current: _Invocation | None = None
        self.ready = threading.Event()     # the runtime asked for its first invocation
        self.init_error: bytes | None = None
        self.init_s: float | None = None
        self.dead = False
        env = self

        class RuntimeAPI(_Quiet):
            def do_GET(self):
                if self.path != f"{_RUNTIME}/invocation/next":
                    return _json(self, 404, {"errorMessage": f"unknown path {self.path}"})
                env._on_next()
                inv = env.queue.get()
                if inv is None:  # shutting down: leave the runtime blocked until it is killed
                    return
                env.current = inv
                inv.deadline_ms = int((time.time() + inv.timeout_s) * 1000)
                _json(self, 200, inv.payload, {
                    "Lambda-Runtime-Aws-Request-Id": inv.id,
                    "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": inv.arn,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
                })

            def do_POST(self):
                body = self._body()
                parts = self.path.split("/")
                if self.path == f"{_RUNTIME}/init/error":
                    env.init_error = body
                    env.ready.set()
                    return _json(self, 202, {"status": "OK"})
                if len(parts) == 6 and parts[3] == "invocation" and parts[5] in ("response", "error"):
                    inv = env.current
                    if inv is None or inv.id != parts[4]:
                        return _json(self, 400, {"errorMessage": "InvalidRequestID",
                                                 "errorType": "InvalidRequestID"})
                    if parts[5] == "error":
                        inv.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type",
                                                          "Unhandled")
                        inv.result = body
                    elif len(body) > RESPONSE_LIMIT:
                        inv.error_type = "Function.ResponseSizeTooLarge"
                        inv.result = json.dumps({
                            "errorType": "Function.ResponseSizeTooLarge",
                            "errorMessage": f"Response payload size ({len(body)} bytes) exceeded "
                                            f"maximum allowed payload size ({RESPONSE_LIMIT} bytes)."}
                        ).encode()
                    else:
                        inv.result = body
                    env.current = None
                    inv.done.set()
                    return _json(self, 202, {"status": "OK"})
                _json(self, 404, {"errorMessage": f"unknown path {self.path}"})

        self.server = _Server(("127.0.0.1", 0), RuntimeAPI)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.log_path = os.path.join(fn.log_dir, f"env{index}.log")
        self.log = open(self.log_path, "ab+")
        e = dict(os.environ)
        e.update(fn.environment)
        threads = str(max(1, math.floor(fn.memory_mb / MB_PER_VCPU)))
        e.update({
            "AWS_LAMBDA_RUNTIME_API": self.address,
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
            "AWS_REGION": fn.region, "AWS_DEFAULT_REGION": fn.region,
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "PYTHONUNBUFFERED": "1",
        })
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen([fn.python, "-m", "awslambdaric", fn.handler], env=e,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=fn.cwd)
        self.peak_mb = 0.0
        self.oom = False
        threading.Thread(target=self._watch, daemon=True).start()

    def _on_next(self):
        if self.init_s is None:
            self.init_s = time.monotonic() - self.t_spawn
        self.ready.set()

    def _watch(self):
        """Kill the process when its resident set passes the memory setting (Lambda's OOM)."""
        while not self.dead and self.proc.poll() is None:
            rss = _rss_mb(self.proc.pid, "VmRSS:")
            self.peak_mb = max(self.peak_mb, rss)
            if rss > self.fn.memory_mb:
                self.oom = True
                self.proc.kill()
                break
            time.sleep(0.02)

    def log_offset(self) -> int:
        self.log.flush()
        return os.path.getsize(self.log_path)

    def append_log(self, text: str) -> None:
        self.log.write(text.encode())
        self.log.flush()

    def log_since(self, offset: int) -> bytes:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read()

    def kill(self):
        self.dead = True
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.queue.put(None)
        self.server.shutdown()
        self.server.server_close()
        self.log.close()


class LocalLambda:
    """A local Lambda function running ``handler`` (``"module.function"``).

    ``memory_mb`` (128..10240), ``timeout_s`` (per invocation), ``concurrency`` (environments at
    most), ``environment`` (variables given to the function, e.g. the name of a password
    variable and its value: the function's configuration, as on AWS), ``init_timeout_s`` (a
    cold start longer than this fails the invocation, like Lambda's 10 s init limit, more
    generous by default because torch imports slowly on shared cores).
    """

    def __init__(self, handler: str = "robustagg.backends.serverless.handler.handler", *,
                 name: str = "robustagg-worker", memory_mb: int = 1024, timeout_s: float = 60.0,
                 concurrency: int = 10, environment: dict | None = None,
                 region: str = "us-east-1", init_timeout_s: float = 120.0,
                 python: str = sys.executable, cwd: str | None = None,
                 async_retries: int = 2):
        if not 128 <= memory_mb <= 10240:
            raise ValueError(f"memory_mb must be in Lambda's 128..10240 MB, got {memory_mb}")
        if not 0 < timeout_s <= 900:
            raise ValueError(f"timeout_s must be in (0, 900] (Lambda's 15 minutes), got {timeout_s}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.handler, self.name, self.memory_mb, self.timeout_s = handler, name, memory_mb, timeout_s
        self.concurrency, self.region, self.init_timeout_s = concurrency, region, init_timeout_s
        self.environment = {k: str(v) for k, v in (environment or {}).items()}
        self.python, self.cwd, self.async_retries = python, cwd or os.getcwd(), async_retries
        self.arn = f"arn:aws:lambda:{region}:000000000000:function:{name}"
        self._tmp = tempfile.TemporaryDirectory(prefix="ra_lambda_")
        self.log_dir = self._tmp.name
        self._lock = threading.Lock()
        self._idle: list[Environment] = []
        self._all: list[Environment] = []
        self._counter = itertools.count()
        self._events: "queue.Queue" = queue.Queue()
        self.stats = {"invocations": 0, "cold_starts": 0, "throttles": 0, "timeouts": 0,
                      "oom": 0, "errors": 0}
        fn = self

        class InvokeAPI(_Quiet):
            def do_POST(self):
                fn._serve_invoke(self)

            def do_GET(self):
                _json(self, 404, {"Type": "User", "message": "only Invoke is served"},
                      {"x-amzn-ErrorType": "ResourceNotFoundException"})

        self._server = _Server(("127.0.0.1", 0), InvokeAPI)
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._dispatchers = [threading.Thread(target=self._dispatch_events, daemon=True)
                             for _ in range(concurrency)]
        for t in self._dispatchers:
            t.start()
        self._closed = False
        atexit.register(self.close)  # no orphaned runtime processes if the caller never closes

    # ---- environments ----
    def _acquire(self) -> tuple[Environment | None, bool]:
        """An idle environment, or a new one if under the concurrency limit: (env, cold)."""
        with self._lock:
            while self._idle:
                env = self._idle.pop()
                if env.proc.poll() is None and not env.dead:
                    return env, False
                self._forget(env)
            if len(self._all) >= self.concurrency:
                return None, False
            env = Environment(self, next(self._counter))
            self._all.append(env)
            self.stats["cold_starts"] += 1
            return env, True

    def _forget(self, env: Environment):
        if env in self._all:
            self._all.remove(env)
        threading.Thread(target=env.kill, daemon=True).start()

    def _release(self, env: Environment, healthy: bool):
        with self._lock:
            if healthy and env.proc.poll() is None:
                self._idle.append(env)
            else:
                self._forget(env)

    def prewarm(self, n: int, timeout_s: float | None = None) -> int:
        """Start up to ``n`` environments and wait until they are ready; returns how many are."""
        envs = []
        for _ in range(min(n, self.concurrency)):
            env, cold = self._acquire()
            if env is None:
                break
            envs.append(env)
        deadline = time.monotonic() + (timeout_s or self.init_timeout_s)
        ok = 0
        for env in envs:
            while not env.ready.wait(0.05):
                if env.proc.poll() is not None or time.monotonic() > deadline:
                    break
            healthy = env.ready.is_set() and env.init_error is None
            ok += healthy
            self._release(env, healthy)
        return ok

    # ---- running one invocation ----
    def run(self, payload: bytes) -> tuple[int, bytes, str | None, str]:
        """Run one invocation: (status, body, function_error_type or None, log tail)."""
        env, cold = self._acquire()
        if env is None:
            self.stats["throttles"] += 1
            return 429, b"", None, ""
        self.stats["invocations"] += 1
        inv = _Invocation(payload, self.timeout_s, self.arn)
        offset = env.log_offset()
        env.append_log(f"START RequestId: {inv.id} Version: $LATEST\n")
        # a cold start may take up to init_timeout_s before the invocation's own timeout starts
        if cold:
            deadline = time.monotonic() + self.init_timeout_s
            while not env.ready.wait(0.05):
                if env.proc.poll() is not None or time.monotonic() > deadline:
                    break
        t0 = time.monotonic()
        healthy = True
        if env.init_error is not None or not env.ready.is_set():
            inv.error_type = "Runtime.InitError"
            detail = env.init_error or b'{"errorMessage": "the runtime did not start in time"}'
            inv.result = detail
            healthy = False
        else:
            env.queue.put(inv)
            while not inv.done.wait(0.01):
                if env.oom or env.proc.poll() is not None:
                    break
                if time.monotonic() - t0 > self.timeout_s:
                    break
            if not inv.done.is_set():
                healthy = False
                env.proc.kill()  # Lambda resets the sandbox after a timeout, an OOM or a crash
                env.proc.wait()
                if env.oom:
                    self.stats["oom"] += 1
                    inv.error_type = "Runtime.OutOfMemory"
                    msg = (f"RequestId: {inv.id} Error: Runtime exited with error: signal: killed "
                           f"(memory above {self.memory_mb} MB)")
                elif time.monotonic() - t0 > self.timeout_s:
                    self.stats["timeouts"] += 1
                    inv.error_type = "Sandbox.Timedout"
                    msg = f"RequestId: {inv.id} Error: Task timed out after {self.timeout_s:.2f} seconds"
                else:
                    inv.error_type = "Runtime.ExitError"
                    msg = (f"RequestId: {inv.id} Error: Runtime exited with error: exit status "
                           f"{env.proc.returncode}")
                inv.result = json.dumps({"errorType": inv.error_type, "errorMessage": msg}).encode()
        dur_ms = (time.monotonic() - t0) * 1000.0
        if inv.error_type:
            self.stats["errors"] += 1
        init = f"\tInit Duration: {env.init_s * 1000:.2f} ms" if cold and env.init_s else ""
        env.append_log(
            f"END RequestId: {inv.id}\nREPORT RequestId: {inv.id}\tDuration: {dur_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(dur_ms)} ms\tMemory Size: {self.memory_mb} MB\t"
            f"Max Memory Used: {math.ceil(max(env.peak_mb, _rss_mb(env.proc.pid, 'VmHWM:')))} MB"
            f"{init}\n")
        tail = env.log_since(offset)[-LOG_TAIL_BYTES:]
        self._release(env, healthy)
        return 200, inv.result, inv.error_type, base64.b64encode(tail).decode()

    def _dispatch_events(self):
        while True:
            item = self._events.get()
            if item is None:
                return
            payload, attempt = item
            status, _, err, _ = self.run(payload)
            if status == 429:  # every environment busy: wait and try again, as Lambda's queue does
                time.sleep(0.05)
                self._events.put((payload, attempt))
            elif err is not None and attempt < self.async_retries:
                self._events.put((payload, attempt + 1))

    # ---- the Invoke API ----
    def _serve_invoke(self, h: _Quiet):
        path = urlparse(h.path).path
        parts = path.split("/")
        if len(parts) != 5 or parts[1] != "2015-03-31" or parts[2] != "functions" \
                or parts[4] != "invocations":
            return _json(h, 404, {"Type": "User", "message": f"unknown path {path}"},
                         {"x-amzn-ErrorType": "ResourceNotFoundException"})
        name = unquote(parts[3])
        if name not in (self.name, self.arn):
            return _json(h, 404, {"Type": "User", "message": f"Function not found: "
                                  f"arn:aws:lambda:{self.region}:000000000000:function:{name}"},
                         {"x-amzn-ErrorType": "ResourceNotFoundException"})
        kind = h.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind not in ("RequestResponse", "Event", "DryRun"):
            return _json(h, 400, {"Type": "User", "message": f"invalid invocation type {kind!r}"},
                         {"x-amzn-ErrorType": "InvalidParameterValueException"})
        limit = SYNC_PAYLOAD_LIMIT if kind != "Event" else ASYNC_PAYLOAD_LIMIT
        n = int(h.headers.get("Content-Length") or 0)
        if n > limit:
            h.rfile.read(n)
            return _json(h, 413, {"Type": "User", "message": f"Request must be smaller than {limit} "
                                  f"bytes for the InvokeFunction operation"},
                         {"x-amzn-ErrorType": "RequestTooLargeException"})
        body = h._body() or b"{}"
        try:
            json.loads(body)
        except ValueError:
            return _json(h, 400, {"Type": "User", "message": "Could not parse request body into json"},
                         {"x-amzn-ErrorType": "InvalidRequestContentException"})
        rid = {"x-amzn-RequestId": str(uuid.uuid4())}
        if kind == "DryRun":
            return _json(h, 204, b"", rid)
        if kind == "Event":
            self._events.put((body, 0))
            return _json(h, 202, b"", rid)
        status, result, err, tail = self.run(body)
        if status == 429:
            return _json(h, 429, {"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                                  "Type": "User", "message": "Rate Exceeded."},
                         {"x-amzn-ErrorType": "TooManyRequestsException"})
        headers = {**rid, "X-Amz-Executed-Version": "$LATEST"}
        if err is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if h.headers.get("X-Amz-Log-Type") == "Tail":
            headers["X-Amz-Log-Result"] = tail
        _json(h, 200, result or b"null", headers)

    # ---- lifecycle ----
    @property
    def environments(self) -> int:
        return len(self._all)

    def close(self):
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._server.shutdown()
        self._server.server_close()
        for _ in self._dispatchers:
            self._events.put(None)
        with self._lock:
            envs, self._all, self._idle = list(self._all), [], []
        for env in envs:
            env.kill()
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
