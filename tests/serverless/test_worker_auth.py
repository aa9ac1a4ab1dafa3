"""What one Lambda worker can do to the others and to the run: its store rights (Redis ACL users,
per round or standing), unguessable gradient keys, and the deploy files that grant the same."""
import json
import os
import re

import pytest
import torch

from robustagg.backends.serverless import handler as H
from robustagg.backends.serverless import wire
from robustagg.backends.serverless.backend import LambdaBackend
from robustagg.backends.serverless.function_config import function_environment
from robustagg.backends.serverless.stores import (grad_key, grad_nonce, make_store, params_key,
                                                  redis_acl, shard_key)
from tests.serverless.inprocess import InProcessInvoker

N = 5
DEPLOY = os.path.join(os.path.dirname(H.__file__), "deploy")


@pytest.fixture(scope="module")
def world(digits_world):
    """digits_world with the local backend's round-0 arrivals as the reference."""
    data, specs, params, ref = digits_world
    return data, specs, params, ref.compute(0, params, list(range(N)), timeout_s=30)


def _same_as_reference(arr, ref):
    assert arr.errors == {}, arr.errors
    assert sorted(arr.grads) == list(range(N))
    assert all(torch.equal(arr.grads[i], ref.grads[i]) for i in range(N))


def _squat(store, ev, refused=()):
    """A Byzantine client of the store fills every gradient key it can name with junk, for
    every worker: the old predictable keys and keys with guessed nonces (``refused``: the
    store's permission errors, ignored)."""
    r, run = ev["round"], ev["run_id"]
    junk = wire.encode(torch.full((ev["d"],), 1e30), kind="grad", run_id=run, round=r, worker=0)
    for w in range(N):
        for key in [f"ra/{run}/r{r}/grad/{w}"] + [grad_key(run, r, w, guess)
                                                  for guess in (b"\0" * 32, os.urandom(32))]:
            try:
                store.put(key, junk)
            except refused:
                pass


def test_squatted_keys_do_not_stop_honest_workers(world):
    """Junk pre-written under every gradient key another client can name used to turn the
    victims into omissions (four squatted keys stopped a run at round 0). A worker's key holds
    a nonce derived from its round token, so every honest gradient still arrives."""
    data, specs, params, ref = world
    H._STATES.clear()
    b = LambdaBackend(store={"kind": "memory"}, run_id="squat")
    b.start(specs, data=data)
    try:
        b.invoker = InProcessInvoker(b, {0: _squat})  # worker 0 acts before anyone writes
        _same_as_reference(b.compute(0, params, list(range(N)), timeout_s=30), ref)
    finally:
        b.close()


def _attempts(store_cfg, ev, params_blob):
    """What a Byzantine worker holding ``store_cfg`` (its own credentials) tries; returns the
    operations that the store allowed."""
    import redis

    s = make_store(store_cfg)
    r, run = ev["round"], ev["run_id"]
    tok = bytes.fromhex(ev["token"])
    victim_key = grad_key(run, r, 1, tok)  # even with the victim's key name (a leak)
    tries = {
        "CONFIG GET dir": lambda: s.client.config_get("dir"),
        "ACL LIST": lambda: s.client.acl_list(),
        "KEYS *": lambda: s.client.keys("*"),
        "SCAN": lambda: s.client.scan(0),
        "FLUSHALL": lambda: s.client.flushall(),
        "overwrite params": lambda: s.client.set(params_key(run, r), params_blob),
        "delete params": lambda: s.client.delete(params_key(run, r)),
        "read another shard": lambda: s.get(shard_key(run, 1, "x")),
        "write another worker's key": lambda: s.put(victim_key, b"junk"),
        "read a gradient": lambda: s.get(grad_key(run, r, ev["worker_id"], tok)),
        "write a made-up gradient key": lambda: s.put(grad_key(run, r, ev["worker_id"], b"m" * 32), b"x"),
    }
    allowed = []
    for name, fn in tries.items():
        try:
            fn()
            allowed.append(name)
        except redis.exceptions.NoPermissionError:
            pass
    s.close()
    return allowed


