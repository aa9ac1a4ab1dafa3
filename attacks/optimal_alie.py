"""Optimal ALIE: ALIE whose z is searched against the given rule each round (ByzFL's
"Optimal ALittleIsEnough"; Baruch et al., NeurIPS 2019, for the vector).

Every Byzantine worker sends ``mu - z sigma`` (see ``attacks.alie``) with
``z = argmax_{z >= 0} || rule([honest; b(z) x f]) - mu ||`` found by ``line_maximize`` from the
paper's z (``alie_z(n, f)``, n = h + f, or ``n=`` when not omniscient; 0 when the paper's z
is undefined for that n, f). Needs the rule; ``honest``: Tensor[h, d], h >= 2; any f >= 1
the rule accepts.
"""
from __future__ import annotations

from typing import Optional

from attacks.alie import alie_stats, alie_z
from attacks.line_maximize import OptimalScale


class OptimalALIE(OptimalScale):
    """``Tensor[h, d] -> Tensor[f, d]``: ALIE with z maximising the rule's deviation."""

    name = "optimal_alie"
    min_honest = 2

    def __init__(self, *, n: Optional[int] = None, unbiased: bool = False, evals: int = 16,
                 delta: float = 1.0, ratio: float = 0.8, omniscient: bool = True):
        super().__init__(evals=evals, delta=delta, ratio=ratio, omniscient=omniscient)
        self.n, self.unbiased = n, bool(unbiased)

    def start(self, h, f):
        n = self.n if self.n is not None else h + f
        try:
            return alie_z(n, f)
        except ValueError:
            return 0.0

    def prepare(self, honest):
        return alie_stats(honest, self.unbiased)

    def vector(self, stats, x):
        mu, sigma = stats
        return mu - x * sigma
