"""The Lambda backend's round logic with an in-process invoker and an in-memory store:
quorum, omissions with reasons, and the security cases on the server side."""
import pickle
import time

import pytest
import torch

from robustagg.backends.base import WorkerSpec
from robustagg.backends.serverless import handler as H
from robustagg.backends.serverless import wire
from robustagg.backends.serverless.backend import LambdaBackend
from robustagg.backends.serverless.invoker import InvokeResult
from robustagg.backends.serverless.stores import grad_key
from tests.serverless.inprocess import InProcessInvoker

N = 5


@pytest.fixture
def backend(digits_world):
    data, specs, *_ = digits_world
    H._STATES.clear()
    b = LambdaBackend(store={"kind": "memory"}, run_id="brun")
    b.start(specs, data=data)
    b.invoker = InProcessInvoker(b)
    yield b
    b.close()


def test_round_matches_the_local_backend(backend, digits_world):
    _, _, params, ref = digits_world
    got = backend.compute(0, params, list(range(N)), timeout_s=30)
    want = ref.compute(0, params, list(range(N)), timeout_s=30)
    assert got.errors == {} and sorted(got.grads) == list(range(N))
    for i in range(N):
        assert torch.equal(got.grads[i], want.grads[i])
        assert got.losses[i] == want.losses[i]
    # the round's keys are gone; only the shards stay
    assert all("/shard/" in k for k in backend.store.keys())
    stats = backend.round_stats[-1]
    assert stats["round"] == 0 and stats["omitted"] == 0


def _forge(backend, victim, **kw):
    def act(store, ev):
        r = ev["round"]
        meta = dict(kind="grad", run_id="brun", round=r, worker=victim)
        store.put(grad_key("brun", r, victim, backend.token(r, victim)),
                  wire.encode(-100 * torch.ones(kw["d"]), **{**meta, **kw["meta"]}, token=kw.get("token")))
    return act


def test_worker_writing_another_workers_key(backend, digits_world):
    """Should worker 4 (Byzantine) learn worker 2's key and write into it before worker 2 does:
    worker 2's honest write is refused (write-once) and the forged blob fails the header or the
    token, so worker 2 is an omission with the reason logged; the forged vector never reaches
    the server."""
    _, _, params, _ = digits_world
    d = params.numel()
    for meta, reason in [({"worker": 4}, "worker mismatch"), ({}, "digest mismatch")]:
        # worker 4's forged blob lands in worker 2's key just before worker 2 writes
        backend.invoker = InProcessInvoker(backend, {2: _forge(backend, 2, d=d, meta=meta,
                                                               token=b"k" * 32)})
        arr = backend.compute(1, params, list(range(N)), timeout_s=30)
        assert 2 not in arr.grads and reason in arr.errors[2]
        assert sorted(arr.grads) == [0, 1, 3, 4]
        assert all(not torch.equal(g, -100 * torch.ones(d)) for g in arr.grads.values())


@pytest.mark.parametrize("name,blob_fn,reason", [
    ("truncated", lambda b: b[:-8], "truncated or padded"),
    ("wrong length", lambda b: b + b"\0" * 4, "truncated or padded"),
    ("pickle", lambda b: pickle.dumps({"grad": [1.0, 2.0]}), "malformed gradient"),
])
def test_bad_blobs_are_omissions(backend, digits_world, name, blob_fn, reason):
    _, _, params, _ = digits_world

    def act(store, ev):
        r = ev["round"]
        g = torch.zeros(params.numel())
        store.put(grad_key("brun", r, 3, backend.token(r, 3)), blob_fn(wire.encode(g, kind="grad", run_id="brun", round=r,
                                                              worker=3, token=bytes.fromhex(ev["token"]))))
        return "skip"

    backend.invoker = InProcessInvoker(backend, {3: act})
    arr = backend.compute(2, params, list(range(N)), timeout_s=30)
    assert sorted(arr.grads) == [0, 1, 2, 4] and reason in arr.errors[3], arr.errors