def _byzantine_worker(environ, store_cfg_of, seen):
    def act(store, ev):
        with H.open_store(ev, environ=environ):  # its own login works...
            pass
        blob = wire.encode(torch.zeros(ev["d"]), kind="params", run_id=ev["run_id"],
                           round=ev["round"], worker=-1)
        seen.extend(_attempts(store_cfg_of(ev), ev, blob))  # ...and lets it do nothing else
    return act


@pytest.mark.redis
def test_round_users_confine_each_worker(world, redis_server):
    """worker_auth="round": each worker logs in as the user the server made for it this round
    (its password derived from its round token) and may read this round's parameters and its
    own shard and write its own gradient key, nothing else: no admin command, no other key. The
    users are gone when the round ends. Before, every worker held the admin password."""
    data, specs, params, ref = world
    H._STATES.clear()
    b = LambdaBackend(store=redis_server, run_id="acl-round")
    assert b.worker_auth == "round"
    b.start(specs, data=data)
    env = function_environment(redis_server, "round")
    assert set(env) == {"RA_STORE"} and "password" not in env["RA_STORE"]

    def cfg_of(ev):
        settings = json.loads(env["RA_STORE"])
        return {**{k: v for k, v in settings.items() if k != "auth"},
                "username": redis_acl.round_user(ev["run_id"], ev["worker_id"]),
                "password": redis_acl.round_password(bytes.fromhex(ev["token"]))}

    allowed = []
    try:
        b.invoker = InProcessInvoker(b, {4: _byzantine_worker(env, cfg_of, allowed)}, environ=env)
        _same_as_reference(b.compute(0, params, list(range(N)), timeout_s=30), ref)
        assert allowed == []
        users = [u.decode() for u in b.store.client.execute_command("ACL", "USERS")]
        assert not any(u.startswith("ra.acl-round.") for u in users)  # revoked after the round
    finally:
        b.close()


def _acl_file():
    """{user: rules} of deploy/redis-acl.conf, the password placeholder dropped."""
    users = {}
    with open(os.path.join(DEPLOY, "redis-acl.conf")) as fh:
        for line in fh:
            if line.startswith("user ra-"):
                _, name, *rules = line.split()
                users[name] = [r for r in rules if not r.startswith(">")]
    return users


def test_deploy_acl_file_matches_the_code():
    with open(os.path.join(DEPLOY, "redis-acl.conf")) as fh:
        assert "user default off\n" in fh.read()
    users = _acl_file()
    assert users["ra-worker"] == ["on", *redis_acl.WORKER_RULES]
    assert users["ra-server"] == ["on", *redis_acl.SERVER_RULES, *redis_acl.SERVER_ROUND_USER_RULES]


@pytest.mark.redis
def test_standing_worker_user_of_the_deploy_file(world, redis_server):
    """worker_auth="function" with the users of deploy/redis-acl.conf: the server runs as
    ra-server, every worker as the one standing ra-worker. A worker still cannot read
    gradients, write the parameters or run admin commands, and squatting fails on the nonce."""
    data, specs, params, ref = world
    admin = make_store(redis_server)
    pw = {name: os.urandom(16).hex() for name in _acl_file()}
    for name, rules in _acl_file().items():
        admin.client.execute_command("ACL", "SETUSER", name, "reset", ">" + pw[name], *rules)
    base = {k: v for k, v in redis_server.items() if k != "password_env"}
    server_cfg = {**base, "username": "ra-server", "password": pw["ra-server"]}
    worker_cfg = {**base, "username": "ra-worker", "password": pw["ra-worker"]}
    H._STATES.clear()
    H._STORES.clear()
    b = LambdaBackend(store=server_cfg, worker_auth="function", run_id="acl-fn")
    b.start(specs, data=data)
    env = function_environment(worker_cfg, "function")
    assert env["RA_REDIS_USERNAME"] == "ra-worker" and env["RA_REDIS_PASSWORD"] == pw["ra-worker"]
    allowed = []
    byz = _byzantine_worker(env, lambda ev: worker_cfg, allowed)

    def squat_then_try(store, ev):
        import redis

        _squat(make_store(worker_cfg), ev, redis.exceptions.NoPermissionError)
        byz(store, ev)

    try:
        b.invoker = InProcessInvoker(b, {0: squat_then_try}, environ=env)
        _same_as_reference(b.compute(0, params, list(range(N)), timeout_s=30), ref)
        # a standing user cannot tell workers apart: it may read any shard and create any
        # gradient key it can name (here a leaked one, and one no one reads); it cannot guess
        # the others' nonces
        assert sorted(allowed) == ["read another shard", "write a made-up gradient key",
                                   "write another worker's key"]
    finally:
        b.close()
        H._STORES.clear()
        admin.client.execute_command("ACL", "DELUSER", "ra-server", "ra-worker")
        admin.close()


