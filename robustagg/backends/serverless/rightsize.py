"""Calibrating the worker function at several memory sizes on the local Lambda runtime.

:func:`calibrate` runs, for each size, the run's workers as invocations of the worker function
(:class:`~.backend.LambdaBackend` with ``local=True``, one environment, so invocations run one
after another) for a few rounds with fixed parameters, the environment's CPU limited to
Lambda's share for that size (:class:`~.cpu_share.CpuShare`: ``vcpus = min(6, mem / 1769)``).
Each size gives a :class:`robustagg.costmodel.SizePoint`: the median billed milliseconds per
invocation after the first round (which loads the shard and builds the model in a cold
environment), the largest ``Max Memory Used`` of the REPORT lines, and whether every invocation
succeeded (an out-of-memory kill or an error makes the size infeasible); plus the CPU share the
environment actually got while it worked (its CPU time over the billed time), since on a shared
machine the limit is an upper bound. :func:`robustagg.costmodel.right_size` picks from them.
"""
from __future__ import annotations

import statistics

import psutil
import torch

from robustagg.costmodel import SizePoint, lambda_vcpus
from robustagg.run.config import TrainConfig, WorkerSpec
from robustagg.run.data import load_dataset
from robustagg.run.models import build_model

from .backend import LambdaBackend
from .cpu_share import CpuShare

RUNTIME = "awslambdaric"


def _env_cpu_s(pids) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def calibrate_size(cfg: TrainConfig, memory_mb: int, rounds: int = 6, cpu_mode: str = "auto",
                   timeout_s: float = 60.0) -> tuple[SizePoint, dict]:
    """One size: ``(SizePoint, details)``; details hold the CPU-share mode, the share asked and
    the share measured, the per-round billed medians and the errors seen."""
    data = load_dataset(cfg.dataset, **cfg.dataset_kwargs)
    specs = [WorkerSpec.of(cfg, w) for w in range(cfg.workers)]
    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed, **cfg.model_kwargs)
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).float()
    ids = list(range(cfg.workers))
    share = lambda_vcpus(memory_mb)
    backend = LambdaBackend(local=True, memory_mb=memory_mb, concurrency=1, timeout_s=timeout_s,
                            prewarm=True)
    billed, peak, errors, cpu, busy = [], 0.0, [], 0.0, 0.0
    with CpuShare(share, mode=cpu_mode).watch(RUNTIME) as limit:
        try:
            backend.start(specs, data)
            for r in range(rounds):
                c0 = _env_cpu_s(limit.pids)
                out = backend.compute(r, params, ids, timeout_s)
                st = backend.round_stats[-1]
                errors += [f"round {r} worker {w}: {e}"[:200] for w, e in out.errors.items()]
                peak = max(peak, st["max_memory_mb"])
                answered = len(ids) - st["omitted"]
                if not answered:  # e.g. out of memory: every later round would fail alike
                    break
                if r > 0 and answered:  # round 0: cold shard and model in the environment
                    billed.append(st["billed_ms"] / answered)
                    cpu += _env_cpu_s(limit.pids) - c0
                    busy += st["billed_ms"] / 1000.0
        finally:
            backend.close()
        mode = limit.mode
    ok = not errors and bool(billed)
    point = SizePoint(memory_mb, statistics.median(billed) if billed else float("nan"), peak, ok)
    return point, {"cpu_mode": mode, "cpu_share": min(share, 1.0),
                   "cpu_share_measured": cpu / busy if busy else None,
                   "billed_ms_rounds": billed, "errors": errors[:5]}


def calibrate(cfg: TrainConfig, sizes, rounds: int = 6, cpu_mode: str = "auto",
              log=print) -> list[tuple[SizePoint, dict]]:
    """:func:`calibrate_size` at each of ``sizes`` (MB), smallest first."""
    out = []
    for m in sorted(sizes):
        point, details = calibrate_size(cfg, m, rounds, cpu_mode)
        out.append((point, details))
        if log:
            log(f"  {m:>6} MB: billed {point.billed_ms:8.1f} ms/invocation, peak {point.peak_mb:6.0f} MB, "
                f"CPU share {details['cpu_share']:.3f} asked, "
                f"{details['cpu_share_measured'] or 0:.3f} measured ({details['cpu_mode']})"
                + ("" if point.ok else f"; FAILED: {details['errors'][:1]}"))
    return out
