"""Crash fault: the worker answers normally before round ``round`` and never from it on
(a crashed or silent machine). ``fails(t) = t >= round``; the training loop treats a failing
worker as an omission (absent from the round), which the rule's bound on n must absorb.
"""
from __future__ import annotations

from attacks.base import Fault, check_round


class Crash(Fault):
    """``fails(t) -> t >= round``; ``delay_s(t) -> 0``."""

    name = "crash"

    def __init__(self, round: int = 0):  # noqa: A002 - the round it stops answering
        self.round = check_round(round, "round", self.name)

    def fails(self, round: int) -> bool:  # noqa: A002
        return round >= self.round

    def __repr__(self) -> str:
        return f"Crash(round={self.round})"