def test_round_auth_needs_acl_rights(world, redis_server):
    data, specs, *_ = world
    admin = make_store(redis_server)
    admin.client.execute_command("ACL", "SETUSER", "ra-weak", "reset", "on", ">pw",
                                 *redis_acl.SERVER_RULES)
    base = {k: v for k, v in redis_server.items() if k != "password_env"}
    b = LambdaBackend(store={**base, "username": "ra-weak", "password": "pw"}, run_id="weak")
    try:
        with pytest.raises(ValueError, match="worker_auth='round' needs Redis >= 7 and a server "
                                             "user allowed ACL SETUSER"):
            b.start(specs, data=data)
    finally:
        b.close()
        admin.client.execute_command("ACL", "DELUSER", "ra-weak")
        admin.close()


def test_worker_auth_setting_is_checked():
    with pytest.raises(ValueError, match="worker_auth must be 'function', or 'round' with a redis"):
        LambdaBackend(store={"kind": "s3", "bucket": "b"}, worker_auth="round")
    with pytest.raises(ValueError, match="worker_auth must be"):
        LambdaBackend(store={"kind": "memory"}, worker_auth="none")
    assert LambdaBackend(local=True).worker_auth == "round"
    assert LambdaBackend(store={"kind": "s3", "bucket": "b"}).worker_auth == "function"


def _statements(name):
    with open(os.path.join(DEPLOY, name)) as fh:
        return {s["Sid"]: s for s in json.load(fh)["Statement"]}


def _glob(pattern):
    """An IAM resource pattern (after the bucket ARN) as a regex: * matches anything, '/' too."""
    return re.compile(".*".join(map(re.escape, pattern.split("*"))) + r"\Z")


def test_s3_worker_policy_grants_what_the_key_layout_needs():
    """The worker's S3 rights: read the parameters and shards, create gradient keys with their
    nonce, nothing else (no listing, so the nonces cannot be discovered; no delete)."""
    st = _statements("worker-policy.json")
    arn = "arn:aws:s3:::YOUR-BUCKET/"
    reads = [_glob(r[len(arn):]) for r in st["ReadParamsAndShards"]["Resource"]]
    writes = [_glob(st["CreateOwnGradient"]["Resource"][len(arn):])]
    tok = b"t" * 32
    can = {"read": lambda k: any(p.match(k) for p in reads),
           "write": lambda k: any(p.match(k) for p in writes)}
    assert can["read"](params_key("run", 3)) and can["read"](shard_key("run", 2, "x"))
    assert can["write"](grad_key("run", 3, 2, tok))
    assert not can["write"](params_key("run", 3)) and not can["write"](shard_key("run", 2, "x"))
    assert not can["read"](grad_key("run", 3, 2, tok))
    assert not can["write"]("ra/run/r3/grad/2")  # the old, predictable key: no longer writable
    assert st["CreateOwnGradient"]["Action"] == "s3:PutObject"
    deny = st["NoListingNoDeleting"]
    assert deny["Effect"] == "Deny" and {"s3:ListBucket", "s3:DeleteObject"} <= set(deny["Action"])
    assert len(grad_nonce(tok)) == 32
