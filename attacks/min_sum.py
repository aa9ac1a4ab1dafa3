"""Min-Sum attack (Shejwalkar and Houmansadr, NDSS 2021, the AGR-agnostic Min-Sum attack).

Every Byzantine worker sends ``b = mu - gamma * p`` (p: see ``attacks.ndss21``) with

    gamma = argmax_gamma  sum_i ||b - g_i||^2  <=  min_i sum_j ||g_i - g_j||^2,

i, j over the honest gradients (``honest``: Tensor[h, d], h >= 2): the sum of squared distances
from the Byzantine gradient to the honest ones stays within the smallest such sum of an honest
gradient. The threshold is the minimum, as in the authors' released code (``torch.min(scores)``).
gamma by bisection to relative tolerance ``tol``. Any n, f >= 1 (the rule is not used).
"""
from __future__ import annotations

from attacks.ndss21 import AgnosticAttack, pairwise_sq


class MinSum(AgnosticAttack):
    """Min-Sum: ``sum_i ||b - g_i||^2 <= min_i sum_j ||g_i - g_j||^2``; see ``AgnosticAttack``."""

    name = "min_sum"

    @staticmethod
    def threshold(x):
        return pairwise_sq(x).sum(dim=1).min()

    @staticmethod
    def score(sq_dists):
        return sq_dists.sum()
