"""The Ray backend: same results as in-process workers, crashes and restarts, timeouts, a run
against a cluster started with ``ray start --head``, and loopback-only listening sockets."""
import ipaddress
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from robustagg.backends.base import WorkerSpec
from robustagg.backends.ray_cluster import processes_of, ray_env, start_head, stop_head
from robustagg.training import TrainConfig, train
from robustagg.run import worker as W

pytestmark = pytest.mark.ray


# ---- listening sockets of processes ----
def listening_addresses(pids):
    """Local IPs of the TCP sockets in LISTEN state held by ``pids`` (an IPv4-mapped IPv6
    address as its IPv4 address)."""
    ips = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:  # gone meanwhile
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                ip = ipaddress.ip_address(c.laddr.ip.split("%")[0])
                ips.add(str(getattr(ip, "ipv4_mapped", None) or ip))
    return ips


def run(tmp_path, name, **kw):
    kw = {"progress": False, "output_dir": str(tmp_path / name), "workers": 4, "byzantine": 1,
          "rule": "median", "model": "logreg", "rounds": 4, **kw}
    return train(TrainConfig(**kw))


# ---- tests ----
def test_ray_equals_local_with_a_crashing_worker(ray_local, tmp_path):
    """Same seed: the Ray run (actors, object store, a worker process really dying from round 2
    and being restarted by Ray) ends with exactly the parameters of the in-process run."""
    kw = dict(attack="crash", attack_kwargs={"round": 2}, partition="dirichlet")
    ray_res = run(tmp_path, "ray", backend="ray", **kw)
    local = run(tmp_path, "local", backend="local", **kw)
    assert torch.equal(ray_res.params, local.params)
    assert [r["train_loss"] for r in ray_res.history] == [r["train_loss"] for r in local.history]
    for r in ray_res.history:
        assert set(r["omitted"]) == (set() if r["round"] < 2 else {"3"})
        assert all(why.startswith(("crashed", "restarting")) for why in r["omitted"].values())
    # every process of this Ray instance listens on loopback only
    import ray

    session = ray._private.worker._global_node.get_session_dir_path()
    ips = listening_addresses(processes_of(session, extra=[os.getpid()]))
    assert ips and all(ipaddress.ip_address(i).is_loopback for i in ips), ips


def test_killed_actor_is_restarted_and_rejoins_and_stragglers_time_out(ray_local):
    from robustagg.backends.ray_backend import RayBackend

    specs = [WorkerSpec(worker_id=i, workers=3, model="logreg", seed=0) for i in range(3)]
    specs[2].is_byzantine, specs[2].attack, specs[2].attack_kwargs = True, "straggle", {"delay": 3.0}
    backend = RayBackend()
    backend.start(specs)
    try:
        params = torch.zeros(650)
        first = backend.compute(0, params, [0, 1, 2], timeout_s=1.5)
        assert set(first.grads) == {0, 1} and first.errors[2].startswith("timeout")
        pid = __import__("ray").get(backend.actor_of[1].ping.remote())
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        second = backend.compute(1, params, [0, 1], timeout_s=30)
        assert set(second.grads) == {0} and second.errors[1].startswith(("crashed", "restarting"))
        # Ray restarts the actor (a new process rebuilding its shard); until it is up, the
        # worker is an omission of each round; then it rejoins with the right gradient
        deadline, rnd = time.monotonic() + 120, 2
        while True:
            later = backend.compute(rnd, params, [0, 1], timeout_s=30)
            if 1 in later.grads or time.monotonic() > deadline:
                break
            assert later.errors[1].startswith(("restarting", "crashed")), later.errors
            rnd += 1
            time.sleep(0.5)
        assert set(later.grads) == {0, 1}, later.errors
        ref, _ = W.compute_gradient(W.build_worker(specs[1]), params, rnd)
        assert torch.equal(later.grads[1], ref)
        assert __import__("ray").get(backend.actor_of[1].ping.remote()) != pid
    finally:
        backend.close()


def test_run_against_cluster_from_ray_start(tmp_path):
    """``ray start --head --node-ip-address=127.0.0.1`` in a subprocess, the CLI joins it by
    address, and the cluster's processes listen on 127.0.0.1 only; stopped by PID."""
    address, temp = start_head()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "robustagg.training", f"address={address}", "workers=4",
             "byzantine=1", "rule=median", "model=logreg", "rounds=3", "progress=false",
             f"output_dir={tmp_path / 'run'}", 'backend_kwargs={"workers_per_actor": 2}'],
            env=ray_env(), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "final accuracy" in out.stdout
        with open(tmp_path / "run" / "metrics.jsonl") as fh:
            assert len(fh.readlines()) == 3
        ips = listening_addresses(processes_of(temp))
        assert ips and all(ipaddress.ip_address(i).is_loopback for i in ips), ips
    finally:
        stop_head(temp)


def test_joining_nothing_fails_fast():
    from robustagg.backends.net import free_port
    from robustagg.backends.ray_cluster import connect

    # without the port probe, ray.init would retry for minutes instead of raising
    with pytest.raises(ConnectionError, match="no Ray cluster answers at address='127.0.0.1:"):
        connect(f"127.0.0.1:{free_port()}", timeout_s=2.0)
    with pytest.raises(ValueError, match='address must be "auto" or "host:port"'):
        connect("localhost", timeout_s=1.0)


def test_joining_a_loopback_cluster_after_ray_was_imported_unsafely_fails_fast(tmp_path):
    """Ray imported without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 would turn 127.0.0.1 into the
    machine's address and retry for ever; connect() says so at once."""
    code = ("import socket, ray\n"
            "from robustagg.backends.ray_cluster import connect\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
            "try:\n"
            "    connect(f'127.0.0.1:{s.getsockname()[1]}', timeout_s=2.0)\n"
            "except RuntimeError as e:\n"
            "    print('refused:', e)\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                             os.path.abspath(__file__)))))
    assert "refused:" in out.stdout and "before importing ray" in out.stdout, out.stderr[-2000:]
