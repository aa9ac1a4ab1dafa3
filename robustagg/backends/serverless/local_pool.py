"""The worker side of the local Lambda: execution environments and the pool that runs them.

An :class:`Environment` is one ``python -m awslambdaric <handler>`` process (AWS's own runtime
interface client) polling a **Runtime API** (``/2018-06-01/runtime/...``) that the environment
serves on its own 127.0.0.1 port. The :class:`EnvironmentPool` starts environments up to the
concurrency limit, reuses them while warm (the first invocation pays the cold start), and runs
one invocation in one of them as Lambda does:

* timeout: the environment is killed and the answer is the function error ``Sandbox.Timedout``
  ("Task timed out after N.NN seconds");
* memory: the resident set of the environment's process is watched (psutil); past
  ``memory_mb`` it is killed (``Runtime.OutOfMemory``); a process that dies otherwise gives
  ``Runtime.ExitError``; a response over the payload limit is ``Function.ResponseSizeTooLarge``;
* the log tail holds the last 4 KB of the invocation's log with the ``REPORT`` line (Duration,
  Billed Duration, Memory Size, Max Memory Used (the largest resident set sampled every 20 ms),
  Init Duration).

The Invoke API in front of it is :mod:`.local_runtime`. Note: awslambdaric's native client
crashes if a Runtime API answer lacks ``Content-Type: application/json``, so every answer
carries it.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil

from robustagg.costmodel import LAMBDA_MB_PER_VCPU, LAMBDA_RESPONSE_PAYLOAD

LOG_TAIL_BYTES = 4096
_RUNTIME = "/2018-06-01/runtime"


def send_json(handler: BaseHTTPRequestHandler, status: int, body, headers=None) -> None:
    """Answer ``handler``'s request with ``body`` (bytes, or JSON-able) as application/json."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(data)


_INHERITED = {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "PYTHONPATH", "PYTHONHASHSEED",
              "LD_LIBRARY_PATH", "VIRTUAL_ENV"}
_PREFIXES = ("LC_", "AWS_", "OPENBLAS_", "ROBUSTAGG_")

class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, no Nagle delay, no access log; ``body()`` reads the request body."""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stalls

    def log_message(self, *args):  # no access log on stderr
        pass

    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 (a free port), served from a daemon thread."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler_class):
        super().__init__(("127.0.0.1", 0), handler_class)
        self.address = f"127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request, client_address) -> None:
        # A client that went away mid-answer (an environment killed while its runtime waited for
        # work) is not the server's error: no traceback on stderr. Anything else is printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def _rss_mb(pid: int) -> float:
    """The resident set of process ``pid`` in MB (0 once it is gone)."""
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


@dataclass(frozen=True)
class Function:
    """The function's configuration, as Lambda holds it."""
    handler: str
    name: str
    memory_mb: int
    timeout_s: float
    region: str
    environment: dict
    python: str
    cwd: str
    log_dir: str
    init_timeout_s: float

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:000000000000:function:{self.name}"


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


