"""IPM (Xie et al. 2019): the vector by hand, and a large epsilon drives the mean far away."""
import pytest
import torch

import robustagg as ra
from attacks import IPM


def test_vector_is_minus_epsilon_mean():
    x = torch.tensor([[1.0, 2.0], [3.0, -4.0]])     # mean (2, -1)
    out = IPM(epsilon=0.5)(x, f=3)
    assert torch.equal(out, torch.tensor([[-1.0, 0.5]] * 3))
    assert IPM().epsilon == 0.1
    with pytest.raises(ValueError, match="epsilon >= 0"):
        IPM(epsilon=-1)


def test_large_epsilon_reverses_the_mean():
    h, f, eps = 20, 5, 100.0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(h, 50, generator=g, dtype=torch.float64) + 1.0
    mu = x.mean(0)
    agg = ra.Mean()(torch.cat([x, IPM(epsilon=eps)(x, f)]))
    # mean = mu (h - f eps) / n, so ||mean - mu|| = ||mu|| f (1 + eps) / n
    n = h + f
    assert float((agg - mu).norm()) == pytest.approx(float(mu.norm()) * f * (1 + eps) / n)
    assert float((agg - mu).norm()) > 10 * float(mu.norm())
    assert float(agg @ mu) < 0


def test_small_epsilon_lowers_the_inner_product_of_the_median():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 50, generator=g, dtype=torch.float64) + 0.5
    mu = x.mean(0)
    clean = ra.CoordinateMedian()(x) @ mu
    attacked = ra.CoordinateMedian()(torch.cat([x, IPM(0.1)(x, 5)])) @ mu
    assert float(attacked) < float(clean)
