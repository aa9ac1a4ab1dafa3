"""A Little Is Enough, ALIE (Baruch, Baruch and Goldberg, "A Little Is Enough: Circumventing
Defenses For Distributed Learning", NeurIPS 2019, the attack's algorithm).

With n workers of which f are Byzantine, the attacker needs s "supporters" among the honest
workers for a majority, and picks the largest z such that, for normally distributed honest
coordinates, s honest values are expected to lie further from the mean than the Byzantine one:

    s = floor(n/2 + 1) - f,        z = Phi^-1((n - f - s) / (n - f)),
    b_j = mu_j - z * sigma_j       for every coordinate j = 1..d,

mu and sigma the coordinate-wise mean and standard deviation of the honest gradients
(``honest``: Tensor[h, d], h >= 2). All f Byzantine workers send b. Bounds: n >= 3 and
1 <= s, i.e. f <= floor(n/2) (otherwise the quantile is not in (0, 1)). In the paper's
non-omniscient setting mu and sigma come from the Byzantine workers' own honest gradients:
pass those as ``honest`` with ``omniscient=False`` and give ``n`` (it can't be h + f then).

Variants found in the wild (all reachable through the arguments):

- quantile ``(n - f - s)/(n - f)`` (this default; Karimireddy et al.'s and Blades' code) versus
  ``(n - s)/n`` (how the paper's text is often quoted): pass ``z=`` to use another value;
- sign: ``mu - z sigma`` (default; the authors' released code, ``DriftAttack``, and
  Karimireddy et al.) versus ``mu + z sigma`` (ByzFL's ``ALittleIsEnough``): ``sign=+1``;
- a fixed z instead of the formula (the authors' code defaults to ``num_std = 1.5``; ByzFL to
  tau = 1.5): ``z=1.5``;
- sigma as the population std (ddof = 0; the authors' code, ``np.var(...) ** 0.5``, default
  here) versus the sample std (ddof = 1; ``torch.std`` in Karimireddy et al.): ``unbiased=True``.

Note the paper's z is small and can be zero or negative for small n (n = 10, f = 2 gives
s = 4 and z = Phi^-1(0.5) = 0): the attack is meant to stay inside the honest spread.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Optional

import torch

from attacks.base import ModelAttack, check_f, repeat_rows


def alie_z(n: int, f: int) -> float:
    """The paper's ``z = Phi^-1((n - f - s)/(n - f))`` with ``s = floor(n/2 + 1) - f``."""
    check_f(f, "alie")
    if isinstance(n, bool) or not isinstance(n, int) or n < 3 or f >= n:
        raise ValueError(f"alie needs n >= 3 workers and f < n, got n={n!r}, f={f}")
    s = math.floor(n / 2 + 1) - f
    if s < 1:
        raise ValueError(f"alie needs s = floor(n/2 + 1) - f >= 1 supporters, i.e. f <= n // 2, "
                         f"got n={n}, f={f} (s={s})")
    return NormalDist().inv_cdf((n - f - s) / (n - f))


def alie_stats(honest: torch.Tensor, unbiased: bool = False):
    """``(mu, sigma)``: coordinate-wise mean and std of ``Tensor[h, d]``, two float64 ``[d]``."""
    x = honest.to(torch.float64)
    return x.mean(dim=0), x.std(dim=0, unbiased=unbiased)


def check_sign(sign, who: str) -> int:
    if sign not in (-1, 1):
        raise ValueError(f"{who} needs sign -1 or +1, got sign={sign!r}")
    return int(sign)


class ALIE(ModelAttack):
    """``Tensor[h, d] -> Tensor[f, d]``, every row ``mu - z sigma`` (Baruch et al. 2019).

    Args:
        z: the number of standard deviations; None (default) computes the paper's
            ``alie_z(n, f)`` for each call's n and f.
        sign: -1 (default, ``mu - z sigma``) or +1 (``mu + z sigma``).
        n: the total number of workers for the paper's z; None means ``h + f`` (omniscient
            callers). Needed when ``omniscient=False`` and ``z`` is None.
        unbiased: sample std (ddof = 1) instead of the population std (ddof = 0, default).
    """

    name = "alie"
    min_honest = 2

    def __init__(self, z: Optional[float] = None, sign: int = -1, *, n: Optional[int] = None,
                 unbiased: bool = False, omniscient: bool = True):
        super().__init__(omniscient=omniscient)
        if z is not None and not math.isfinite(z):
            raise ValueError(f"alie needs a finite z, got z={z!r}")
        self.z = None if z is None else float(z)
        self.sign = check_sign(sign, self.name)
        self.n = n
        self.unbiased = bool(unbiased)

    def z_for(self, h: int, f: int) -> float:
        """The z used when there are ``h`` honest rows and ``f`` Byzantine workers."""
        if self.z is not None:
            return self.z
        if self.n is None:
            if not self.omniscient:
                raise ValueError("alie with omniscient=False and the paper's z needs n= (the "
                                 "total number of workers): honest then holds only the "
                                 "Byzantine workers' own gradients")
            return alie_z(h + f, f)
        return alie_z(self.n, f)

    def _forge(self, honest, f, rule):
        z = self.z_for(honest.shape[0], f)
        mu, sigma = alie_stats(honest, self.unbiased)
        return repeat_rows(mu + self.sign * z * sigma, f)

    def __repr__(self) -> str:
        return (f"ALIE(z={self.z}, sign={self.sign}, n={self.n}, unbiased={self.unbiased}, "
                f"omniscient={self.omniscient})")
