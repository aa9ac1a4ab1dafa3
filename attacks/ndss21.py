"""Shared core of the AGR-agnostic attacks of Shejwalkar and Houmansadr, "Manipulating the
Byzantine: Optimizing Model Poisoning Attacks and Defenses for Federated Learning", NDSS 2021
(their AGR-agnostic attacks): the perturbation vectors and the binary search on gamma.

The Byzantine gradient is ``b = mu - gamma * p`` (mu: the mean of the honest gradients) with

    p = mu / ||mu||       "unit_vec"  (inverse unit vector; the reference code's default)
    p = sign(mu)          "sign"      (inverse sign)
    p = std(honest)       "std"       (inverse standard deviation, sample std as in the code)

and gamma the largest value for which a distance constraint holds (Min-Max, Min-Sum). Both
constraints hold at gamma = 0 and are convex in gamma, so the feasible gammas form an interval
[0, gamma*] and bisection finds gamma* to any tolerance.
"""
from __future__ import annotations

from typing import Callable

import torch

from attacks.base import ModelAttack, repeat_rows

DIRECTIONS = ("unit_vec", "sign", "std")


def check_direction(direction: str, who: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"{who} needs direction in {DIRECTIONS}, got direction={direction!r}")
    return direction


def perturbation(x: torch.Tensor, direction: str) -> torch.Tensor:
    """The vector p for ``x``: Tensor[h, d] (float64) -> Tensor[d]; zero when mu (or the spread) is."""
    mu = x.mean(dim=0)
    if direction == "unit_vec":
        norm = mu.norm()
        return mu / norm if norm > 0 else torch.zeros_like(mu)
    if direction == "sign":
        return torch.sign(mu)
    return x.std(dim=0)


def largest_gamma(feasible: Callable[[float], bool], gamma_init: float = 10.0,
                  tol: float = 1e-6, max_steps: int = 200) -> float:
    """The largest gamma >= 0 with ``feasible(gamma)``, given ``feasible(0)`` and an interval.

    Starts at the paper's gamma_init = 10, doubles it until infeasible (the reference code
    instead caps gamma below 2 * gamma_init), then bisects until ``hi - lo <= tol * hi``. The
    result is feasible and ``result * (1 + tol)`` is not (up to ``max_steps`` halvings).
    """
    lo, hi = 0.0, float(gamma_init)
    for _ in range(max_steps):
        if not feasible(hi):
            break
        lo, hi = hi, 2.0 * hi
    else:
        return lo
    for _ in range(max_steps):
        if hi - lo <= tol * hi:
            break
        mid = 0.5 * (lo + hi)
        if feasible(mid):
            lo = mid
        else:
            hi = mid
    return lo


def pairwise_sq(x: torch.Tensor) -> torch.Tensor:
    """``||x_i - x_j||^2``: Tensor[h, d] -> Tensor[h, h] (float64 in, float64 out)."""
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").pow(2)


class AgnosticAttack(ModelAttack):
    """``Tensor[h, d] -> Tensor[f, d]``, every row ``b = mu - gamma p``, gamma the largest value
    with ``score(||b - g_i||^2 for all i) <= threshold(x)`` (subclasses: ``MinMax``, ``MinSum``).

    The squared distances are expanded once, ``||mu - g_i - gamma p||^2 = a_i - 2 gamma c_i +
    gamma^2 ||p||^2`` (a_i = ||mu - g_i||^2, c_i = <mu - g_i, p>), so each bisection step costs
    O(h) instead of O(h d).

    Args:
        direction: "unit_vec" (default, the reference code's), "sign" or "std".
        gamma_init: first gamma tried (10 in the paper's code); tol: relative tolerance.
    After a call, ``gamma`` holds the value used.
    """

    min_honest = 2

    def __init__(self, direction: str = "unit_vec", *, gamma_init: float = 10.0,
                 tol: float = 1e-6, omniscient: bool = True):
        super().__init__(omniscient=omniscient)
        self.direction = check_direction(direction, self.name)
        if not (gamma_init > 0 and 0 < tol < 1):
            raise ValueError(f"{self.name} needs gamma_init > 0 and 0 < tol < 1, "
                             f"got gamma_init={gamma_init!r}, tol={tol!r}")
        self.gamma_init, self.tol = float(gamma_init), float(tol)
        self.gamma = None

    @staticmethod
    def threshold(x: torch.Tensor) -> torch.Tensor:
        """The bound from the honest rows ``x``: Tensor[h, d] (float64) -> scalar."""
        raise NotImplementedError

    @staticmethod
    def score(sq_dists: torch.Tensor) -> torch.Tensor:
        """The constrained quantity from ``||b - g_i||^2``: Tensor[h] -> scalar."""
        raise NotImplementedError

    def _forge(self, honest, f, rule):
        x = honest.to(torch.float64)
        mu, p = x.mean(dim=0), perturbation(x, self.direction)
        dev = mu - x
        a, c, pp = dev.pow(2).sum(dim=1), dev @ p, p @ p
        bound = self.threshold(x)
        self.gamma = largest_gamma(
            lambda g: bool(self.score(a - 2 * g * c + g * g * pp) <= bound),
            self.gamma_init, self.tol)
        return repeat_rows(mu - self.gamma * p, f)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(direction={self.direction!r}, omniscient={self.omniscient})"
