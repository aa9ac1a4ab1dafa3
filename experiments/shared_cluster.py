"""Three sweeps sharing one Ray cluster: utilisation, and each sweep's slowdown against running
alone.

``python -m experiments.shared_cluster`` starts a loopback cluster (``--nodes`` nodes of
``--cpus`` logical CPUs on 127.0.0.1), a share arbiter (:mod:`robustagg.backends.ray_shares`)
of one actor slot per CPU, and three sweeps of the default experiment (digits, MLP, Krum,
Gaussian attack, n = 10, f = 2; 300 rounds a cell rather than 100, so that training outweighs
the actors' start-up), each in its own process: A sweeps the rule (2 cells), B the
attack (3 cells), C the seed (4 cells). Every cell trains on the ``ray_partition`` backend and
follows its sweep's fair share: equal shares while the three run, the finished sweeps' shares
going to those still running at their next round. Each sweep first runs alone on the cluster,
then the three run at once.

Measured, every 0.5 s during the concurrent phase: the actor slots each sweep holds (from the
arbiter), and the CPU time used by the cluster's processes and the sweeps' processes (which
run the parameter servers), as a share of the machine's cores. Written: ``result.json`` and
the per-sweep run folders under ``--out``, the plot ``--plot``, and a table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SWEEPS = {  # name -> the cells, as overrides of the default experiment
    "A": [{"rule": "krum"}, {"rule": "median"}],
    "B": [{"attack": "gaussian"}, {"attack": "sign_flip"}, {"attack": "alie"}],
    "C": [{"seed": s} for s in range(4)],
}
DEFAULT_EXPERIMENT = dict(dataset="digits", model="mlp", rule="krum", attack="gaussian",
                          workers=10, byzantine=2, momentum=0.0, progress=False)
ARBITER = "shared_cluster"


def run_sweep(name: str, address: str, rounds: int, out: str) -> dict:
    """Run sweep ``name``'s cells one after another in this process (connected to
    ``address``), holding its share of the arbiter for the whole sweep; returns its timings."""
    from robustagg.backends.ray_cluster import connect

    connect(address)  # first: it imports ray with the settings that keep it on 127.0.0.1
    import ray

    from robustagg.backends.ray_partition import release
    from robustagg.backends.ray_shares import find_arbiter
    from robustagg.run.config import TrainConfig
    from robustagg.training import train

    arbiter = find_arbiter(ARBITER)
    ray.get(arbiter.join.remote(name, DEFAULT_EXPERIMENT["workers"]))
    t0, cells = time.time(), []
    try:
        for k, over in enumerate(SWEEPS[name]):
            cfg = TrainConfig(**{**DEFAULT_EXPERIMENT, **over}, rounds=rounds,
                              eval_every=rounds, backend="ray_partition",
                              output_dir=os.path.join(out, f"cell{k}"),
                              backend_kwargs={"arbiter": ARBITER, "run": name, "keep": True})
            c0 = time.time()
            res = train(cfg)
            cells.append({"overrides": over, "wall_s": time.time() - c0,
                          "startup_s": res.summary["startup_s"],
                          "final_test_acc": res.final_accuracy})
    finally:
        release(name)
        ray.get(arbiter.leave.remote(name))
        ray.shutdown()
    return {"sweep": name, "start": t0, "end": time.time(), "wall_s": time.time() - t0,
            "cells": cells}


class CpuMeter:
    """CPU seconds used so far by a changing set of processes (those that ended keep their
    last reading)."""

    def __init__(self):
        self.procs, self.last = {}, {}

    def total(self, pids) -> float:
        import psutil

        for pid in pids:
            if pid not in self.procs:
                try:
                    self.procs[pid] = psutil.Process(pid)
                except psutil.Error:
                    continue
        for pid, p in list(self.procs.items()):
            try:
                t = p.cpu_times()
                self.last[pid] = t.user + t.system
            except psutil.Error:
                del self.procs[pid]
        return sum(self.last.values())


def _spawn(names, address, rounds, out):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return {n: subprocess.Popen([sys.executable, "-m", "experiments.shared_cluster", "--sweep", n,
                                 "--address", address, "--rounds", str(rounds),
                                 "--out", os.path.join(out, n)],
                                stdout=subprocess.PIPE, text=True, env=env) for n in names}


def _phase(names, address, temp, rounds, out, arbiter):
    """Run the sweeps ``names`` at once; returns their results and the samples."""
    import psutil

    from robustagg.backends.ray_cluster import processes_of

    procs, meter, samples = _spawn(names, address, rounds, out), CpuMeter(), []
    cores = psutil.cpu_count()
    last_t, last_cpu = time.time(), meter.total(processes_of(temp, [p.pid for p in
                                                                    procs.values()]))
    psutil.cpu_percent()
    while any(p.poll() is None for p in procs.values()):
        time.sleep(0.5)
        now = time.time()
        cpu = meter.total(processes_of(temp, [p.pid for p in procs.values()]))
        samples.append({"t": now, "busy": (cpu - last_cpu) / (now - last_t) / cores,
                        "machine": psutil.cpu_percent() / 100})
        last_t, last_cpu = now, cpu
    results = {}
    for n, p in procs.items():
        line = p.stdout.read().strip().splitlines()
        if p.returncode != 0 or not line:
            raise RuntimeError(f"sweep {n} failed (exit code {p.returncode})")
        results[n] = json.loads(line[-1])
    import ray

    return results, samples, ray.get(arbiter.timeline.remote())


def _held(timeline, names, t):
    """Actors each sweep held at time ``t`` (its last report before then)."""
    held = {n: 0 for n in names}
    for when, run, _, h in timeline:
        if when <= t and run in held and h is not None:
            held[run] = h
    return held


def summarize(alone, together, samples, timeline, capacity):
    t0 = min(r["start"] for r in together.values())
    t1 = max(r["end"] for r in together.values())
    names = sorted(together)
    slow = {n: together[n]["wall_s"] / alone[n]["wall_s"] for n in names}
    inv = [1 / s for s in slow.values()]
    jain = sum(inv) ** 2 / (len(inv) * sum(v * v for v in inv))
    window = [s for s in samples if t0 <= s["t"] <= t1]
    held = [sum(_held(timeline, names, s["t"]).values()) / capacity for s in window]
    return {
        "capacity_slots": capacity, "cores": os.cpu_count(),
        "alone_wall_s": {n: alone[n]["wall_s"] for n in names},
        "together_wall_s": {n: together[n]["wall_s"] for n in names},
        "slowdown": slow, "jain_fairness": jain,
        "makespan_s": t1 - t0, "sum_alone_s": sum(alone[n]["wall_s"] for n in names),
        "mean_slots_held": sum(held) / max(len(held), 1),
        "mean_busy_cores_share": sum(s["busy"] for s in window) / max(len(window), 1),
        "mean_machine_cpu": sum(s["machine"] for s in window) / max(len(window), 1),
    }


def plot(path, samples, timeline, together, capacity):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(together)
    t0 = min(r["start"] for r in together.values())
    ts = [s["t"] for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    stacks = [[_held(timeline, names, t)[n] for t in ts] for n in names]
    top.stackplot([t - t0 for t in ts], stacks, labels=[f"sweep {n}" for n in names],
                  step="post", alpha=0.8)
    top.axhline(capacity, color="k", lw=0.8, ls="--", label="cluster slots")
    for n in names:
        top.axvline(together[n]["end"] - t0, color="grey", lw=0.6, ls=":")
    top.set_ylabel("worker actors held")
    top.legend(loc="upper right", fontsize=8)
    top.set_title("Three sweeps sharing a 2-node loopback Ray cluster")
    bottom.plot([t - t0 for t in ts], [100 * s["busy"] for s in samples],
                label="cluster + sweep processes")
    bottom.plot([t - t0 for t in ts], [100 * s["machine"] for s in samples], lw=0.8,
                label="whole machine (other jobs too)")
    bottom.set_ylabel("CPU busy (% of cores)")
    bottom.set_xlabel("seconds since the sweeps started (dotted: a sweep ends)")
    bottom.set_ylim(0, 105)
    bottom.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=3, help="logical CPUs (actor slots) per node")
    ap.add_argument("--rounds", type=int, default=300, help="rounds of every cell")
    ap.add_argument("--out", default="outputs/shared_cluster")
    ap.add_argument("--plot", default="docs/img/shared_cluster.png")
    ap.add_argument("--sweep", help=argparse.SUPPRESS)  # one sweep, in a process of its own
    ap.add_argument("--address", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.sweep:
        print(json.dumps(run_sweep(a.sweep, a.address, a.rounds, a.out)))
        return
    from robustagg.backends.ray_cluster import connect
    from robustagg.backends.ray_loopback import loopback_cluster

    capacity = a.nodes * a.cpus
    with loopback_cluster(a.nodes, a.cpus) as (address, temp):
        connect(address)  # before importing ray: it imports ray to stay on 127.0.0.1
        import ray

        from robustagg.backends.ray_shares import start_arbiter

        try:
            arbiter = start_arbiter(ARBITER, capacity)
            alone = {}
            for n in SWEEPS:
                print(f"sweep {n} alone ...", flush=True)
                alone.update(_phase([n], address, temp, a.rounds, os.path.join(a.out, "alone"),
                                    arbiter)[0])
            print("sweeps A, B, C at once ...", flush=True)
            together, samples, timeline = _phase(list(SWEEPS), address, temp, a.rounds,
                                                 os.path.join(a.out, "together"), arbiter)
        finally:
            ray.shutdown()
    summary = summarize(alone, together, samples, timeline, capacity)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "result.json"), "w") as fh:
        json.dump({"summary": summary, "alone": alone, "together": together,
                   "samples": samples, "timeline": timeline, "nodes": a.nodes, "cpus": a.cpus,
                   "rounds": a.rounds, "load_average": os.getloadavg()}, fh, indent=1)
    plot(a.plot, samples, timeline, together, capacity)
    print(f"{'sweep':6}{'cells':>6}{'alone s':>9}{'shared s':>10}{'slowdown':>10}")
    for n in sorted(together):
        print(f"{n:6}{len(SWEEPS[n]):>6}{summary['alone_wall_s'][n]:>9.1f}"
              f"{summary['together_wall_s'][n]:>10.1f}{summary['slowdown'][n]:>10.2f}")
    print(f"makespan {summary['makespan_s']:.1f} s against {summary['sum_alone_s']:.1f} s one "
          f"after another; Jain's fairness over the speeds {summary['jain_fairness']:.3f}; "
          f"slots held {100 * summary['mean_slots_held']:.0f}% of {capacity}; CPU busy "
          f"{100 * summary['mean_busy_cores_share']:.0f}% of {summary['cores']} cores "
          f"(whole machine {100 * summary['mean_machine_cpu']:.0f}%)")


if __name__ == "__main__":
    main()
