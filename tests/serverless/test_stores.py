"""The stores: one contract, run against the in-memory store, a real redis-server and moto's S3."""
import pickle
import threading
import time

import pytest
import torch

from robustagg.backends.serverless import wire
from robustagg.backends.serverless.stores import (MemoryStore, grad_key, grad_nonce, make_store,
                                                  params_key, round_prefix, shard_key)
from robustagg.backends.serverless.wire import WireError


@pytest.fixture(scope="module")
def opened():
    """One client per store kind for the module (building a boto3 client takes a while)."""
    cache = {}
    yield cache
    for s in cache.values():
        s.close()


@pytest.fixture(params=["memory", "redis", "s3"])
def store(request, opened):
    if request.param not in opened:
        opened[request.param] = MemoryStore() if request.param == "memory" else \
            make_store(request.getfixturevalue(f"{request.param}_server"))
    s = opened[request.param]
    s.delete_prefix("ra/")
    yield s
    s.delete_prefix("ra/")


TOK = b"t" * 32


def test_keys():
    assert params_key("r1", 3) == "ra/r1/r3/params"
    assert grad_key("r1", 3, 4, TOK) == f"ra/r1/r3/grad/4/{grad_nonce(TOK)}"
    assert shard_key("r1", 4, "x") == "ra/r1/shard/4/x"
    assert grad_key("r1", 3, 4, TOK).startswith(round_prefix("r1", 3))
    assert not grad_key("r1", 30, 4, TOK).startswith(round_prefix("r1", 3))
    # the nonce is 32 hex characters, different for every token
    assert len(grad_nonce(TOK)) == 32 and int(grad_nonce(TOK), 16) >= 0
    assert grad_nonce(TOK) != grad_nonce(b"u" * 32)
    with pytest.raises(ValueError, match="16-64 bytes"):
        grad_key("r1", 3, 4, b"short")
    with pytest.raises(ValueError, match="run_id"):
        params_key("r*", 1)


def test_put_get_write_once(store):
    assert store.get("ra/x/a") is None
    assert store.put("ra/x/a", b"one") is True
    assert store.put("ra/x/a", b"two") is False  # a duplicate delivery cannot overwrite
    assert store.get("ra/x/a") == b"one"
    assert store.put("ra/x/a", b"three", if_absent=False) is True
    assert store.get("ra/x/a") == b"three"
    with pytest.raises(ValueError, match="store key"):
        store.put("ra/x/*", b"")


def test_get_many_and_delete_prefix(store):
    for r in (1, 2, 10):
        for w in range(3):
            store.put(grad_key("run", r, w, TOK), bytes([r, w]))
    got = store.get_many([grad_key("run", 1, w, TOK) for w in range(5)])
    assert got == {grad_key("run", 1, w, TOK): bytes([1, w]) for w in range(3)}
    assert store.delete_prefix(round_prefix("run", 1)) == 3
    assert store.get(grad_key("run", 1, 0, TOK)) is None
    assert store.get(grad_key("run", 10, 0, TOK)) == bytes([10, 0])  # r1/ is not a prefix of r10/
    assert store.delete_prefix("ra/run/") == 6


def test_wait_returns_what_arrived(store):
    keys = [grad_key("w", 0, i, TOK) for i in range(4)]

    def late():
        time.sleep(0.1)
        store.put(keys[1], b"b")

    store.put(keys[0], b"a")
    t = threading.Thread(target=late)
    t.start()
    got = store.wait(keys[:2], timeout=5)
    t.join()
    assert got == {keys[0]: b"a", keys[1]: b"b"}
    got = store.wait(keys, timeout=0.2)  # two never arrive: returns after the timeout with the rest
    assert set(got) == set(keys[:2])


def test_large_blob(store):
    t = torch.arange(1_000_000, dtype=torch.float32)
    store.put(params_key("big", 0), wire.encode(t, kind="params", run_id="big", round=0, worker=-1))
    out = wire.decode(store.get(params_key("big", 0)), kind="params", run_id="big", round=0, worker=-1)
    assert torch.equal(out, t)


def test_worker_writing_another_workers_key(store):
    """Worker 1 writes under worker 2's key: refused by the header check, or by write-once."""
    meta = dict(kind="grad", run_id="sec", round=0)
    tok = {1: b"k1" * 16, 2: b"k2" * 16}
    honest = wire.encode(torch.ones(3), **meta, worker=2, token=tok[2])
    # (a) forged blob with its own header (worker=1) under worker 2's key: header mismatch
    store.put(grad_key("sec", 0, 2, TOK), wire.encode(-torch.ones(3), **meta, worker=1, token=tok[1]))
    with pytest.raises(WireError, match="worker mismatch"):
        wire.decode(store.get(grad_key("sec", 0, 2, TOK)), **meta, worker=2, token=tok[2])
    # ... and the honest worker's late write cannot replace it (write-once): an omission, logged
    assert store.put(grad_key("sec", 0, 2, TOK), honest) is False
    # (b) a blob claiming worker=2 without worker 2's token: digest mismatch
    store.delete_prefix(round_prefix("sec", 0))
    store.put(grad_key("sec", 0, 2, TOK), wire.encode(-torch.ones(3), **meta, worker=2, token=tok[1]))
    with pytest.raises(WireError, match="digest mismatch"):
        wire.decode(store.get(grad_key("sec", 0, 2, TOK)), **meta, worker=2, token=tok[2])
    # (c) the honest one, written first, cannot be overwritten by the attacker
    store.delete_prefix(round_prefix("sec", 0))
    assert store.put(grad_key("sec", 0, 2, TOK), honest) is True
    assert store.put(grad_key("sec", 0, 2, TOK), wire.encode(-torch.ones(3), **meta, worker=2)) is False
    assert torch.equal(wire.decode(store.get(grad_key("sec", 0, 2, TOK)), **meta, worker=2, token=tok[2]),
                       torch.ones(3))


class _Boom:
    executed = []

    def __reduce__(self):
        return (_Boom.executed.append, ("pwned",))


def test_pickle_in_store_is_never_executed(store):
    store.put(grad_key("p", 0, 0, TOK), pickle.dumps(_Boom()))
    with pytest.raises(WireError, match="shorter than|bad magic"):
        wire.decode(store.get(grad_key("p", 0, 0, TOK)), kind="grad", run_id="p", round=0, worker=0)
    assert _Boom.executed == []


def test_make_store_errors(monkeypatch):
    with pytest.raises(ValueError, match="store kind"):
        make_store({"kind": "mongo"})
    with pytest.raises(ValueError, match="bad settings for the memory store"):
        make_store({"kind": "memory", "host": "x"})
    monkeypatch.delenv("RA_NOPE", raising=False)
    with pytest.raises(ValueError, match="RA_NOPE"):
        make_store({"kind": "redis", "password_env": "RA_NOPE"})


def test_redis_needs_the_password(redis_server):
    import redis

    bad = make_store({**redis_server, "password_env": None, "password": "wrong"})
    with pytest.raises(redis.exceptions.AuthenticationError):
        bad.get("ra/x")
