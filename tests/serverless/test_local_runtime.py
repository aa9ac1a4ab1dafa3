"""The local Lambda (Invoke API + Runtime API + awslambdaric processes) through the boto3 invoker."""
import json
import threading
import urllib.request

import pytest

pytest.importorskip("awslambdaric")
pytest.importorskip("boto3")

from robustagg.backends.serverless.invoker import LambdaInvoker, parse_report  # noqa: E402
from robustagg.backends.serverless.local_runtime import LocalLambda  # noqa: E402

CREDS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def invoker(fn, **kw):
    return LambdaInvoker(fn.name, endpoint_url=fn.endpoint_url, credentials=CREDS, **kw)


@pytest.fixture(scope="module")
def fn():
    with LocalLambda("tests.serverless.fake_handlers.act", memory_mb=256, timeout_s=3,
                     concurrency=3, environment={"RA_FAKE_SECRET": "from-config"}) as f:
        yield f


def test_round_trip_warm_reuse_and_report(fn):
    inv = invoker(fn, log_tail=True)
    first = inv.invoke({"do": "hello"})
    second = inv.invoke({"do": "hello"})
    assert first.ok and first.status == 200 and first.payload["ok"] is True
    assert second.payload["pid"] == first.payload["pid"]  # the warm environment was reused
    assert "hello from the handler" in first.log
    assert first.memory_mb == 256 and first.billed_ms >= 1 and first.max_memory_mb > 0
    assert first.init_ms is not None and second.init_ms is None  # only the cold start reports init
    assert second.billed_ms >= second.duration_ms


def test_context_and_configuration_reach_the_handler():
    with LocalLambda("tests.serverless.fake_handlers.echo", memory_mb=512, timeout_s=5,
                     concurrency=1, environment={"RA_FAKE_SECRET": "from-config"}) as f:
        r = invoker(f).invoke({"a": [1, 2]})
    assert r.ok and r.payload["event"] == {"a": [1, 2]}
    assert r.payload["memory"] == "512" and r.payload["secret"] == "from-config"
    assert 0 < r.payload["remaining_ms"] <= 5000


def test_handler_exception_is_a_function_error(fn):
    r = invoker(fn).invoke({"do": "raise"})
    assert not r.ok and r.function_error == "RuntimeError"
    assert r.payload["errorMessage"] == "boom from the handler"


def test_timeout_kills_the_environment_and_the_next_call_works(fn):
    r = invoker(fn).invoke({"do": "sleep", "s": 30})
    assert not r.ok and r.function_error == "Sandbox.Timedout"
    assert "Task timed out after 3.00 seconds" in r.payload["errorMessage"]
    assert invoker(fn).invoke({"do": "hello"}).ok


def test_memory_limit(fn):
    r = invoker(fn).invoke({"do": "hog", "mb": 400})
    assert not r.ok and r.function_error == "Runtime.OutOfMemory"
    small = invoker(fn).invoke({"do": "hog", "mb": 20})
    assert small.ok and small.payload["held"] == 20 * 1024 * 1024


def test_process_exit(fn):
    r = invoker(fn).invoke({"do": "exit"})
    assert not r.ok and r.function_error == "Runtime.ExitError" and "exit status 3" in r.payload["errorMessage"]


def test_payload_limits(fn, tmp_path):
    inv = invoker(fn, retries=0)
    big = inv.invoke({"do": "hello", "pad": "x" * (6 * 1024 * 1024)})
    assert not big.ok and big.error.startswith("RequestTooLargeException") and "6291456" in big.error
    fits = inv.invoke({"do": "hello", "pad": "x" * (6 * 1024 * 1024 - 100)})
    assert fits.ok
    ev = inv.invoke({"do": "touch", "path": str(tmp_path / "f"), "pad": "x" * (1024 * 1024)},
                    invocation_type="Event")
    assert not ev.ok and "1048576" in ev.error
    resp = inv.invoke({"do": "big", "n": 6 * 1024 * 1024 + 10})
    assert not resp.ok and resp.function_error == "Function.ResponseSizeTooLarge"


def test_event_invocation_runs_later(fn, tmp_path):
    path = tmp_path / "touched"
    r = invoker(fn).invoke({"do": "touch", "path": str(path)}, invocation_type="Event")
    assert r.ok and r.status == 202
    import time

    for _ in range(200):
        if path.exists():
            break
        time.sleep(0.05)
    assert path.read_text() == "x"


