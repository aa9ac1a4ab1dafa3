"""Helpers for the fault tests of real Ray runs: the worker actor processes of a run, how far
the run has got, and the run replayed in-process from its recorded omissions."""
import dataclasses
import os
import time

import psutil

from robustagg.backends.local_backend import LocalBackend
from robustagg.training.server import ParameterServer


def actor_pids(cls: str, exclude=()) -> list[int]:
    """PIDs of this process's Ray actor processes of class ``cls`` (Ray titles them
    ``ray::<cls>``), less ``exclude``. Only this process's descendants, the processes of the
    local Ray it started: other runs' actors on the machine are never touched."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = p.cmdline()
        except psutil.Error:  # ended meanwhile
            continue
        if cmd and cmd[0].startswith(f"ray::{cls}") and p.pid not in exclude:
            out.append(p.pid)
    return sorted(out)


def worker_pids(exclude=()) -> list[int]:
    """PIDs of this process's worker actor processes (:func:`actor_pids` of ``_RayWorker``)."""
    return actor_pids("_RayWorker", exclude)


def rounds_done(out_dir) -> int:
    """Rounds recorded so far in ``<out_dir>/metrics.jsonl``."""
    try:
        with open(os.path.join(out_dir, "metrics.jsonl")) as fh:
            return sum(1 for line in fh if line.strip())
    except FileNotFoundError:
        return 0


class ReplayBackend(LocalBackend):
    """In-process workers, each round omitting the workers a recorded run omitted then."""

    def __init__(self, history):
        super().__init__()
        self.omitted = {r["round"]: {int(i) for i in r["omitted"]} for r in history}

    def compute(self, round, params, worker_ids, timeout_s, **kw):
        gone = self.omitted[round]
        out = super().compute(round, params, [i for i in worker_ids if i not in gone],
                              timeout_s, **kw)
        out.errors.update({i: "omitted in the recorded run" for i in gone})
        return out


def replay(cfg, history):
    """The final parameters of ``cfg`` run in-process with the omissions of ``history``."""
    server = ParameterServer(dataclasses.replace(cfg, backend="local"),
                             backend=ReplayBackend(history))
    try:
        for _ in history:
            server.step()
        return server.params()
    finally:
        server.close()


def train_under(chaos, cfg):
    """``train(cfg)`` while the fault thread ``chaos`` (a started-here Thread with a ``done``
    Event) runs beside it; returns ``(result, wall seconds)``, the thread stopped either way."""
    from robustagg.training import train

    chaos.start()
    t0 = time.perf_counter()
    try:
        res = train(cfg)
    finally:
        chaos.done.set()
        chaos.join()
    return res, time.perf_counter() - t0
