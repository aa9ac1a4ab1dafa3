"""Inner-product manipulation, IPM (Xie, Koyejo and Gupta, "Fall of Empires: Breaking
Byzantine-tolerant SGD by Inner Product Manipulation", UAI 2019 / PMLR 115, 2020).

Every Byzantine worker sends ``-epsilon * mu``, ``mu = (1/h) sum_i g_i`` the mean of the honest
gradients (``honest``: Tensor[h, d]), so that the aggregate's inner product with the true
gradient turns negative. The paper's two regimes: a small epsilon (0.1) slips past the
coordinate-wise median and Krum (the Byzantine vectors sit near the honest cloud), a large
one (e.g. 100) drives the mean the wrong way. Any n and f >= 1.
"""
from __future__ import annotations

from attacks.base import ModelAttack, repeat_rows


def check_epsilon(epsilon, who: str) -> float:
    if not epsilon >= 0:
        raise ValueError(f"{who} needs epsilon >= 0, got epsilon={epsilon!r}")
    return float(epsilon)


class IPM(ModelAttack):
    """``Tensor[h, d] -> Tensor[f, d]``, every row ``-epsilon * mean(honest)`` (Xie et al. 2019)."""

    name = "ipm"

    def __init__(self, epsilon: float = 0.1, *, omniscient: bool = True):
        super().__init__(omniscient=omniscient)
        self.epsilon = check_epsilon(epsilon, self.name)

    def _forge(self, honest, f, rule):
        return repeat_rows(ipm_vector(honest, self.epsilon), f)

    def __repr__(self) -> str:
        return f"IPM(epsilon={self.epsilon}, omniscient={self.omniscient})"


def ipm_vector(honest, epsilon: float):
    """``-epsilon * mean(honest)``: ``Tensor[h, d] -> Tensor[d]``."""
    return -epsilon * honest.mean(dim=0)
