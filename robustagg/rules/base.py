"""The Rule and PreAggregator interfaces: settings, validation and state around a functional rule."""
from __future__ import annotations

import torch

from .. import inputs
from ..functional._checks import check_bound, check_f, check_matrix
from ..functional._weights import check_share


class Rule:
    """An aggregation rule: ``rule(x) -> Tensor[d]`` for ``x: Tensor[n, d]``, a list of n
    tensors, or a list of n dicts (the output takes the input's form).

    Subclasses set ``bound = (a, b)`` (the rule needs n ≥ a·f + b) and implement
    :meth:`aggregate` on a validated ``Tensor[n, d]``, recording ``self.selected`` where the rule
    selects vectors. A rule with ``weighted = True`` also takes per-worker weights,
    ``rule(x, weights=w)`` (n finite non-negative numbers, e.g. sample counts), passed to
    ``aggregate(x, weights=w)``; the others refuse them.

    Autograd: the result carries x's graph whenever x requires grad (and grad mode is on), in
    every rule: gradients flow to the values the rule selects or averages, as through
    ``torch.median`` or ``torch.sort``; the selection itself is piecewise constant. Weights
    are data: no gradient flows to them.
    """

    bound: tuple[int, int] = (0, 1)
    weighted: bool = False

    def __init__(self, f: int = 0):
        self.f = check_f(f, type(self).__name__)
        self.selected: torch.Tensor | None = None

    @property
    def min_n(self) -> int:
        """The smallest number of vectors the rule accepts with its f."""
        a, b = self.bound
        return a * self.f + b

    def check(self, n: int) -> None:
        """Raise ``ValueError`` if n vectors are too few for this rule and its f."""
        check_bound(type(self).__name__, n, self.f, *self.bound)

    def __call__(self, grads, weights=None):
        x, unflatten = inputs.flatten(grads, type(self).__name__)
        check_matrix(x, type(self).__name__)
        self.check(x.shape[0])
        if weights is None:
            return unflatten(self.aggregate(x))
        if not self.weighted:
            raise TypeError(f"{self!r} does not take per-worker weights")
        return unflatten(self.aggregate(x, weights=weights))

    def aggregate(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[n, d] -> Tensor[d]``."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget what earlier calls left (the selection; state of stateful rules)."""
        self.selected = None

    def _settings(self) -> dict:
        return {"f": self.f}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({args})"


class PreAggregator(Rule):
    """A pre-aggregation: ``pre(x: Tensor[n, d]) -> Tensor[out_n(n), d]``, composed in front of a
    rule by :class:`robustagg.Pipeline`. ``per_worker``: row i of the output stands for worker i
    (so per-worker weights still apply after it)."""

    per_worker: bool = True

    def out_n(self, n: int) -> int:
        """How many vectors come out of n vectors."""
        return n

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check_matrix(x, type(self).__name__)
        self.check(x.shape[0])
        return self.aggregate(x)


class Weighted:
    """Mixin of the rules that take per-worker weights: the ``max_weight_share`` setting (each
    worker's share of the total weight capped there; None: no cap), checked when the rule is
    built and shown in its repr when set."""

    weighted = True
    max_weight_share: float | None = None

    def _set_share(self, max_weight_share) -> None:
        self.max_weight_share = check_share(max_weight_share, type(self).__name__)

    def _settings(self) -> dict:
        settings = super()._settings()
        if self.max_weight_share is not None:
            settings["max_weight_share"] = self.max_weight_share
        return settings
