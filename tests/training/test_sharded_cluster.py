"""A sharded run with its shards on two Ray nodes equals the single-shard run.

The cluster: two nodes on 127.0.0.1 (robustagg.backends.ray_loopback), stopped by PID. The
driver runs in a subprocess (the session's own Ray stays untouched): it starts the sharded
server as an actor, as ``train`` does, runs three rounds, and reports where each shard ran,
whether the workers' slices went straight to the shards (the coordinator received none of the
gradients' bytes) and the final parameters."""
import ipaddress
import json
import subprocess
import sys

import psutil
import pytest
import torch

from robustagg.backends.ray_cluster import processes_of, ray_env
from robustagg.backends.ray_loopback import loopback_cluster
from robustagg.run.config import TrainConfig
from robustagg.training import train

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SETTINGS = dict(rule="krum", attack="alie", workers=5, byzantine=1, model="logreg", rounds=3,
                progress=False)
DRIVER = """
import json, sys, torch, ray
from robustagg.backends.ray_cluster import connect
from robustagg.run.config import TrainConfig
from robustagg.training.sharded import ShardedServer
connect(sys.argv[1])
cfg = TrainConfig(**json.loads(sys.argv[3]), server_shards=2, backend="ray",
                  backend_kwargs={"workers_per_actor": 5})
server = ray.remote(ShardedServer).options(num_cpus=0).remote(cfg)
where = ray.get(server.where.remote())
records = [ray.get(server.step.remote()) for _ in range(cfg.rounds)]
torch.save(ray.get(server.params.remote()), sys.argv[2] + ".pt")
ray.get(server.close.remote())
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
json.dump({"where": where, "nodes": nodes,
           "received": [r["coordinator_gradient_bytes"] for r in records],
           "arrived": [[r["arrived"], r["asked"]] for r in records]}, open(sys.argv[2] + ".json", "w"))
"""


def listening(pids):
    ips = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        ips |= {c.laddr.ip.split("%")[0] for c in conns if c.status == psutil.CONN_LISTEN}
    return {str(getattr(ipaddress.ip_address(i), "ipv4_mapped", None) or i) for i in ips}


def test_shards_on_two_nodes_equal_one_shard(tmp_path):
    with loopback_cluster(nodes=2, cpus=1) as (address, temp):
        out = subprocess.run([sys.executable, "-c", DRIVER, address, str(tmp_path / "run"),
                              json.dumps(SETTINGS)], env=ray_env(), capture_output=True,
                             text=True, timeout=400)
        assert out.returncode == 0, out.stderr[-3000:]
        ips = listening(processes_of(temp))
        assert ips and all(ipaddress.ip_address(i).is_loopback for i in ips), ips
    report = json.load(open(tmp_path / "run.json"))
    assert len(report["nodes"]) == 2
    assert {w["node"] for w in report["where"]} == set(report["nodes"])  # one shard per node
    # the workers' slices went straight to the shards: the coordinator received no gradient
    assert report["received"] == [0] * SETTINGS["rounds"]
    assert all(arrived == asked for arrived, asked in report["arrived"])
    sharded = torch.load(tmp_path / "run.pt", weights_only=True)
    one = train(TrainConfig(**SETTINGS, backend="local", output_dir=str(tmp_path / "one")))
    assert torch.equal(sharded, one.params)
