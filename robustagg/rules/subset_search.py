"""Rules that search every subset of n - f vectors (MDA, SMEA): the limit on the search."""
from __future__ import annotations

from ..functional._subsets import MAX_SUBSETS, check_subsets
from .base import Rule


class SubsetSearchRule(Rule):
    """A :class:`Rule` (n ≥ 2f + 1) whose functional form ``search(x, f, max_subsets=...,
    return_selected=True)`` searches all C(n, f) subsets; ``max_subsets`` caps them, checked
    when the rule is built (at its smallest n) and by :meth:`check`; ``selected`` holds the
    n - f averaged indices."""

    bound = (2, 1)

    def __init__(self, f: int = 0, max_subsets: int = MAX_SUBSETS):
        super().__init__(f)
        check_subsets(type(self).__name__, 2 * self.f + 1, self.f, max_subsets)
        self.max_subsets = max_subsets

    @staticmethod
    def search(x, f, max_subsets, return_selected):
        raise NotImplementedError

    def check(self, n):
        super().check(n)
        check_subsets(type(self).__name__, n, self.f, self.max_subsets)

    def aggregate(self, x):
        out, self.selected = self.search(x, self.f, max_subsets=self.max_subsets,
                                         return_selected=True)
        return out

    def _settings(self):
        return {"f": self.f, "max_subsets": self.max_subsets}
