from __future__ import annotations

import torch

from .. import functional as F
from .base import Rule
from .registry import register_rule


@register_rule("monna")
class MoNNA(Rule):
    """MoNNA (n ≥ 2f + 1): the mean of the n - f vectors nearest the trusted one; ``selected``
    holds them, nearest first. ``pivot``: the trusted row's index (an int setting, default 0),
    or a trusted ``Tensor[d]`` set on the module (``rule.pivot = my_grad``) before each call.
    See :func:`robustagg.functional.monna`."""

    bound = (2, 1)

    def __init__(self, f: int = 0, pivot: int = 0):
        super().__init__(f)
        if not isinstance(pivot, torch.Tensor) and (
                isinstance(pivot, bool) or not isinstance(pivot, int) or pivot < 0):
            raise ValueError(f"MoNNA: pivot must be a row index >= 0 or a Tensor, got {pivot!r}")
        self.pivot = pivot

    def check(self, n):
        super().check(n)
        if isinstance(self.pivot, int) and self.pivot >= n:
            raise ValueError(f"MoNNA: pivot must be a row index below n, got pivot={self.pivot}, "
                             f"n={n}")

    def aggregate(self, x):
        out, self.selected = F.monna(x, self.f, self.pivot, return_selected=True)
        return out

    def _settings(self):
        pivot = self.pivot if isinstance(self.pivot, int) else "Tensor"
        return {"f": self.f, "pivot": pivot}
