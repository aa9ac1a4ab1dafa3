"""Watching a Lambda run's memory size: is the worker function over- or under-provisioned?

In the spirit of FaaSRM (a resource manager that watches each function's utilisation and moves
resources from over- to under-provisioned functions), without learning: every ``every`` rounds
:class:`ProvisionWatch` takes each worker's billed duration and ``Max Memory Used`` from the
invocations' REPORT lines, and :func:`robustagg.costmodel.provisioning` judges the size from the
median billed duration and the largest peak (against the calibrated curve of
``python -m experiments.cost --right-size`` when the backend is given its ``sizing``). A verdict
is logged (logger ``robustagg.backends.serverless``, WARNING) when it changes, and kept in the
round's stats.
"""
from __future__ import annotations

import collections
import logging
import statistics

from robustagg.costmodel import SizePoint, provisioning

logger = logging.getLogger("robustagg.backends.serverless")


def curve_points(sizing: dict | None) -> list[SizePoint] | None:
    """The calibrated curve of a ``sizing`` setting (``[[memory_mb, billed_ms, peak_mb, ok],
    ...]``) as SizePoints; ValueError naming a malformed entry."""
    if not sizing or not sizing.get("curve"):
        return None
    out = []
    for e in sizing["curve"]:
        if not (isinstance(e, (list, tuple)) and len(e) == 4):
            raise ValueError(f"sizing.curve entries are [memory_mb, billed_ms, peak_mb, ok], got {e!r}")
        out.append(SizePoint(int(e[0]), float(e[1]), float(e[2]), bool(e[3])))
    return out


_WINDOW = 4096  # billed durations the median is taken over


class ProvisionWatch:
    """Judge ``memory_mb`` every ``every`` rounds from the workers' billed ms and peak MB."""

    def __init__(self, memory_mb: int, threshold: float = 0.25, threads: int = 1,
                 sizing: dict | None = None, every: int = 10):
        if not 0 < threshold < 1:
            raise ValueError(f"watch_threshold must be in (0, 1), got {threshold}")
        self.memory_mb, self.threshold, self.threads, self.every = memory_mb, threshold, threads, every
        self.curve = curve_points(sizing)
        # the latest invocations only: a run's memory stays flat however long it goes
        self.billed: collections.deque[float] = collections.deque(maxlen=_WINDOW)
        self.peak: dict[int, float] = {}
        self.verdict = "ok"
        self.rounds = 0

    def observe(self, per_worker: dict) -> dict | None:
        """Take one round's ``worker -> (billed_ms, max_memory_mb)``; every ``every`` rounds
        (the first round, a cold start, is left out) returns ``{"verdict", "reason",
        "peak_worker"}``, and logs it when the verdict changed."""
        self.rounds += 1
        if self.rounds == 1:
            return None
        for w, (ms, mb) in per_worker.items():
            self.billed.append(ms)
            self.peak[w] = max(self.peak.get(w, 0.0), mb)
        if (self.rounds - 1) % self.every or not self.billed:
            return None
        worker, peak = max(self.peak.items(), key=lambda kv: kv[1])
        billed = statistics.median(self.billed)
        verdict, reason = provisioning(self.memory_mb, peak, billed, self.threshold,
                                       self.threads, self.curve)
        if verdict != self.verdict:
            (logger.warning if verdict != "ok" else logger.info)(
                "lambda worker function at %d MB: %s (median billed %.1f ms, peak %.0f MB on "
                "worker %d): %s", self.memory_mb, f"{verdict}-provisioned" if verdict != "ok"
                else "provisioned within the threshold", billed, peak, worker, reason)
        self.verdict = verdict
        return {"verdict": verdict, "reason": reason, "peak_worker": worker,
                "median_billed_ms": billed, "peak_mb": peak}
