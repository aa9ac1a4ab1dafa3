"""Gaussian noise attack (Blanchard et al., "Machine Learning with Adversaries: Byzantine
Tolerant Gradient Descent", NeurIPS 2017, experiments).

Each Byzantine worker sends an independent draw ``b_j ~ N(mean * 1, std^2 I_d)``, j = 1..f.
The Krum paper's experiments use mean 0 and std 200. The attack uses nothing but the shape,
dtype and device of the honest gradients (``needs`` is empty); any n and f >= 1.
"""
from __future__ import annotations

from typing import Optional

import torch

from attacks.base import RandomAttack


class Gaussian(RandomAttack):
    """``Tensor[h, d] -> Tensor[f, d]`` of i.i.d. ``N(mean, std^2)`` entries (Blanchard et al. 2017).

    Args:
        std: standard deviation of every coordinate (> 0), default 200 as in the paper.
        mean: mean of every coordinate, default 0.
        seed / generator: the randomness (see ``RandomAttack``).
    """

    name = "gaussian"
    needs = frozenset()

    def __init__(self, std: float = 200.0, mean: float = 0.0, *, seed: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, omniscient: bool = True):
        super().__init__(seed=seed, generator=generator, omniscient=omniscient)
        if not std > 0:
            raise ValueError(f"gaussian needs std > 0, got std={std!r}")
        self.std, self.mean = float(std), float(mean)

    def _forge(self, honest, f, rule):
        noise = torch.randn(f, honest.shape[1], generator=self.generator, dtype=torch.float64)
        return noise * self.std + self.mean

    def __repr__(self) -> str:
        return f"Gaussian(std={self.std}, mean={self.mean})"