def test_wrong_run_id_and_round(backend, digits_world):
    _, _, params, _ = digits_world
    tok = backend.token(5, 1)

    def other_run(store, ev):
        r = ev["round"]
        store.put(grad_key("brun", r, 1, tok), wire.encode(torch.zeros(params.numel()), kind="grad",
                                                           run_id="other", round=r, worker=1, token=tok))
        return "skip"

    def old_round(store, ev):
        r = ev["round"]
        store.put(grad_key("brun", r, 1, tok), wire.encode(torch.zeros(params.numel()), kind="grad",
                                                           run_id="brun", round=r - 1, worker=1, token=tok))
        return "skip"

    for act, reason in [(other_run, "run_id mismatch"), (old_round, "round mismatch")]:
        backend.invoker = InProcessInvoker(backend, {1: act})
        arr = backend.compute(5, params, list(range(N)), timeout_s=30)
        assert 1 not in arr.grads and reason in arr.errors[1] and 1 not in arr.losses


def test_function_errors_and_late_workers(backend, digits_world):
    _, _, params, _ = digits_world

    class Mixed(InProcessInvoker):
        def invoke(self, event, invocation_type=None):
            w = event["worker_id"]
            if w == 0:
                return InvokeResult(False, 429, error="TooManyRequestsException: Rate Exceeded.")
            if w == 1:
                return InvokeResult(False, 200, {"errorType": "Sandbox.Timedout",
                                                 "errorMessage": "Task timed out after 3.00 seconds"},
                                    function_error="Sandbox.Timedout")
            if w == 2:
                return InvokeResult(True, 200, {"ok": False, "error_type": "BadEvent", "error": "x"})
            if w == 3:
                time.sleep(1.5)  # later than the round deadline
            return super().invoke(event)

    backend.invoker = Mixed(backend)
    arr = backend.compute(6, params, list(range(N)), timeout_s=0.7)
    assert sorted(arr.grads) == [4]
    assert arr.errors[0].startswith("invocation failed: TooManyRequestsException")
    assert arr.errors[1].startswith("function error Sandbox.Timedout: Task timed out")
    assert arr.errors[2] == "worker error BadEvent: x"
    assert arr.errors[3] == "no gradient within round_timeout_s=0.7"


def test_tokens_differ_by_worker_and_round(backend):
    toks = {backend.token(r, w) for r in range(3) for w in range(N)}
    assert len(toks) == 3 * N and all(len(t) == 32 for t in toks)


def test_settings_are_checked(digits_world):
    data, specs, *_ = digits_world
    with pytest.raises(ValueError, match="give a store"):
        LambdaBackend()
    with pytest.raises(ValueError, match="invocation must be"):
        LambdaBackend(store={"kind": "memory"}, invocation="Async")
    b = LambdaBackend(store={"kind": "memory"})
    bad = [WorkerSpec(**{**specs[0].to_dict(), "model": lambda s, c: torch.nn.Linear(1, 1)})]
    with pytest.raises(ValueError, match="rebuild the model from its registry name"):
        b.start(bad, data=data)


@pytest.mark.parametrize("kind", ["redis", "s3"])
def test_round_through_real_stores(digits_world, kind, request):
    """The same round through Redis (a real redis-server) and S3 (moto's server): same gradients,
    and the round's keys deleted afterwards."""
    data, specs, params, ref = digits_world
    H._STATES.clear()
    b = LambdaBackend(store=request.getfixturevalue(f"{kind}_server"), run_id=f"st{kind}")
    b.start(specs, data=data)
    b.invoker = InProcessInvoker(b)
    try:
        got = b.compute(0, params, list(range(N)), timeout_s=30)
        want = ref.compute(0, params, list(range(N)), timeout_s=30)
        assert got.errors == {} and all(torch.equal(got.grads[i], want.grads[i]) for i in range(N))
        assert b.store.get_many([grad_key(f"st{kind}", 0, i, b.token(0, i)) for i in range(N)]) == {}
    finally:
        b.close()
