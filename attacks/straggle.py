"""Straggler fault: from round ``start`` on, the worker answers ``delay`` seconds late
(``delay_s(t) = delay if t >= start else 0``). The training loop sleeps that long before the
worker hands its gradient back, so a deadline-based server sees it late or not at all.
"""
from __future__ import annotations

import math

from attacks.base import Fault, check_round


class Straggle(Fault):
    """``delay_s(t) -> delay if t >= start else 0.0``; ``fails(t) -> False``."""

    name = "straggle"

    def __init__(self, delay: float = 1.0, start: int = 0):
        if not (delay >= 0 and math.isfinite(delay)):
            raise ValueError(f"straggle needs a finite delay >= 0 seconds, got delay={delay!r}")
        self.delay = float(delay)
        self.start = check_round(start, "start", self.name)

    def delay_s(self, round: int) -> float:  # noqa: A002
        return self.delay if round >= self.start else 0.0

    def __repr__(self) -> str:
        return f"Straggle(delay={self.delay}, start={self.start})"
