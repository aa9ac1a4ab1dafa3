"""Two runs sharing a two-node loopback Ray cluster through a share arbiter: each holds its fair
share in placement groups of its own, the longer run's partition grows when the shorter one
finishes, and both end with the parameters of the same runs in-process.

The driver runs in a subprocess (the session's own Ray stays untouched) on a cluster of two
nodes of 2 CPUs each on 127.0.0.1 (:mod:`robustagg.backends.ray_loopback`)."""
import json
import subprocess
import sys

import pytest
import torch

from robustagg.backends.ray_cluster import ray_env
from robustagg.backends.ray_loopback import loopback_cluster
from robustagg.run.config import TrainConfig
from robustagg.training import train

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SETTINGS = dict(workers=4, byzantine=1, rule="median", model="logreg", partition="dirichlet",
                progress=False)
SHORT_ROUNDS, MOST_ROUNDS = 3, 3000
DRIVER = """
import json, sys, threading, time, torch
from robustagg.backends.ray_cluster import connect
connect(sys.argv[1])
import ray
from ray.util import placement_group_table
from robustagg.backends.ray_shares import start_arbiter
from robustagg.run.config import TrainConfig
from robustagg.training.server import ParameterServer
from robustagg.backends.ray_partition import PartitionBackend
settings, out = json.loads(sys.argv[2]), sys.argv[5]
short_rounds, most = int(sys.argv[3]), int(sys.argv[4])
arbiter = start_arbiter("test", 4)
report, started, short_done = {}, threading.Event(), threading.Event()

def finish(name, server, backend):
    report[name] = {"rounds": server.round, "sizes": backend.sizes,
                    "nodes": sorted({placement_group_table(pg)["bundles_to_node_id"][0]
                                     for pg in backend.groups})}
    torch.save(server.params(), f"{out}/{name}.pt")

def run_long():
    backend = PartitionBackend(arbiter="test", run="long", place_timeout_s=120)
    server = ParameterServer(TrainConfig(**settings, backend="local"), backend=backend)
    try:
        server.step()  # round 0, alone on the cluster
        started.set()
        while ray.get(arbiter.share.remote("long")) != 2:  # until the short run has joined
            time.sleep(0.05)
        grown = None  # the first round at the full share again, after the short run ended
        while server.round < most and (grown is None or server.round < grown + 3):
            server.step()
            if grown is None and short_done.is_set() and len(backend.actors) == 4:
                grown = server.round
        finish("long", server, backend)
    finally:
        backend.close()

long = threading.Thread(target=run_long)
long.start()
started.wait(300)
backend = PartitionBackend(arbiter="test", run="short", place_timeout_s=120)
server = ParameterServer(TrainConfig(**settings, backend="local"), backend=backend)
try:
    for _ in range(short_rounds):
        server.step()
    finish("short", server, backend)
finally:
    backend.close()
    short_done.set()
long.join(900)
report["timeline"] = ray.get(arbiter.timeline.remote())
json.dump(report, open(f"{out}/report.json", "w"))
"""


def test_two_runs_share_two_nodes_and_the_long_one_grows(tmp_path):
    with loopback_cluster(nodes=2, cpus=2) as (address, _):
        out = subprocess.run([sys.executable, "-c", DRIVER, address, json.dumps(SETTINGS),
                              str(SHORT_ROUNDS), str(MOST_ROUNDS), str(tmp_path)],
                             env=ray_env(), capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.load(open(tmp_path / "report.json"))
    long, short = report["long"], report["short"]
    sizes = [long["sizes"][str(r)] for r in range(long["rounds"])]
    assert sizes[0] == 4  # alone at first: the whole cluster (4 slots, 4 workers)
    assert set(short["sizes"].values()) == {2}  # equal shares while both run
    assert 2 in sizes and sizes[-1] == 4  # shrunk for the short run, grown back after it
    assert long["rounds"] < MOST_ROUNDS
    assert len(long["nodes"]) == 2  # its partition spans both nodes
    for name in ("long", "short"):
        params = torch.load(tmp_path / f"{name}.pt", weights_only=True)
        alone = train(TrainConfig(**SETTINGS, rounds=report[name]["rounds"], backend="local",
                                  output_dir=str(tmp_path / f"local_{name}")))
        assert torch.equal(params, alone.params), name
