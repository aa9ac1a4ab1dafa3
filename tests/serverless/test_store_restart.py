"""A Redis restart (without persistence) under the Lambda backend: the server writes the lost
shards again and re-runs the round for the workers it cost; the store's client rides out the
seconds the server is down, but not a refused login."""
import os
import shutil
import threading

import pytest
import torch

from robustagg.backends.serverless import handler as H
from robustagg.backends.serverless.backend import LambdaBackend
from robustagg.backends.serverless.function_config import function_environment
from robustagg.backends.serverless.stores import epoch_key, make_store, shard_key
from robustagg.backends.serverless.stores.redis_server import LocalRedisServer
from tests.serverless.inprocess import InProcessInvoker

pytestmark = pytest.mark.redis
N = 5
ALL = list(range(N))


@pytest.fixture
def redis_own():
    """A private redis-server that the test may restart (not the session's shared one)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with LocalRedisServer() as srv:
        os.environ["RA_TEST_RESTART_PASSWORD"] = srv.password
        yield srv
        del os.environ["RA_TEST_RESTART_PASSWORD"]


@pytest.fixture
def world(digits_world, redis_own):
    """A started backend on ``redis_own`` whose workers log in as their round users, as a
    deployed function does; the local backend's gradients of rounds 0-2 as the reference."""
    data, specs, params, ref = digits_world
    cfg = redis_own.config(password_env="RA_TEST_RESTART_PASSWORD")
    H._STATES.clear()
    b = LambdaBackend(store=cfg, run_id="restart")
    b.start(specs, data=data)
    b.invoker = InProcessInvoker(b, environ=function_environment(cfg, "round"))
    want = [ref.compute(r, params, ALL, timeout_s=30) for r in range(3)]
    yield b, params, want
    b.close()


def _complete(arr, want):
    assert arr.errors == {}, arr.errors
    assert sorted(arr.grads) == ALL
    assert all(torch.equal(arr.grads[i], want.grads[i]) for i in ALL)


def test_restart_between_rounds_loses_nothing(world, redis_own):
    """The restarted server is empty. Workers started afresh (cold containers) used to find no
    shard, every round after, and the run stopped: the shards are written again."""
    b, params, want = world
    _complete(b.compute(0, params, ALL, timeout_s=30), want[0])
    redis_own.restart()
    H._STATES.clear()  # every container cold: each needs its shard from the store
    _complete(b.compute(1, params, ALL, timeout_s=30), want[1])
    assert b.round_stats[-1]["store_restored"] == 1
    assert b.store.get(shard_key("restart", 3, "x")) is not None
    _complete(b.compute(2, params, ALL, timeout_s=30), want[2])
    assert b.round_stats[-1]["store_restored"] == 0


def test_restart_in_the_middle_of_a_round_loses_nothing(world, redis_own):
    """A restart after the round's users were created took them with it, and the parameters
    and shards: every worker was refused (for seconds, as redis-py retried the refused login)
    and the run stopped. The round is re-run, within its deadline, for the workers it cost."""
    b, params, want = world
    shots = [True]

    def restart_once(store, ev):  # as worker 0 starts: the users are granted, no gradient yet
        if shots and shots.pop():
            redis_own.restart()

    b.invoker.tamper = {0: restart_once}
    _complete(b.compute(0, params, ALL, timeout_s=30), want[0])
    assert not shots and b.round_stats[-1]["store_restored"] == 1
    assert b.store.get(epoch_key("restart")) is not None
    users = [u.decode() for u in b.store.client.execute_command("ACL", "USERS")]
    assert not any(u.startswith("ra.restart.") for u in users)  # revoked after the round


def test_client_rides_out_a_down_server_but_not_a_refused_login(redis_own):
    """A command while the server is down waits for it to come back; a wrong password is
    refused at once, not after redis-py's retries."""
    cfg = redis_own.config()
    store = make_store(cfg)
    store.put("ra/t/a", b"1")
    redis_own.proc.kill()
    redis_own.proc.wait()
    back = threading.Timer(0.3, lambda: setattr(redis_own, "proc", redis_own._spawn()))
    back.start()
    try:
        assert store.put("ra/t/b", b"2") is True  # sent once the server is back
        assert store.get("ra/t/a") is None  # empty: no persistence
    finally:
        back.join()
        store.close()

    import redis

    from robustagg.backends.serverless.stores.redis_retry import reconnect

    calls = []

    def refused():
        calls.append(1)
        raise redis.exceptions.AuthenticationError("invalid username-password pair")

    with pytest.raises(redis.exceptions.AuthenticationError):
        reconnect().call_with_retry(refused, lambda error: None)
    assert len(calls) == 1

    def flaky():
        calls.append(2)
        if calls.count(2) < 3:
            raise redis.exceptions.ConnectionError("Connection refused")
        return "ok"

    assert reconnect().call_with_retry(flaky, lambda error: None) == "ok"
    assert calls.count(2) == 3
