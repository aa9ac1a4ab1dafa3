"""Fang et al.'s full-knowledge attack on the trimmed mean and the median (Fang, Cao, Jia and
Gong, "Local Model Poisoning Attacks to Byzantine-Robust Federated Learning", USENIX
Security 2020, the attacks on trimmed mean and median), written for gradients.

Per coordinate j, with g_max,j and g_min,j the largest and smallest honest values and
s_j = sign(mu_j) the sign of the honest mean (the model moves along -s_j), every Byzantine
worker samples independently and uniformly (b > 1, 2 in the paper)

    s_j > 0:  in [g_min,j / b, g_min,j]  if g_min,j > 0,   in [b g_min,j, g_min,j]  otherwise
    s_j < 0:  in [g_max,j, b g_max,j]    if g_max,j > 0,   in [g_max,j, g_max,j / b] otherwise
    s_j = 0:  0 (as the NDSS'21 reference implementation)

i.e. just beyond the honest extreme on the side opposite to the descent direction, so the
trimmed mean and the median are dragged that way. This is the model-space rule of the paper
with w = w_Re - eta g. ``honest``: Tensor[h, d], h >= 1; any f >= 1; the rule is not used.
"""
from __future__ import annotations

from typing import Optional

import torch

from attacks.base import RandomAttack


class FangTrimmedMean(RandomAttack):
    """``Tensor[h, d] -> Tensor[f, d]`` of values beyond the honest extremes (Fang et al. 2020).

    Args:
        b: the range factor (> 1; 2 in the paper).
        seed / generator: the uniform draws (see ``RandomAttack``).
    """

    name = "fang_trimmed_mean"

    def __init__(self, b: float = 2.0, *, seed: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, omniscient: bool = True):
        super().__init__(seed=seed, generator=generator, omniscient=omniscient)
        if not b > 1:
            raise ValueError(f"fang_trimmed_mean needs b > 1, got b={b!r}")
        self.b = float(b)

    def _forge(self, honest, f, rule):
        x = honest.to(torch.float64)
        s = torch.sign(x.mean(dim=0))
        hi, lo = x.max(dim=0).values, x.min(dim=0).values
        # [lo_end, hi_end] of the sampling interval, per coordinate
        below_lo = torch.where(lo > 0, lo / self.b, lo * self.b)   # s > 0: [below_lo, lo]
        above_hi = torch.where(hi > 0, hi * self.b, hi / self.b)   # s < 0: [hi, above_hi]
        start = torch.where(s > 0, below_lo, hi)
        end = torch.where(s > 0, lo, above_hi)
        u = torch.rand(f, x.shape[1], generator=self.generator, dtype=torch.float64)
        return torch.where(s == 0, torch.zeros_like(start), start + u.to(x.device) * (end - start))

    def __repr__(self) -> str:
        return f"FangTrimmedMean(b={self.b}, omniscient={self.omniscient})"
