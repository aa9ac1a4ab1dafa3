"""Gaussian (Krum paper): statistics, determinism, the mean is driven far, Krum resists."""
import pytest
import torch

import robustagg as ra
from attacks import Gaussian


def test_statistics_and_determinism():
    x = torch.zeros(3, 5000)
    out = Gaussian(std=2.0, mean=1.0, seed=7)(x, 2)
    assert out.shape == (2, 5000) and out.dtype == torch.float32
    assert float(out.mean()) == pytest.approx(1.0, abs=0.05)
    assert float(out.std()) == pytest.approx(2.0, rel=0.03)
    assert torch.equal(out, Gaussian(std=2.0, mean=1.0, seed=7)(x, 2))
    assert not torch.equal(out, Gaussian(std=2.0, mean=1.0, seed=8)(x, 2))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(Gaussian(generator=g1)(x, 1), Gaussian(generator=g2)(x, 1))
    with pytest.raises(ValueError, match="std > 0"):
        Gaussian(std=0)
    with pytest.raises(ValueError, match="seed or generator"):
        Gaussian(seed=1, generator=g1)


def test_mean_is_driven_far_while_krum_resists():
    h, f, d = 20, 5, 100
    g = torch.Generator().manual_seed(0)
    x = torch.randn(h, d, generator=g) + 1.0
    mu = x.mean(0)
    allx = torch.cat([x, Gaussian(seed=0)(x, f)])
    spread = float((x - mu).norm(dim=1).max())
    assert float((ra.Mean()(allx) - mu).norm()) > 10 * spread
    krum = ra.Krum(f=f)
    out = krum(allx)
    assert int(krum.selected.reshape(-1)[0]) < h          # an honest vector
    assert float((out - mu).norm()) <= spread
