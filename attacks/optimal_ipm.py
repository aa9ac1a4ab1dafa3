"""Optimal IPM: inner-product manipulation whose epsilon is searched against the given rule
each round (ByzFL's "Optimal InnerProductManipulation"; Xie et al., UAI 2019, for the vector).

Every Byzantine worker sends ``-epsilon * mu`` with
``epsilon = argmax_{epsilon >= 0} || rule([honest; b(epsilon) x f]) - mu ||`` found by
``line_maximize`` from ``epsilon0`` (0.1, the fixed attack's default). Needs the rule;
``honest``: Tensor[h, d], h >= 1; any f >= 1 the rule accepts.
"""
from __future__ import annotations

import torch

from attacks.ipm import check_epsilon
from attacks.line_maximize import OptimalScale


class OptimalIPM(OptimalScale):
    """``Tensor[h, d] -> Tensor[f, d]``: IPM with epsilon maximising the rule's deviation."""

    name = "optimal_ipm"

    def __init__(self, epsilon0: float = 0.1, *, evals: int = 16, delta: float = 1.0,
                 ratio: float = 0.8, omniscient: bool = True):
        super().__init__(evals=evals, delta=delta, ratio=ratio, omniscient=omniscient)
        self.epsilon0 = check_epsilon(epsilon0, self.name)

    def start(self, h, f):
        return self.epsilon0

    def prepare(self, honest):
        return honest.to(torch.float64).mean(dim=0)

    def vector(self, mu, x):
        return -x * mu
