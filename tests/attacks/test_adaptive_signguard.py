"""Blades' adaptive attack on SignGuard: the honest mean's sign counts, random magnitudes in
(0, 1), shuffled with the seeded generator; it lands in SignGuard's honest cluster."""
import torch

import robustagg as ra
from attacks import AdaptiveSignGuard


def test_sign_counts_magnitudes_and_draw_order():
    g = torch.Generator().manual_seed(0)
    honest = torch.randn(6, 40, generator=g)
    honest[:, :5] = 0.0
    out = AdaptiveSignGuard(seed=3)(honest, 2)
    mu = honest.mean(0)
    b = out[0]
    assert torch.equal(out[0], out[1])
    assert int((b > 0).sum()) == int((mu > 0).sum()) and int((b < 0).sum()) == int((mu < 0).sum())
    assert int((b == 0).sum()) == 5 and float(b.abs().max()) < 1.0
    # the formula, drawn in Blades' order: p uniforms, q uniforms, then the permutation
    r = torch.Generator().manual_seed(3)
    p, q = int((mu > 0).sum()), int((mu < 0).sum())
    values = torch.cat([torch.rand(p, generator=r, dtype=torch.float64),
                        -torch.rand(q, generator=r, dtype=torch.float64), torch.zeros(5)])
    assert torch.equal(b, values[torch.randperm(40, generator=r)].float())


def test_passes_signguards_sign_clustering():
    g = torch.Generator().manual_seed(1)
    honest = torch.randn(8, 400, generator=g) * 0.3 + 0.2
    byz = AdaptiveSignGuard(seed=0)(honest, 3)
    rule = ra.SignGuard(f=3, seed=0)
    rule(torch.cat([honest, byz]))
    assert {8, 9, 10} <= set(rule.selected.tolist())
