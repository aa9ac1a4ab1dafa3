"""Invoking a Lambda function through boto3: on AWS, or on :class:`..local_runtime.LocalLambda`
through ``endpoint_url``.

``RequestResponse`` waits for the answer (a JSON payload, or a function error with its type);
``Event`` only queues the invocation (202) and the caller waits on the store. Throttling and
transport errors are retried by botocore (``retries`` extra attempts, standard mode, with
back-off); function errors are not retried (a gradient's key is write-once, so a retry could
only repeat the same work). With ``log_tail=True`` the answer's ``X-Amz-Log-Result`` is decoded
and the ``REPORT`` line parsed: billed duration, duration, memory size and max memory used.
Credentials come from boto3's chain as configured (``profile``, role, environment), never code.
"""
from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass

_REPORT = {
    "duration_ms": re.compile(r"\tDuration: ([0-9.]+) ms"),
    "billed_ms": re.compile(r"Billed Duration: ([0-9.]+) ms"),
    "memory_mb": re.compile(r"Memory Size: ([0-9]+) MB"),
    "max_memory_mb": re.compile(r"Max Memory Used: ([0-9]+) MB"),
    "init_ms": re.compile(r"Init Duration: ([0-9.]+) ms"),
}


@dataclass
class InvokeResult:
    """One invocation's answer. ``ok``: accepted (Event) or answered without a function error
    (RequestResponse); ``payload``: the parsed JSON answer (or error object); ``function_error``:
    the error type (``Unhandled``, or the errorType of the payload) or None; ``error``: a
    client-side failure (throttled, timed out, unreachable) or None; REPORT fields when asked."""
    ok: bool
    status: int | None = None
    payload: object = None
    function_error: str | None = None
    error: str | None = None
    log: str | None = None
    billed_ms: float | None = None
    duration_ms: float | None = None
    memory_mb: float | None = None
    max_memory_mb: float | None = None
    init_ms: float | None = None


def parse_report(log: str) -> dict:
    """The numbers of the last ``REPORT`` line of a Lambda log tail (missing ones are absent)."""
    lines = [ln for ln in log.splitlines() if ln.startswith("REPORT ")]
    if not lines:
        return {}
    out = {}
    for k, rx in _REPORT.items():
        m = rx.search("\t" + lines[-1])
        if m:
            out[k] = float(m.group(1))
    return out


class LambdaInvoker:
    def __init__(self, function_name: str, *, endpoint_url: str | None = None,
                 region: str = "us-east-1", profile: str | None = None,
                 invocation_type: str = "RequestResponse", read_timeout_s: float = 120.0,
                 connect_timeout_s: float = 5.0, retries: int = 2, log_tail: bool = False,
                 max_connections: int = 64, credentials: dict | None = None):
        if invocation_type not in ("RequestResponse", "Event"):
            raise ValueError(f"invocation_type must be 'RequestResponse' or 'Event', "
                             f"got {invocation_type!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(profile_name=profile, region_name=region,
                                        **(credentials or {}))
        self._client = session.client("lambda", endpoint_url=endpoint_url, config=Config(
            read_timeout=read_timeout_s, connect_timeout=connect_timeout_s,
            retries={"max_attempts": retries + 1, "mode": "standard"},
            max_pool_connections=max_connections))
        self.function_name = function_name
        self.invocation_type = invocation_type
        self.log_tail = log_tail
        self._lock = threading.Lock()

    def invoke(self, event: dict, invocation_type: str | None = None) -> InvokeResult:
        """Invoke the function with ``event`` (JSON-able); never raises for a failed invocation."""
        from botocore.exceptions import BotoCoreError, ClientError

        kind = invocation_type or self.invocation_type
        kw = {"LogType": "Tail"} if self.log_tail and kind == "RequestResponse" else {}
        try:
            r = self._client.invoke(FunctionName=self.function_name, InvocationType=kind,
                                    Payload=json.dumps(event).encode(), **kw)
        except ClientError as e:
            err = e.response.get("Error", {})
            return InvokeResult(False, e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
                                error=f"{err.get('Code', 'ClientError')}: {err.get('Message', e)}")
        except BotoCoreError as e:  # timeouts, connection errors
            return InvokeResult(False, error=f"{type(e).__name__}: {e}")
        status = r.get("StatusCode")
        if kind == "Event":
            return InvokeResult(status == 202, status)
        raw = r["Payload"].read()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        res = InvokeResult(True, status, payload)
        if r.get("FunctionError"):
            res.ok = False
            res.function_error = (payload.get("errorType") if isinstance(payload, dict)
                                  and payload.get("errorType") else r["FunctionError"])
        if "LogResult" in r:
            res.log = base64.b64decode(r["LogResult"]).decode("utf-8", "replace")
            for k, v in parse_report(res.log).items():
                setattr(res, k, v)
        return res
