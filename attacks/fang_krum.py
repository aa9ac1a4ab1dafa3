"""Fang et al.'s full-knowledge attack on Krum (Fang, Cao, Jia and Gong, "Local Model Poisoning
Attacks to Byzantine-Robust Federated Learning", USENIX Security 2020, the attack on Krum),
written for gradients.

Fang et al. craft the model ``w'_1 = w_Re - lambda * s``, s the sign of the direction in which
the global model would change without attack. With one gradient step (w_i = w_Re - eta g_i)
that is the Byzantine gradient

    b = -lambda * sign(mu),        mu = (1/h) sum_i g_i over the honest gradients,

with lambda started at the paper's upper bound (distances D are Euclidean, n = h + f, the
honest set H, Gamma(i, k) the k honest gradients closest to g_i, d the dimension)

    lambda_0 = 1/((n - 2f - 1) sqrt(d)) * min_{i in H} sum_{l in Gamma(i, n-f-2)} D(g_l, g_i)
               + 1/sqrt(d) * max_{i in H} D(g_i, 0)

(D(w_i, w_Re) in model space is the length of worker i's update, here ||g_i||) and halved
until the rule outputs the Byzantine vector (Krum selects it) or lambda < ``threshold``
(1e-5, the paper's), in which case the last lambda is used. All f Byzantine workers send b
(the paper places the other f - 1 in a tiny ball around w'_1; identical copies are its limit,
as the NDSS'21 reference implementation does). Bound: n >= 2f + 2 (the first term's
denominator), h >= 2. The rule defaults to ``robustagg.Krum(f=f)``; any callable works, the
success test being that its output equals b. After a call, ``lam`` and ``selected`` (whether
the rule output b) say what happened.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from attacks.base import ModelAttack, aggregate, repeat_rows


def fang_krum_lambda0(x: torch.Tensor, f: int) -> float:
    """Fang et al.'s upper bound on lambda for honest gradients ``x``: Tensor[h, d] (float64)."""
    h, d = x.shape
    n = h + f
    dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    k = n - f - 2  # = h - 2 nearest honest neighbours, self excluded (column 0 after sorting)
    nearest = dist.sort(dim=1).values[:, 1:k + 1].sum(dim=1).min()
    return float(nearest / ((n - 2 * f - 1) * math.sqrt(d)) + x.norm(dim=1).max() / math.sqrt(d))


class FangKrum(ModelAttack):
    """``Tensor[h, d] -> Tensor[f, d]``, every row ``-lambda sign(mu)`` (Fang et al. 2020, Krum)."""

    name = "fang_krum"
    needs = frozenset({"honest", "rule"})
    min_honest = 2
    _has_default_rule = True

    def __init__(self, threshold: float = 1e-5, *, omniscient: bool = True):
        super().__init__(omniscient=omniscient)
        if not threshold > 0:
            raise ValueError(f"fang_krum needs threshold > 0, got threshold={threshold!r}")
        self.threshold = float(threshold)
        self.lam: Optional[float] = None
        self.selected: Optional[bool] = None

    def _forge(self, honest, f, rule):
        h = honest.shape[0]
        if h + f < 2 * f + 2:
            raise ValueError(f"fang_krum needs n >= 2f + 2 workers, got n={h + f}, f={f}")
        if rule is None:
            import robustagg as ra
            rule = ra.Krum(f=f)
        x = honest.to(torch.float64)
        s = torch.sign(x.mean(dim=0))
        lam = fang_krum_lambda0(x, f)
        while True:
            b = (-lam * s).to(honest.dtype)
            out = aggregate(rule, honest, repeat_rows(b, f))
            self.selected = bool(torch.allclose(out, b, rtol=1e-5, atol=0.0))
            if self.selected or lam / 2 < self.threshold:
                break
            lam /= 2
        self.lam = lam
        return repeat_rows(b, f)

    def __repr__(self) -> str:
        return f"FangKrum(threshold={self.threshold}, omniscient={self.omniscient})"