class Environment:
    """One execution environment: a Runtime API server and the awslambdaric process polling it."""

    def __init__(self, fn: Function, index: int):
        self.fn = fn
        self.queue: "queue.Queue[_Invocation]" = queue.Queue()
        self.current: _Invocation | None = None
        self.ready = threading.Event()     # the runtime asked for its first invocation
        self.init_error: bytes | None = None
        self.init_s: float | None = None
        self.dead = False
        self.server = LoopbackServer(self._runtime_api())
        self.log_path = os.path.join(fn.log_dir, f"env{index}.log")
        self.log = open(self.log_path, "ab+")
        # A real function sees its own configuration, its role's AWS credentials and the
        # runtime's variables, not the caller's whole environment (which may hold the store's
        # admin password): pass only what a Python process needs and the AWS_ variables that
        # stand in for the execution role.
        env = {k: v for k, v in os.environ.items() if k in _INHERITED or k.startswith(_PREFIXES)}
        env.update(fn.environment)
        threads = str(max(1, math.floor(fn.memory_mb / LAMBDA_MB_PER_VCPU)))
        env.update({
            "AWS_LAMBDA_RUNTIME_API": self.server.address,
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
            "AWS_REGION": fn.region, "AWS_DEFAULT_REGION": fn.region,
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "PYTHONUNBUFFERED": "1",
        })
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen([fn.python, "-m", "awslambdaric", fn.handler], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=fn.cwd)
        self.peak_mb = 0.0
        self.oom = False
        threading.Thread(target=self._watch, daemon=True).start()

    def _runtime_api(self):
        env = self

        class RuntimeAPI(QuietHandler):
            def do_GET(self):
                if self.path != f"{_RUNTIME}/invocation/next":
                    return send_json(self, 404, {"errorMessage": f"unknown path {self.path}"})
                env._on_next()
                inv = env.queue.get()
                if inv is None:  # shutting down: leave the runtime blocked until it is killed
                    return
                env.current = inv
                inv.deadline_ms = int((time.time() + inv.timeout_s) * 1000)
                send_json(self, 200, inv.payload, {
                    "Lambda-Runtime-Aws-Request-Id": inv.id,
                    "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": inv.arn,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
                })

            def do_POST(self):
                body = self.body()
                parts = self.path.split("/")
                if self.path == f"{_RUNTIME}/init/error":
                    env.init_error = body
                    env.ready.set()
                    return send_json(self, 202, {"status": "OK"})
                if len(parts) == 6 and parts[3] == "invocation" and parts[5] in ("response", "error"):
                    inv = env.current
                    if inv is None or inv.id != parts[4]:
                        return send_json(self, 400, {"errorMessage": "InvalidRequestID",
                                                     "errorType": "InvalidRequestID"})
                    if parts[5] == "error":
                        inv.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type",
                                                          "Unhandled")
                        inv.result = body
                    elif len(body) > LAMBDA_RESPONSE_PAYLOAD:
                        inv.error_type = "Function.ResponseSizeTooLarge"
                        inv.result = json.dumps({
                            "errorType": "Function.ResponseSizeTooLarge",
                            "errorMessage": f"Response payload size ({len(body)} bytes) exceeded "
                                            f"maximum allowed payload size "
                                            f"({LAMBDA_RESPONSE_PAYLOAD} bytes)."}).encode()
                    else:
                        inv.result = body
                    env.current = None
                    inv.done.set()
                    return send_json(self, 202, {"status": "OK"})
                send_json(self, 404, {"errorMessage": f"unknown path {self.path}"})

        return RuntimeAPI

    def _on_next(self):
        if self.init_s is None:
            self.init_s = time.monotonic() - self.t_spawn
        self.ready.set()

    def _watch(self):
        """Kill the process when its resident set passes the memory setting (Lambda's OOM)."""
        while not self.dead and self.proc.poll() is None:
            rss = _rss_mb(self.proc.pid)
            self.peak_mb = max(self.peak_mb, rss)
            if rss > self.fn.memory_mb:
                self.oom = True
                self.proc.kill()
                break
            time.sleep(0.02)

    @property
    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the runtime asks for work (or dies, or ``timeout_s`` passes)."""
        deadline = time.monotonic() + timeout_s
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                break
        return self.ready.is_set() and self.init_error is None

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
        self.server.stop()
        self.log.close()


class EnvironmentPool:
    """At most ``concurrency`` environments of the function ``fn``; :meth:`run` runs one
    invocation. ``stats`` counts invocations, cold starts, throttles, timeouts, out-of-memory
    kills and errors (updated under the pool's lock; read a copy with :meth:`counts`)."""

    def __init__(self, fn: Function, concurrency: int):
        self.fn, self.concurrency = fn, concurrency
        self._lock = threading.Lock()
        self._idle: list[Environment] = []
        self._all: list[Environment] = []
        self._index = itertools.count()
        self.stats = {"invocations": 0, "cold_starts": 0, "throttles": 0, "timeouts": 0,
                      "oom": 0, "errors": 0}

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def counts(self) -> dict:
        with self._lock:
            return dict(self.stats)

    @property
    def size(self) -> int:
        """Environments started and not yet killed."""
        return len(self._all)

    @property
    def idle(self) -> int:
        """Environments waiting for an invocation."""
        return len(self._idle)

    def _acquire(self) -> tuple[Environment | None, bool]:
        """An idle environment, or a new one if under the concurrency limit: (env, cold)."""
        with self._lock:
            while self._idle:
                env = self._idle.pop()
                if env.alive:
                    return env, False
                self._forget(env)
            if len(self._all) >= self.concurrency:
                return None, False
            env = Environment(self.fn, next(self._index))
            self._all.append(env)
            self.stats["cold_starts"] += 1
            return env, True

    def _forget(self, env: Environment):
        """Drop ``env`` (the caller holds the lock) and kill it in the background."""
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
            env, _ = self._acquire()
            if env is None:
                break
            envs.append(env)
        deadline = time.monotonic() + (timeout_s or self.fn.init_timeout_s)
        ok = 0
        for env in envs:
            healthy = env.wait_ready(max(0.0, deadline - time.monotonic()))
            ok += healthy
            self._release(env, healthy)
        return ok

    def run(self, payload: bytes) -> tuple[int, bytes, str | None, bytes]:
        """Run one invocation: ``(status, body, function error type or None, log tail)``;
        status 429 when every environment is busy."""
        env, cold = self._acquire()
        if env is None:
            self._count("throttles")
            return 429, b"", None, b""
        self._count("invocations")
        fn = self.fn
        inv = _Invocation(payload, fn.timeout_s, fn.arn)
        offset = env.log_offset()
        env.append_log(f"START RequestId: {inv.id} Version: $LATEST\n")
        # a cold start may take up to init_timeout_s before the invocation's own timeout starts
        if cold:
            env.wait_ready(fn.init_timeout_s)
        t0 = time.monotonic()
        healthy = True
        if env.init_error is not None or not env.ready.is_set():
            inv.error_type = "Runtime.InitError"
            inv.result = env.init_error or b'{"errorMessage": "the runtime did not start in time"}'
            healthy = False
        else:
            env.queue.put(inv)
            while not inv.done.wait(0.01):
                if env.oom or env.proc.poll() is not None or time.monotonic() - t0 > fn.timeout_s:
                    break
            if not inv.done.is_set():
                healthy = False
                self._fail(env, inv, time.monotonic() - t0 > fn.timeout_s)
        dur_ms = (time.monotonic() - t0) * 1000.0
        if inv.error_type:
            self._count("errors")
        init = f"\tInit Duration: {env.init_s * 1000:.2f} ms" if cold and env.init_s else ""
        env.append_log(
            f"END RequestId: {inv.id}\nREPORT RequestId: {inv.id}\tDuration: {dur_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(dur_ms)} ms\tMemory Size: {fn.memory_mb} MB\t"
            f"Max Memory Used: {math.ceil(max(env.peak_mb, _rss_mb(env.proc.pid)))} MB"
            f"{init}\n")
        tail = env.log_since(offset)[-LOG_TAIL_BYTES:]
        self._release(env, healthy)
        return 200, inv.result, inv.error_type, tail

    def _fail(self, env: Environment, inv: _Invocation, timed_out: bool) -> None:
        """Lambda resets the sandbox after a timeout, an out-of-memory kill or a crash."""
        env.proc.kill()
        env.proc.wait()
        if env.oom:
            self._count("oom")
            inv.error_type = "Runtime.OutOfMemory"
            msg = (f"RequestId: {inv.id} Error: Runtime exited with error: signal: killed "
                   f"(memory above {self.fn.memory_mb} MB)")
        elif timed_out:
            self._count("timeouts")
            inv.error_type = "Sandbox.Timedout"
            msg = f"RequestId: {inv.id} Error: Task timed out after {self.fn.timeout_s:.2f} seconds"
        else:
            inv.error_type = "Runtime.ExitError"
            msg = (f"RequestId: {inv.id} Error: Runtime exited with error: exit status "
                   f"{env.proc.returncode}")
        inv.result = json.dumps({"errorType": inv.error_type, "errorMessage": msg}).encode()

    def close(self) -> None:
        with self._lock:
            envs, self._all, self._idle = list(self._all), [], []
        for env in envs:
            env.kill()
