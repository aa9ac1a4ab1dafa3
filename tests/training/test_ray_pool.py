"""A sweep's pool of Ray processes (robustagg.backends.ray_pool): runs through one pool give the
bits of the same runs alone, its actors are reused across runs, and none outlives the pool.

The runs alone are in-process (``backend="local"``): a fresh Ray run gives the same bits as
those (tests/training/test_ray.py), and they cost no process starts."""
import os
import signal
import time

import psutil
import pytest
import torch

from robustagg.backends.ray_pool import active_pool, sweep_pool
from robustagg.training import TrainConfig, train

from .faults import actor_pids, worker_pids

pytestmark = pytest.mark.ray

# Three different runs: worker 3 (alone in its actor) dying from round 2 (Ray restarts it; the
# pool must not keep it), another rule, attack, seed and partition on the same actor layout
# (actors reused), and another layout (one actor: another CPU share, a new actor).
RUNS = [
    dict(rule="median", attack="crash", attack_kwargs={"round": 2}, seed=0),
    dict(rule="trimmed_mean", attack="alie", seed=1, partition="dirichlet", alpha=0.5),
    dict(rule="krum", attack="gaussian", seed=2, workers=5, backend_kwargs={"workers_per_actor": 5}),
]


def config(tmp_path, name, backend="ray", **kw):
    kw = {"progress": False, "output_dir": str(tmp_path / name), "workers": 4, "byzantine": 1,
          "model": "logreg", "rounds": 4, "eval_every": 2, "backend": backend,
          "backend_kwargs": {"workers_per_actor": 3}, **kw}
    if backend == "local":  # in-process workers: no actors to pack
        kw["backend_kwargs"] = {}
    return TrainConfig(**kw)


def same_run(a, b):
    """Same final model and same round records (the omitted workers, not why: a Ray worker
    is "restarting" where an in-process one "crashed")."""
    assert torch.equal(a.params, b.params)
    keys = ("train_loss", "test_acc", "selected", "dist_honest_mean")

    def records(res):
        return [{**{k: r.get(k) for k in keys}, "omitted": sorted(r["omitted"])}
                for r in res.history]

    assert records(a) == records(b)


def gone(pids, timeout_s=30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids):
            return True
        time.sleep(0.2)
    return False


def test_runs_through_one_pool_equal_runs_alone_and_leave_no_actor(ray_local, tmp_path):
    before = set(worker_pids()) | set(actor_pids("_Host"))
    pooled, seen = [], []
    with sweep_pool() as pool:
        assert active_pool() is pool
        for k, kw in enumerate(RUNS):
            pooled.append(train(config(tmp_path, f"pooled{k}", **kw)))
            seen.append((set(actor_pids("_Host")) - before, set(worker_pids()) - before))
    assert active_pool() is None
    hosts = set().union(*(h for h, _ in seen))
    assert len(hosts) == 1 and all(h == hosts for h, _ in seen)  # one host for every run
    assert seen[0][1] & seen[1][1]  # the second run's workers include the first one's
    # the pool's processes end with it
    assert gone(hosts | set().union(*(w for _, w in seen)))
    for k, kw in enumerate(RUNS):
        same_run(pooled[k], train(config(tmp_path, f"alone{k}", **kw, backend="local")))
    assert "3" in pooled[0].history[-1]["omitted"]  # the crash did happen


def test_a_failing_run_or_a_killed_host_leaves_the_pool_usable_and_an_error_closes_it(
        ray_local, tmp_path):
    """A run that raises mid-way (Krum's bound fails once a crashed worker is gone) ends its
    lease; a host killed between runs (as by an out-of-memory killer) is replaced; the next
    run through the same pool is right; an error in the block closes the pool."""
    before = set(actor_pids("_Host")) | set(worker_pids())
    with pytest.raises(KeyError, match="the block's own error"):
        with sweep_pool():
            with pytest.raises(RuntimeError, match=r"round 1: only \d of 5 workers answered"):
                train(config(tmp_path, "fails", rule="krum", workers=5, attack="crash",
                             attack_kwargs={"round": 1}, backend_kwargs={"workers_per_actor": 5}))
            (host,) = set(actor_pids("_Host")) - before
            os.kill(host, signal.SIGKILL)
            assert gone([host])
            ok = train(config(tmp_path, "ok", **RUNS[1]))
            assert set(actor_pids("_Host")) - before - {host}
            ours = (set(actor_pids("_Host")) | set(worker_pids())) - before
            raise KeyError("the block's own error")
    assert ours and gone(ours)
    same_run(ok, train(config(tmp_path, "ok_alone", **RUNS[1], backend="local")))
