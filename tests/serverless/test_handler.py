"""The worker handler in-process with an in-memory store: same gradient as the worker core,
clear error results for malformed events and blobs, secrets refused, faults."""
import copy

import pytest
import torch

from robustagg.backends.base import WorkerSpec
from robustagg.backends.serverless import handler as H
from robustagg.backends.serverless import wire
from robustagg.backends.serverless.stores import MemoryStore, grad_key, params_key, shard_key
from robustagg.training.data import load_dataset
from robustagg.training.models import build_model
from robustagg.training.worker import build_worker, compute_gradient

RUN, TOKEN = "hrun", bytes(range(32))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def setup(store, data, worker=1, n=5, round=3, attack="none", byzantine=False, attack_kwargs=None):
    """Write a shard and the parameters like the backend does; return (event, spec, params)."""
    spec = WorkerSpec(worker_id=worker, num_workers=n, dataset="digits", batch_size=16, seed=7,
                      byzantine=byzantine, attack=attack, attack_kwargs=attack_kwargs or {})
    state = build_worker(spec, data)
    digests = []
    for part, kind, t in (("x", "shard_x", state.x), ("y", "shard_y", state.y)):
        blob = wire.encode(t, kind=kind, run_id=RUN, round=0, worker=worker)
        store.put(shard_key(RUN, worker, part), blob, if_absent=False)
        digests.append(wire.digest_of(blob))
    model = build_model("mlp", data.input_shape, data.num_classes, seed=123)
    params = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    pblob = wire.encode(params, kind="params", run_id=RUN, round=round, worker=-1)
    store.put(params_key(RUN, round), pblob, if_absent=False)
    ev = {"version": 1, "run_id": RUN, "round": round, "worker_id": worker,
          "store": {"kind": "memory"}, "token": TOKEN.hex(), "d": params.numel(),
          "num_classes": data.num_classes, "input_shape": list(data.input_shape),
          "x_dtype": "float32", "y_dtype": "int64", "params_digest": wire.digest_of(pblob),
          "shard_digests": digests,
          "spec": {k: getattr(spec, k) for k in ("model", "model_kwargs", "batch_size", "seed",
                                                 "byzantine", "attack", "attack_kwargs",
                                                 "num_workers")}}
    return ev, spec, params, state


@pytest.fixture
def store():
    H._STATES.clear()
    return MemoryStore()


def run(ev, store):
    """The handler's path with a given store (the handler itself builds stores from config)."""
    try:
        return H.run_event(H.parse_event(ev), store)
    except (H.BadEvent, H.MissingBlob, wire.WireError) as e:
        return {"ok": False, "error_type": type(e).__name__, "error": str(e)}


def test_gradient_equals_the_worker_core(store, digits):
    ev, spec, params, state = setup(store, digits)
    res = run(ev, store)
    assert res["ok"] and res["written"] and res["worker_id"] == 1 and res["round"] == 3
    g = wire.decode(store.get(grad_key(RUN, 3, 1)), kind="grad", run_id=RUN, round=3, worker=1,
                    dtype=torch.float32, shape=(ev["d"],), token=TOKEN)
    ref, loss = compute_gradient(state, params, 3)
    assert torch.equal(g, ref) and res["loss"] == loss
    # a duplicate delivery computes again but cannot overwrite
    assert run(ev, store)["written"] is False


def test_data_poisoning_runs_on_the_worker(store, digits):
    ev, spec, params, state = setup(store, digits, attack="label_flip", byzantine=True)
    assert run(ev, store)["ok"]
    g = wire.decode(store.get(grad_key(RUN, 3, 1)), kind="grad", run_id=RUN, round=3, worker=1,
                    token=TOKEN)
    ref, _ = compute_gradient(state, params, 3)
    honest, _ = compute_gradient(build_worker(WorkerSpec(**{**spec.to_dict(), "byzantine": False,
                                                            "attack": "none"}), digits), params, 3)
    assert torch.equal(g, ref) and not torch.equal(g, honest)