def test_concurrency_limit_throttles_sync_calls():
    with LocalLambda("tests.serverless.fake_handlers.act", memory_mb=256, timeout_s=10,
                     concurrency=1) as f:
        inv = invoker(f, retries=0)
        assert inv.invoke({"do": "hello"}).ok  # warm the single environment
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("slow", inv.invoke({"do": "sleep", "s": 2})))
        t.start()
        import time

        for _ in range(400):  # until the slow call holds the only environment
            if not f.pool.idle:
                break
            time.sleep(0.025)
        second = inv.invoke({"do": "hello"})
        t.join()
    assert out["slow"].ok
    assert not second.ok and second.error.startswith("TooManyRequestsException")


def test_unknown_function_and_bad_json(fn):
    r = LambdaInvoker("nope", endpoint_url=fn.endpoint_url, credentials=CREDS, retries=0).invoke({})
    assert not r.ok and r.error.startswith("ResourceNotFoundException")
    req = urllib.request.Request(f"{fn.endpoint_url}/2015-03-31/functions/{fn.name}/invocations",
                                 data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400
    assert e.value.headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
    assert json.loads(e.value.read())["message"] == "Could not parse request body into json"


def test_settings_are_checked():
    with pytest.raises(ValueError, match="memory_mb must be in Lambda's 128..10240 MB, got 64"):
        LocalLambda(memory_mb=64)
    with pytest.raises(ValueError, match="timeout_s must be in"):
        LocalLambda(timeout_s=901)
    with pytest.raises(ValueError, match="invocation_type"):
        LambdaInvoker("f", invocation_type="Async")


def test_parse_report():
    log = ("START RequestId: a\nREPORT RequestId: a\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
           "Memory Size: 3008 MB\tMax Memory Used: 412 MB\tInit Duration: 2211.50 ms\n")
    assert parse_report(log) == {"duration_ms": 12.34, "billed_ms": 13.0, "memory_mb": 3008.0,
                                 "max_memory_mb": 412.0, "init_ms": 2211.5}
    assert parse_report("no report") == {}


def test_counters_add_up_under_concurrent_calls(fn):
    before = fn.stats
    statuses = []
    calls = [threading.Thread(target=lambda: statuses.append(fn.pool.run(b'{"do": "hello"}')[0]))
             for _ in range(8)]
    for t in calls:
        t.start()
    for t in calls:
        t.join()
    after = fn.stats
    assert after["invocations"] - before["invocations"] == statuses.count(200) >= 1
    assert after["throttles"] - before["throttles"] == statuses.count(429)
    assert sorted(set(statuses)) <= [200, 429] and len(statuses) == 8


def test_a_client_gone_mid_answer_prints_no_traceback(capsys):
    """A runtime killed while the Runtime API answers it (the soak's kills) broke the pipe and
    printed a traceback; a client gone away is not the server's error. Other errors still show."""
    from robustagg.backends.serverless.local_pool import LoopbackServer, QuietHandler

    class Raises(QuietHandler):
        def do_GET(self):
            if self.path == "/bug":
                raise ValueError("bug")
            raise BrokenPipeError(32, "Broken pipe")

    server = LoopbackServer(Raises)
    try:
        for path in ("/gone", "/bug"):
            with pytest.raises(Exception):
                urllib.request.urlopen(f"http://{server.address}{path}", timeout=5)
    finally:
        server.stop()
    err = capsys.readouterr().err
    assert err.count("Exception occurred during processing") == 1 and "ValueError: bug" in err
    assert "BrokenPipeError" not in err


def test_the_function_does_not_see_the_callers_environment(monkeypatch):
    # A local function sees its configuration and the AWS_ credentials that stand in for its
    # role, not the caller's other variables (the server's store password among them).
    monkeypatch.setenv("RA_SERVER_ADMIN_PASSWORD", "not-for-workers")
    with LocalLambda("tests.serverless.fake_handlers.echo", memory_mb=256, timeout_s=5,
                     concurrency=1, environment={"RA_FAKE_SECRET": "from-config"}) as f:
        r = invoker(f).invoke({"a": 1})
    assert r.ok and r.payload["secret"] == "from-config" and r.payload["leak"] is None
