"""Fang et al. 2020 on Krum: lambda_0 by hand, Krum selects the crafted vector, direction."""
import pytest
import torch

import robustagg as ra
from attacks import FangKrum
from attacks.fang_krum import fang_krum_lambda0


def test_lambda0_by_hand():
    # d = 1, honest 0, 1, 3, 6, f = 1, n = 5: sums over the n-f-2 = 2 nearest others are
    # 4, 3, 5, 8 -> min 3, / (n - 2f - 1 = 2) = 1.5; max |g_i| = 6: lambda_0 = 7.5
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0]], dtype=torch.float64)
    assert fang_krum_lambda0(x, 1) == pytest.approx(7.5)


def test_krum_selects_the_crafted_vector():
    h, f, d = 20, 5, 50
    g = torch.Generator().manual_seed(2)
    # SGD regime: the noise dominates the mean (else even lambda -> 0 is far from the cloud)
    x = torch.randn(h, d, generator=g, dtype=torch.float64) + 0.2
    atk = FangKrum()
    b = atk(x, f)                                 # default rule: ra.Krum(f=f)
    assert atk.selected
    mu = x.mean(0)
    assert torch.allclose(b[0], -atk.lam * torch.sign(mu))
    assert 0 < atk.lam <= fang_krum_lambda0(x, f)
    out = ra.Krum(f=f)(torch.cat([x, b]))
    assert torch.equal(out, b[0])
    assert float(out @ mu) < 0                   # Krum's output now points against the descent


def test_rule_state_untouched_and_bound():
    x = torch.randn(10, 5)
    krum = ra.Krum(f=2)
    FangKrum()(x, 2, rule=krum)
    assert krum.selected is None                 # trial aggregations ran on copies
    with pytest.raises(ValueError, match="n >= 2f \\+ 2"):
        FangKrum()(x[:3], 3)
