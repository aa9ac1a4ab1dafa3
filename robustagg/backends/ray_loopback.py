"""A Ray cluster of several nodes on 127.0.0.1, for tests and measurements on one machine.

``python -m robustagg.backends.ray_loopback TEMP_DIR --nodes 2 --cpus 3`` starts the nodes
(each its own raylet and object store, with ``--cpus`` logical CPUs), prints the head's
address and holds the cluster until its stdin closes; :func:`loopback_cluster` runs it and
stops every process of it by PID (never ``ray stop``). The nodes come from
``ray.cluster_utils.Cluster``, because ``ray start --address=...`` cannot join a loopback head:
with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (which keeps Ray on 127.0.0.1) the CLI refuses to add
a node, and with it set to 1 the CLI replaces 127.0.0.1 by the machine's interface address and
never reaches the head. Ray writes its address file under TEMP_DIR (RAY_TMPDIR), so no other
Ray on the machine is redirected to this cluster. The holder runs in its own process so that
the caller may itself be connected to another Ray.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys

from .net import LOOPBACK
from .ray_cluster import RAY_ENV, processes_of, ray_env, short_temp_dir, stop_head


def hold(temp_dir: str, nodes: int, cpus: int, object_store_mb: int = 100) -> None:
    """Start the cluster, print its address, wait for stdin to close."""
    os.environ.update(RAY_ENV)
    os.environ["RAY_TMPDIR"] = temp_dir
    # Ray's memory monitor reads the whole machine's memory: on a machine shared with other
    # jobs it would kill this cluster's workers for their memory; the kernel's OOM killer stays
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"
    os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
    from ray.cluster_utils import Cluster

    store = object_store_mb * 2 ** 20
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": cpus, "object_store_memory": store, "include_dashboard": False,
        "temp_dir": temp_dir, "node_ip_address": LOOPBACK})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus, object_store_memory=store, node_ip_address=LOOPBACK)
    print(cluster.address, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # and shut down below
    try:
        sys.stdin.read()
    finally:
        cluster.shutdown()


@contextlib.contextmanager
def loopback_cluster(nodes: int = 2, cpus: int = 1, object_store_mb: int = 100):
    """Yield ``(address, temp_dir)`` of a ``nodes``-node cluster on 127.0.0.1 with ``cpus``
    logical CPUs per node; every process of it is stopped by PID on exit."""
    for name, v, low in (("nodes", nodes, 1), ("cpus", cpus, 1), ("object_store_mb",
                                                                 object_store_mb, 80)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"loopback_cluster: {name} must be an int >= {low}, got {name}={v!r}")
    temp = short_temp_dir("ra_lb_")
    holder = subprocess.Popen([sys.executable, "-m", __name__, temp, "--nodes", str(nodes),
                               "--cpus", str(cpus), "--object-store-mb", str(object_store_mb)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=ray_env(), cwd=os.path.dirname(os.path.dirname(
                                  os.path.dirname(os.path.abspath(__file__)))))
    try:
        address = holder.stdout.readline().strip()
        if not address.startswith(f"{LOOPBACK}:"):
            raise RuntimeError(f"the loopback cluster did not start (holder said {address!r}, "
                               f"exit code {holder.poll()})")
        yield address, temp
    finally:
        pids = processes_of(temp, [holder.pid])
        holder.stdin.close()
        stop_head(temp)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            holder.wait(timeout=10)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("temp_dir")
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--object-store-mb", type=int, default=100)
    a = ap.parse_args()
    hold(a.temp_dir, a.nodes, a.cpus, a.object_store_mb)
