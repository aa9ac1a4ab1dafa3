"""Mimic attack (Karimireddy, He and Jaggi, "Byzantine-Robust Learning on Heterogeneous
Datasets via Bucketing", ICLR 2022; the heuristic as in the authors' code).

All f Byzantine workers send a copy of one honest gradient g_{i*}, over-representing that
worker's (non-iid) data so that robust rules drift towards it. With ``target=i`` the choice is
fixed. Otherwise (default) the paper's heuristic picks the worker along the direction of
largest honest variance, learned online during the first ``warmup`` rounds t = 0..t0-1:

    mu_t = running mean of the honest means,
    z    <- normalised power step:  sum_i <g_i - mu_t, z> (g_i - mu_t), averaged over rounds
            (z_0 from N(0, I) with the attack's seed),
    i*   = argmax_i <g_i, z>,

then i* stays fixed (it is re-picked with the last z if fewer rows arrive than i*).
``honest``: Tensor[h, d] in a stable worker order, h >= 1; any f >= 1. Stateful: ``reset()``
forgets z, mu and the round counter and rewinds the generator.
"""
from __future__ import annotations

from typing import Optional

import torch

from attacks.base import RandomAttack, check_round, repeat_rows


class Mimic(RandomAttack):
    """``Tensor[h, d] -> Tensor[f, d]``, every row a copy of honest row ``i*``.

    Args:
        target: the honest row to copy every round; None (default) uses the heuristic.
        warmup: rounds t0 >= 1 over which the heuristic learns z (then fixes i*).
        seed / generator: the initial z.
    After a call, ``chosen`` is the index copied.
    """

    name = "mimic"

    def __init__(self, target: Optional[int] = None, warmup: int = 1, *,
                 seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
                 omniscient: bool = True):
        super().__init__(seed=seed, generator=generator, omniscient=omniscient)
        if target is not None:
            check_round(target, "target", self.name)
        if check_round(warmup, "warmup", self.name) < 1:
            raise ValueError(f"mimic needs warmup >= 1, got warmup={warmup}")
        self.target, self.warmup = target, warmup
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.t, self.mu, self.z, self.chosen = 0, None, None, None

    def _power_step(self, x: torch.Tensor) -> torch.Tensor:
        dev = x - self.mu
        cumu = (dev @ self.z) @ dev
        norm = cumu.norm()
        return cumu / norm if norm > 0 else self.z

    def _forge(self, honest, f, rule):
        h = honest.shape[0]
        if self.target is not None:
            if self.target >= h:
                raise ValueError(f"mimic target={self.target} needs h > {self.target} honest "
                                 f"gradients, got h={h}")
            self.chosen = self.target
            return repeat_rows(honest[self.target], f)
        x = honest.to(torch.float64)
        t = self.t
        if t < self.warmup:
            avg = x.mean(dim=0)
            if t == 0:
                self.mu = avg
                z0 = torch.randn(x.shape[1], generator=self.generator, dtype=torch.float64)
                self.z = z0.to(x.device)
                self.z = self._power_step(x)
            else:
                self.mu = (t * self.mu + avg) / (t + 1)
                z = (t * self.z + self._power_step(x)) / (t + 1)
                self.z = z / z.norm() if z.norm() > 0 else self.z
        if t < self.warmup or self.chosen >= h:
            self.chosen = int(torch.argmax(x @ self.z))
        self.t += 1
        return repeat_rows(honest[self.chosen], f)

    def __repr__(self) -> str:
        return f"Mimic(target={self.target}, warmup={self.warmup}, omniscient={self.omniscient})"
