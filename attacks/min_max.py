"""Min-Max attack (Shejwalkar and Houmansadr, NDSS 2021, the AGR-agnostic Min-Max attack).

Every Byzantine worker sends ``b = mu - gamma * p`` (p: see ``attacks.ndss21``) with

    gamma = argmax_gamma  max_i ||b - g_i||  <=  max_{i,j} ||g_i - g_j||,

i, j over the honest gradients (``honest``: Tensor[h, d], h >= 2): the Byzantine gradient is no
further from any honest gradient than the two most distant honest gradients are from each
other. gamma by bisection (``largest_gamma``) to relative tolerance ``tol``. Any n, f >= 1
(AGR-agnostic: the rule is not used).
"""
from __future__ import annotations

from attacks.ndss21 import AgnosticAttack, pairwise_sq


class MinMax(AgnosticAttack):
    """Min-Max: ``max_i ||b - g_i||^2 <= max_{i,j} ||g_i - g_j||^2``; see ``AgnosticAttack``."""

    name = "min_max"

    @staticmethod
    def threshold(x):
        return pairwise_sq(x).max()

    @staticmethod
    def score(sq_dists):
        return sq_dists.max()
