"""Faults of real Ray runs: a worker actor killed in the middle of ``train()`` rejoins and the
run equals its replay; the round's deadline counts from the round's start and holds even when
a wait returns late; a driver killed by SIGKILL leaves no process of its Ray behind."""
import gc
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
import torch

from robustagg.backends.base import WorkerSpec
from robustagg.backends.ray_cluster import processes_of, ray_env, short_temp_dir
from robustagg.training import TrainConfig, train
from tests.training.faults import replay, rounds_done, worker_pids

pytestmark = pytest.mark.ray


def test_killed_worker_actor_rejoins_a_real_run(ray_local, tmp_path):
    """SIGKILL of an honest worker's actor process after round 7 of a run with data: Ray
    restarts it, it rebuilds its shard and answers again; the run is the in-process run with
    the recorded omissions."""
    out = str(tmp_path / "run")
    cfg = TrainConfig(backend="ray", workers=3, byzantine=0, rule="median", model="logreg",
                      rounds=40, progress=False, output_dir=out)
    before = worker_pids()
    killed = {}

    def kill_after_round_7():
        deadline = time.monotonic() + 300
        while rounds_done(out) < 8 and time.monotonic() < deadline:
            time.sleep(0.005)
        pid = worker_pids(exclude=before)[0]
        os.kill(pid, signal.SIGKILL)
        killed.update(pid=pid, after=rounds_done(out))

    killer = threading.Thread(target=kill_after_round_7, daemon=True)
    killer.start()
    res = train(cfg)
    killer.join()
    assert killed, "the worker was not killed"
    hit = [r for r in res.history if r["omitted"]]
    assert hit, "the kill left no omission"
    assert len({i for r in hit for i in r["omitted"]}) == 1  # one worker, the killed one
    rounds = [r["round"] for r in hit]
    assert rounds == list(range(rounds[0], rounds[-1] + 1)) and rounds[0] >= 8  # one stretch
    assert rounds[-1] < cfg.rounds - 1, f"never rejoined: {hit[-1]['omitted']}"
    assert res.history[-1]["arrived"] == 3
    assert all("ActorDiedError" not in why for r in hit for why in r["omitted"].values())
    assert torch.equal(res.params, replay(cfg, res.history))


def test_restarted_actor_rebuilds_its_shard_from_the_data_it_was_given(ray_local):
    """The same at the backend, deterministically: the dataset handed to the actors at start is
    still there when Ray re-runs a killed actor's ``__init__``, however long after."""
    import ray

    from robustagg.backends.ray_backend import RayBackend
    from robustagg.run import worker as W
    from robustagg.run.data import load_dataset

    data = load_dataset("digits")
    spec = WorkerSpec(worker_id=0, workers=2, model="logreg", seed=0)
    backend = RayBackend()
    backend.start([spec], data=data)
    try:
        gc.collect()  # what start() left to the garbage collector is gone now, not some time later
        os.kill(ray.get(backend.actor_of[0].ping.remote()), signal.SIGKILL)
        params, deadline, rnd = torch.zeros(650), time.monotonic() + 120, 0
        while True:
            got = backend.compute(rnd, params, [0], timeout_s=30)
            if 0 in got.grads or time.monotonic() > deadline:
                break
            assert got.errors[0].startswith("restarting"), got.errors  # not crashed for good
            rnd += 1
        assert 0 in got.grads, got.errors
        ref, _ = W.compute_gradient(W.build_worker(spec, data), params, rnd)
        assert torch.equal(got.grads[0], ref)
    finally:
        backend.close()


def test_round_deadline_counts_from_the_round_start(ray_local, monkeypatch):
    import ray

    from robustagg.backends.ray_backend import RayBackend

    specs = [WorkerSpec(worker_id=i, workers=3, model="logreg", seed=0) for i in range(3)]
    backend = RayBackend(workers_per_actor=3)  # one process: the deadline is the server's
    backend.start(specs)
    params = torch.zeros(650)
    real_put, real_wait = ray.put, ray.wait

    def all_answer(first_round):
        # The deadline is under test, not the actor's start: on a loaded machine Ray may report
        # the new actor unavailable for a moment, so a few rounds are allowed to settle it.
        for r in range(first_round, first_round + 5):
            got = backend.compute(r, params, [0, 1, 2], timeout_s=60)
            if set(got.grads) == {0, 1, 2}:
                return
        raise AssertionError(f"workers did not all answer in 5 rounds: {got.errors}")

    try:
        all_answer(0)
        # publishing takes longer than the whole round may: no answer can be in time
        monkeypatch.setattr(ray, "put", lambda *a, **k: (time.sleep(0.5), real_put(*a, **k))[1])
        late = backend.compute(10, params, [0, 1, 2], timeout_s=0.3)
        assert not late.grads and set(late.errors) == {0, 1, 2}, late.errors
        assert all(why.startswith("timeout") for why in late.errors.values())
        monkeypatch.setattr(ray, "put", real_put)

        # a wait that returns after the deadline (a loaded machine): what it brought is late
        def returns_late(*a, **k):
            got = real_wait(*a, **k)
            time.sleep(0.5)
            return got

        monkeypatch.setattr(ray, "wait", returns_late)
        late = backend.compute(11, params, [0, 1, 2], timeout_s=0.3)
        assert not late.grads and set(late.errors) == {0, 1, 2}, late.errors
        monkeypatch.setattr(ray, "wait", real_wait)
        all_answer(12)
    finally:
        monkeypatch.undo()
        backend.close()


DRIVER = """
import sys, time
from robustagg.backends.ray_cluster import start_local
import ray
start_local(num_cpus=1, object_store_mb=100, temp_dir=sys.argv[1])
ray.get(ray.remote(lambda: 1).remote())
print("ready", flush=True)
time.sleep(600)
"""


def test_killed_driver_leaves_no_ray_process_behind(tmp_path):
    """Without the reaper, the DashboardAgent and RuntimeEnvAgent of a driver killed by SIGKILL
    stay for about a minute, orphaned to PID 1."""
    temp = short_temp_dir("ra_kill_")
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, temp], stdout=subprocess.PIPE,
                              text=True, env=ray_env())
    try:
        assert driver.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while True:  # the agents start beside the raylet, perhaps after the first task
            procs = {}
            for pid in processes_of(temp, extra=[driver.pid]):
                try:
                    p = psutil.Process(pid)
                    procs[pid] = (p.name(), p.create_time())
                except psutil.Error:
                    continue
            names = {n for n, _ in procs.values()}
            if {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, names
    finally:
        driver.kill()
        driver.wait()

    def left():
        out = []
        for pid, (name, started) in procs.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(f"{pid} {name}")
            except psutil.Error:
                continue
        return out

    deadline = time.monotonic() + 20  # Ray alone: about 60 s
    while left() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not left(), left()
