"""The worker handler in-process with an in-memory store: same gradient as the worker core,
clear error results for malformed events and blobs, secrets refused, faults."""
import contextlib
import copy
import json
import socket
import sys

import pytest
import torch

from robustagg.backends.base import WorkerSpec
from robustagg.backends.serverless import handler as H
from robustagg.backends.serverless import wire
from robustagg.backends.serverless.stores import MemoryStore, grad_key, params_key, shard_key
from robustagg.run.data import load_dataset
from robustagg.run.models import build_model
from robustagg.run.worker import build_worker, compute_gradient

RUN, TOKEN = "hrun", bytes(range(32))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def setup(store, data, worker=1, n=5, round=3, attack="none", byzantine=False, attack_kwargs=None):
    """Write a shard and the parameters like the backend does; return (event, spec, params)."""
    spec = WorkerSpec(worker_id=worker, workers=n, dataset="digits", batch_size=16, seed=7,
                      is_byzantine=byzantine, attack=attack, attack_kwargs=attack_kwargs or {})
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
    ev = {"version": 2, "run_id": RUN, "round": round, "worker_id": worker,
          "token": TOKEN.hex(), "d": params.numel(),
          "num_classes": data.num_classes, "input_shape": list(data.input_shape),
          "x_dtype": "float32", "y_dtype": "int64", "params_digest": wire.digest_of(pblob),
          "shard_digests": digests,
          "spec": {k: getattr(spec, k) for k in ("model", "model_kwargs", "batch_size", "seed",
                                                 "is_byzantine", "attack", "attack_kwargs",
                                                 "workers")}}
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
    g = wire.decode(store.get(grad_key(RUN, 3, 1, TOKEN)), kind="grad", run_id=RUN, round=3,
                    worker=1, dtype=torch.float32, shape=(ev["d"],), token=TOKEN)
    ref, loss = compute_gradient(state, params, 3)
    assert torch.equal(g, ref) and res["loss"] == loss
    # a duplicate delivery computes again but cannot overwrite
    assert run(ev, store)["written"] is False


def test_data_poisoning_runs_on_the_worker(store, digits):
    ev, spec, params, state = setup(store, digits, attack="label_flip", byzantine=True)
    assert run(ev, store)["ok"]
    g = wire.decode(store.get(grad_key(RUN, 3, 1, TOKEN)), kind="grad", run_id=RUN, round=3,
                    worker=1, token=TOKEN)
    ref, _ = compute_gradient(state, params, 3)
    honest, _ = compute_gradient(build_worker(WorkerSpec(**{**spec.to_dict(), "is_byzantine": False,
                                                            "attack": "none"}), digits), params, 3)
    assert torch.equal(g, ref) and not torch.equal(g, honest)


def test_crash_fault_raises(store, digits):
    ev, *_ = setup(store, digits, attack="crash", byzantine=True)
    with pytest.raises(H.WorkerCrash, match="worker 1 crashed in round 3"):
        H.run_event(H.parse_event(ev), store)
    assert store.get(grad_key(RUN, 3, 1, TOKEN)) is None


def _mutations(ev):
    yield "not json", "{", "event is not JSON"
    yield "list", [1], "must be a JSON object, got list"
    yield "version", {**ev, "version": 1}, "'version' must be 2, got 1"
    yield "version bool", {**ev, "version": True}, "'version' must be 2, got True"
    yield "unknown", {**ev, "extra": 1}, "unknown fields ['extra']"
    yield "missing", {k: v for k, v in ev.items() if k != "round"}, "missing field 'round'"
    yield "round type", {**ev, "round": "3"}, "'round' must be int, got str"
    yield "round bool", {**ev, "round": True}, "'round' must be int, got bool"
    yield "negative", {**ev, "worker_id": -1}, "'worker_id' must be in [0, 2147483648), got -1"
    yield "worker range", {**ev, "worker_id": 5}, "worker_id=5 is not in [0, workers=5)"
    yield "run id", {**ev, "run_id": "../x"}, "run_id must be 1-32"
    yield "token", {**ev, "token": "zz"}, "token must be 64 hex"
    yield "digest", {**ev, "params_digest": "00"}, "32 hex characters"
    yield "dtype", {**ev, "x_dtype": "float16"}, "'x_dtype' must be one of"
    yield "shape", {**ev, "input_shape": [0]}, "input_shape must be 1-3 positive ints"
    yield "secret", {**ev, "store": {"kind": "redis", "password": "hunter2"}}, "'store' field is not"
    bad = copy.deepcopy(ev)
    bad["spec"]["batch_size"] = 0
    yield "batch", bad, "'batch_size' must be in [1, 65537), got 0"
    bad = copy.deepcopy(ev)
    bad["spec"]["rm"] = "-rf"
    yield "spec field", bad, "event.spec: unknown fields ['rm']"


