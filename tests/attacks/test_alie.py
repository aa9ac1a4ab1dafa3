"""ALIE (Baruch et al. 2019): z against hand-computed quantiles, the vector against a by-hand
mean/std, its variants, validation, and its effect on the median and Krum."""
import math

import pytest
import torch

import robustagg as ra
from attacks import ALIE, alie_z


def phi(z):  # the standard normal CDF, written out as the reference
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@pytest.mark.parametrize("n, f, s, p, z", [
    (10, 2, 4, 4 / 8, 0.0),            # s = floor(6) - 2 = 4, (10-2-4)/(10-2) = 0.5
    (20, 4, 7, 9 / 16, 0.157311),      # s = 11 - 4 = 7
    (50, 12, 14, 24 / 38, 0.336038),   # s = 26 - 12 = 14
    (25, 5, 8, 12 / 20, 0.253347),     # s = 13 - 5 = 8
    (7, 3, 1, 3 / 4, 0.674490),        # s = floor(4.5) - 3 = 1
    (4, 1, 2, 1 / 3, -0.430727),       # z < 0 for tiny n
])
def test_z_matches_hand_computed_quantile(n, f, s, p, z):
    assert math.floor(n / 2 + 1) - f == s
    got = alie_z(n, f)
    assert got == pytest.approx(z, abs=1e-6)
    assert phi(got) == pytest.approx(p, abs=1e-12)


def test_vector_is_mean_minus_z_population_std():
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 8.0]])
    # mean (3, 4); population std sqrt(8/3), sqrt(24/3)
    mu = torch.tensor([3.0, 4.0])
    sd = torch.tensor([math.sqrt(8 / 3), math.sqrt(8.0)])
    out = ALIE(z=1.5)(x, f=2)
    assert out.shape == (2, 2) and out.dtype == x.dtype
    assert torch.allclose(out, (mu - 1.5 * sd).expand(2, 2), atol=1e-6)
    plus = ALIE(z=1.5, sign=+1)(x, f=1)
    assert torch.allclose(plus[0], mu + 1.5 * sd, atol=1e-6)
    sample_sd = torch.tensor([2.0, math.sqrt(12.0)])  # ddof = 1
    unb = ALIE(z=1.0, unbiased=True)(x, f=1)
    assert torch.allclose(unb[0], mu - sample_sd, atol=1e-6)


def test_default_z_uses_n_equal_h_plus_f():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 30, generator=g, dtype=torch.float64)
    z = alie_z(25, 5)
    expect = x.mean(0) - z * x.std(0, unbiased=False)
    assert torch.allclose(ALIE()(x, 5), expect.expand(5, -1))
    # not omniscient: h rows are the Byzantine workers' own; n must be given
    own = x[:5]
    with pytest.raises(ValueError, match="needs n="):
        ALIE(omniscient=False)(own, 5)
    out = ALIE(omniscient=False, n=25)(own, 5)
    assert torch.allclose(out[0], own.mean(0) - z * own.std(0, unbiased=False))


def test_validation():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match=r"f <= n // 2.*n=12, f=7"):
        ALIE()(x[:5], 7)                        # n = 12, s = 7 - 7 = 0
    with pytest.raises(ValueError, match="at least 2 honest gradients, got h=1"):
        ALIE()(x[:1], 1)
    with pytest.raises(ValueError, match="f >= 1"):
        ALIE()(x, 0)
    with pytest.raises(ValueError, match="sign"):
        ALIE(sign=0)
    with pytest.raises(ValueError, match="n >= 3"):
        alie_z(2, 1)
    with pytest.raises(ValueError, match="f < n, got n=5, f=5"):
        alie_z(5, 5)


def test_moves_median_and_krum_while_staying_inside_the_honest_spread():
    h, f, d = 20, 5, 200
    g = torch.Generator().manual_seed(0)
    x = torch.randn(h, d, generator=g, dtype=torch.float64) + 1.0
    b = ALIE()(x, f)
    mu, sd = x.mean(0), x.std(0, unbiased=False)
    # inside the spread: every coordinate between the honest extremes, and closer to the mean
    # than any honest gradient is
    assert bool(((b[0] > x.min(0).values) & (b[0] < x.max(0).values)).all())
    assert float((b[0] - mu).norm()) < float((x - mu).norm(dim=1).min())
    # the median moves along -sigma: the standardised shift is clearly negative
    shift = ((ra.CoordinateMedian()(torch.cat([x, b])) - mu) / sd).mean()
    clean = ((ra.CoordinateMedian()(x) - mu) / sd).mean()
    assert float(shift) < float(clean) - 0.1
    # Krum picks the Byzantine vector
    krum = ra.Krum(f=f)
    assert torch.equal(krum(torch.cat([x, b])), b[0])
    assert int(krum.selected.reshape(-1)[0]) >= h
