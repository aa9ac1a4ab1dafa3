"""The adaptive attack on SignGuard of fedlib/Blades (Li, Ngai, Voigt, "An experimental study
of Byzantine-robust aggregation schemes in federated learning", IEEE Transactions on Big Data
2023; Blades' ``SignGuardAdversary``).

SignGuard clusters the workers by the fractions of positive, zero and negative entries of
their gradients. The attack copies those fractions from the honest mean ``mu`` and nothing
else: with p, q, z the numbers of positive, negative and zero coordinates of ``mu``,

    b = P [u_1, ..., u_p, -v_1, ..., -v_q, 0, ..., 0],    u, v ~ U(0, 1) i.i.d.,

P a uniformly random permutation of the d coordinates. Its sign statistics match the honest
mean's, so it lands in the honest cluster, while its coordinates carry no information about
the gradient. All f Byzantine workers send the same b (as in Blades). Any h >= 1, f >= 1.
"""
from __future__ import annotations

import torch

from attacks.base import RandomAttack, repeat_rows


class AdaptiveSignGuard(RandomAttack):
    """``Tensor[h, d] -> Tensor[f, d]``: random magnitudes with the honest mean's sign counts,
    shuffled (Blades' SignGuard adversary). ``seed`` / ``generator``: see ``RandomAttack``;
    the draws are, in order, p uniforms, q uniforms and the permutation (Blades' order)."""

    name = "adaptive_signguard"

    def _forge(self, honest, f, rule):
        mu = honest.to(torch.float64).mean(dim=0)
        p, q = int((mu > 0).sum()), int((mu < 0).sum())
        values = torch.cat([
            torch.rand(p, generator=self.generator, dtype=torch.float64),
            -torch.rand(q, generator=self.generator, dtype=torch.float64),
            torch.zeros(mu.numel() - p - q, dtype=torch.float64)])
        perm = torch.randperm(mu.numel(), generator=self.generator)
        return repeat_rows(values[perm], f)