def test_malformed_events_get_clear_error_results(store, digits):
    ev, *_ = setup(store, digits)
    for name, bad, needle in _mutations(ev):
        res = H.handler(bad, None)
        assert res["ok"] is False and res["error_type"] == "BadEvent", name
        assert needle in res["error"], (name, res["error"])
    assert store.keys() == sorted(store.keys()) and store.get(grad_key(RUN, 3, 1, TOKEN)) is None


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
    assert store.get(grad_key(RUN, 3, 1, TOKEN)) is None


def _in(store):
    """open_store for handle(): every invocation uses ``store``."""
    return lambda ev: contextlib.nullcontext(store)


def test_handle_runs_on_the_store_it_is_given(store, digits):
    ev, *_ = setup(store, digits)
    res = H.handle(ev, _in(store))
    assert res["ok"] and res["written"] and store.get(grad_key(RUN, 3, 1, TOKEN)) is not None


def test_event_cannot_send_a_secret_to_a_host_it_names(store, digits, monkeypatch):
    """An event naming a host, a port and an environment variable used to make the handler log
    in there with that variable's value. Now it is refused before anything is opened: the
    listener sees no connection at all."""
    ev, *_ = setup(store, digits)
    monkeypatch.setenv("RA_SOME_SECRET", "the-execution-roles-key")
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        lst.settimeout(0.5)
        port = lst.getsockname()[1]
        for store_field in ({"kind": "redis", "host": "127.0.0.1", "port": port,
                             "password_env": "RA_SOME_SECRET"},
                            {"kind": "s3", "bucket": "b", "endpoint_url": f"http://127.0.0.1:{port}"}):
            res = H.handler({**ev, "store": store_field}, None)
            assert res["ok"] is False and res["error_type"] == "BadEvent"
            assert "come from the function's configuration (RA_STORE)" in res["error"]
            with pytest.raises(socket.timeout):
                lst.accept()


def test_store_comes_from_the_function_environment(digits):
    """open_store builds the store from RA_STORE and the credentials its auth mode gives."""
    tok = bytes.fromhex("ab" * 32)
    ev = {"run_id": RUN, "worker_id": 2, "token": tok.hex()}
    base = {"kind": "redis", "host": "127.0.0.1", "port": 1}
    env = {"RA_STORE": json.dumps({**base, "auth": "round"})}
    from robustagg.backends.serverless import function_config as F
    from robustagg.backends.serverless.stores import redis_acl

    cfg = F.worker_store_config(F.store_settings(env), env, RUN, 2, tok)
    assert cfg == {**base, "username": redis_acl.round_user(RUN, 2),
                   "password": redis_acl.round_password(tok)}
    env = {"RA_STORE": json.dumps(base), "RA_REDIS_USERNAME": "ra-worker", "RA_REDIS_PASSWORD": "pw"}
    assert F.worker_store_config(F.store_settings(env), env, RUN, 2, tok) == \
        {**base, "username": "ra-worker", "password": "pw"}
    with H.open_store(ev, environ={"RA_STORE": '{"kind": "memory"}'}) as s:
        assert s.get("ra/x") is None