def test_crash_fault_raises(store, digits):
    ev, *_ = setup(store, digits, attack="crash", byzantine=True)
    with pytest.raises(H.WorkerCrash, match="worker 1 crashed in round 3"):
        H.run_event(H.parse_event(ev), store)
    assert store.get(grad_key(RUN, 3, 1)) is None


def _mutations(ev):
    yield "not json", "{", "event is not JSON"
    yield "list", [1], "must be a JSON object, got list"
    yield "version", {**ev, "version": 2}, "'version' must be 1, got 2"
    yield "unknown", {**ev, "extra": 1}, "unknown fields ['extra']"
    yield "missing", {k: v for k, v in ev.items() if k != "round"}, "missing field 'round'"
    yield "round type", {**ev, "round": "3"}, "'round' must be int, got str"
    yield "round bool", {**ev, "round": True}, "'round' must be int, got bool"
    yield "negative", {**ev, "worker_id": -1}, "'worker_id' must be >= 0"
    yield "worker range", {**ev, "worker_id": 5}, "worker_id=5 is not in [0, num_workers=5)"
    yield "run id", {**ev, "run_id": "../x"}, "run_id must be 1-32"
    yield "token", {**ev, "token": "zz"}, "token must be 64 hex"
    yield "digest", {**ev, "params_digest": "00"}, "32 hex characters"
    yield "dtype", {**ev, "x_dtype": "float16"}, "'x_dtype' must be one of"
    yield "shape", {**ev, "input_shape": [0]}, "input_shape must be 1-3 positive ints"
    yield "secret", {**ev, "store": {"kind": "redis", "password": "hunter2"}}, "carries a secret"
    bad = copy.deepcopy(ev)
    bad["spec"]["batch_size"] = 0
    yield "batch", bad, "batch_size must be >= 1"
    bad = copy.deepcopy(ev)
    bad["spec"]["rm"] = "-rf"
    yield "spec field", bad, "event.spec: unknown fields ['rm']"


def test_malformed_events_get_clear_error_results(store, digits):
    ev, *_ = setup(store, digits)
    for name, bad, needle in _mutations(ev):
        res = H.handler(bad, None)
        assert res["ok"] is False and res["error_type"] == "BadEvent", name
        assert needle in res["error"], (name, res["error"])
    assert store.keys() == sorted(store.keys()) and store.get(grad_key(RUN, 3, 1)) is None


def test_bad_settings_are_a_result(store, digits):
    ev, *_ = setup(store, digits)
    res = H.handler({**ev, "store": {"kind": "mongo"}}, None)
    assert res == {"ok": False, "error_type": "BadSettings",
                   "error": "store kind must be one of ['memory', 'redis', 's3'], got 'mongo'"}


def test_missing_and_substituted_blobs(store, digits):
    ev, spec, params, _ = setup(store, digits)
    # parameters of the round replaced by someone else (another client of the store)
    store.put(params_key(RUN, 3), wire.encode(params + 1, kind="params", run_id=RUN, round=3,
                                               worker=-1), if_absent=False)
    res = run(ev, store)
    assert res["error_type"] == "WireError" and "written by someone else" in res["error"]
    store.delete_prefix(params_key(RUN, 3))
    res = run(ev, store)
    assert res["error_type"] == "MissingBlob" and "ra/hrun/r3/params is not in the store" in res["error"]
    # a shard replaced by another worker's
    H._STATES.clear()
    ev, *_ = setup(store, digits)
    other = wire.encode(torch.zeros(3, 64), kind="shard_x", run_id=RUN, round=0, worker=1)
    store.put(shard_key(RUN, 1, "x"), other, if_absent=False)
    assert run(ev, store)["error_type"] == "WireError"
    assert store.get(grad_key(RUN, 3, 1)) is None
