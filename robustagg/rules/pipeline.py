from __future__ import annotations

from collections.abc import Sequence

from .base import PreAggregator, Rule


class Pipeline(Rule):
    """Pre-aggregations applied in order, then a rule: ``Pipeline(pre=[NNM(f=2)], rule=Krum(f=2))``.

    ``check(n)`` checks every stage at the number of vectors it receives (Bucketing shrinks it),
    ``selected`` is the rule's selection among the vectors it received, ``f`` is the rule's.
    Per-worker weights (``pipeline(x, weights=w)``) go to a weighted rule through
    pre-aggregations that keep one row per worker (not through bucketing).
    """

    def __init__(self, pre: Sequence[PreAggregator] = (), rule: Rule | None = None):
        if rule is None or not isinstance(rule, Rule) or isinstance(rule, PreAggregator):
            raise TypeError(f"Pipeline: rule must be an aggregation rule, got {rule!r}")
        for p in pre:
            if not isinstance(p, PreAggregator):
                raise TypeError(f"Pipeline: pre must hold pre-aggregations, got {p!r}")
        self.pre = list(pre)
        self.rule = rule
        self.weighted = rule.weighted and all(p.per_worker for p in self.pre)
        super().__init__(rule.f)

    def check(self, n: int) -> None:
        for p in self.pre:
            p.check(n)
            n = p.out_n(n)
        self.rule.check(n)

    @property
    def min_n(self) -> int:
        n = max([self.rule.min_n] + [p.min_n for p in self.pre])
        while True:  # out_n is non-decreasing in n, so the first n that passes is the least
            try:
                self.check(n)
                return n
            except ValueError:
                n += 1

    def aggregate(self, x, weights=None):
        for p in self.pre:
            x = p.aggregate(x)
        out = self.rule.aggregate(x) if weights is None else self.rule.aggregate(x, weights=weights)
        self.selected = self.rule.selected
        return out

    def reset(self):
        super().reset()
        for stage in [*self.pre, self.rule]:
            stage.reset()

    def __repr__(self):
        return f"Pipeline(pre={self.pre!r}, rule={self.rule!r})"