@pytest.mark.parametrize("env,needle", [
    ({}, "has no RA_STORE"),
    ({"RA_STORE": "{"}, "RA_STORE is not JSON"),
    ({"RA_STORE": '{"kind": "mongo"}'}, "kind must be one of"),
    ({"RA_STORE": '{"kind": "redis", "password": "pw"}'}, "credentials go in RA_REDIS_USERNAME"),
    ({"RA_STORE": '{"kind": "redis", "password_env": "AWS_SECRET_ACCESS_KEY"}'}, "credentials go"),
    ({"RA_STORE": '{"kind": "redis", "auth": "none"}'}, "auth must be one of"),
    ({"RA_STORE": '{"kind": "s3", "bukket": "x"}'}, "unknown settings ['bukket']"),
])
def test_bad_function_configuration_is_a_result(store, digits, monkeypatch, env, needle):
    ev, *_ = setup(store, digits)
    monkeypatch.delenv("RA_STORE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    res = H.handler(ev, None)
    assert res["ok"] is False and res["error_type"] == "BadConfig" and needle in res["error"], res


def _nested(depth):
    v = 1
    for _ in range(depth):
        v = {"a": v}
    return v


def test_deeply_nested_events_are_refused(store, digits):
    ev, *_ = setup(store, digits)
    deep = sys.getrecursionlimit() * 2
    text = '{"version": 2, "x": ' + "[" * deep + "]" * deep + "}"
    res = H.handler(text, None)
    assert res["ok"] is False and res["error_type"] == "BadEvent", res
    bad = copy.deepcopy(ev)
    bad["spec"]["model_kwargs"] = {"hidden": _nested(deep)}
    res = H.handle(bad, _in(store))
    assert res["ok"] is False and res["error_type"] == "BadEvent"
    assert "nested deeper than 4 levels" in res["error"]
    bad["spec"]["model_kwargs"] = {"hidden": list(range(5000))}
    assert "more than 1024 values" in H.handle(bad, _in(store))["error"]


@pytest.mark.parametrize("field,value,kind,needle", [
    ("model", "resnet9000", "BadEvent", "unknown model 'resnet9000'"),
    ("attack", "rm_rf", "BadEvent", "unknown attack 'rm_rf'"),
    ("model_kwargs", {"bogus": 1}, "BadSettings", "unexpected keyword argument 'bogus'"),
    ("model_kwargs", {"hidden": "x"}, "BadSettings", "model 'mlp'"),
    ("attack_kwargs", {"bogus": 1}, "BadSettings", "unexpected keyword argument 'bogus'"),
    ("attack_kwargs", {"delay": "x"}, "BadSettings", "attack 'straggle'"),
    ("attack_kwargs", {"delay": float("nan")}, "BadSettings", "finite delay"),
    ("model_kwargs", {"not an identifier": 1}, "BadEvent", "is not an identifier"),
    ("attack_kwargs", {"delay": {"x": 1}}, "BadEvent", "a scalar or a list of scalars"),
])
def test_spec_that_cannot_be_built_is_a_result(store, digits, field, value, kind, needle):
    ev, *_ = setup(store, digits, attack="straggle", byzantine=True)
    bad = copy.deepcopy(ev)
    bad["spec"][field] = value
    res = H.handle(bad, _in(store))
    assert res["ok"] is False and res["error_type"] == kind and needle in res["error"], res
    assert store.get(grad_key(RUN, 3, 1, TOKEN)) is None


def test_d_must_match_the_model(store, digits):
    """d must match the parameters the server wrote, and the spec's model must have d parameters,
    which is checked before the model is allocated: a spec asking for a model of 10^14
    parameters is refused without a memory spike."""
    ev, *_ = setup(store, digits)
    res = H.handle({**ev, "d": ev["d"] + 1}, _in(store))
    assert res["error_type"] == "WireError" and "shape mismatch" in res["error"]
    bad = copy.deepcopy(ev)
    bad["spec"]["model_kwargs"] = {"hidden": [10**7, 10**7]}
    res = H.handle(bad, _in(store))
    assert res["error_type"] == "BadEvent" and "has 100000760000010 parameters" in res["error"]


def test_store_connection_errors_are_a_result(store, digits, monkeypatch):
    """A store that refuses the connection (nothing listens on the port) gives a StoreError."""
    ev, *_ = setup(store, digits)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("RA_STORE", json.dumps({"kind": "redis", "host": "127.0.0.1", "port": port,
                                               "socket_timeout": 2, "auth": "round"}))
    res = H.handler(ev, None)
    assert res["ok"] is False and res["error_type"] == "StoreError"
    assert "ConnectionError" in res["error"] and "get ra/hrun/r3/params" in res["error"]


def test_unexpected_errors_are_a_result(store, digits):
    ev, *_ = setup(store, digits)

    class Broken(MemoryStore):
        def get(self, key):
            raise KeyError("boom")

    res = H.handle(ev, _in(Broken()))
    assert res == {"ok": False, "error_type": "StoreError",
                   "error": "get ra/hrun/r3/params: KeyError: 'boom'"}

    def open_fails(ev):
        raise ZeroDivisionError("division by zero")

    assert H.handle(ev, open_fails) == {"ok": False, "error_type": "InternalError",
                                        "error": "ZeroDivisionError: division by zero"}
