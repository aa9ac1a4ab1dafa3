"""Fang et al. 2020 on the trimmed mean / median: sampling intervals by hand, determinism,
and the trimmed mean moves against the descent direction in every coordinate."""
import pytest
import torch

import robustagg as ra
from attacks import FangTrimmedMean


def test_intervals_by_hand():
    # coord 0: mu = 2 > 0, min 1 > 0 -> [1/2, 1];  coord 1: mu = -2 < 0, max -1 <= 0 -> [-1, -1/2]
    # coord 2: mu = 1 > 0, min -1 <= 0 -> [-2, -1]; coord 3: mu = -1 < 0, max 1 > 0 -> [1, 2]
    # coord 4: mu = 0 -> 0
    x = torch.tensor([[1.0, -1.0, -1.0, 1.0, 1.0], [3.0, -3.0, 3.0, -3.0, -1.0]],
                     dtype=torch.float64)
    out = FangTrimmedMean(seed=0)(x, 50)
    lo = torch.tensor([0.5, -1.0, -2.0, 1.0, 0.0], dtype=torch.float64)
    hi = torch.tensor([1.0, -0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    assert bool(((out >= lo) & (out <= hi)).all())
    assert float(out[:, 0].max() - out[:, 0].min()) > 0.3    # really sampled, not constant


def test_deterministic_and_validated():
    x = torch.randn(6, 8)
    assert torch.equal(FangTrimmedMean(seed=3)(x, 2), FangTrimmedMean(seed=3)(x, 2))
    with pytest.raises(ValueError, match="b > 1"):
        FangTrimmedMean(b=1.0)


def test_trimmed_mean_moves_against_the_mean():
    h, f = 20, 5
    g = torch.Generator().manual_seed(1)
    x = torch.randn(h, 30, generator=g, dtype=torch.float64) + 0.5
    s = torch.sign(x.mean(0))
    tm = ra.TrimmedMean(f=f)
    clean = tm(torch.cat([x, x[:f]]))              # Byzantine workers behaving honestly
    attacked = tm(torch.cat([x, FangTrimmedMean()(x, f)]))
    assert bool(((attacked - clean) * s < 0).all())
    med_shift = (ra.CoordinateMedian()(torch.cat([x, FangTrimmedMean()(x, f)]))
                 - ra.CoordinateMedian()(x)) * s
    assert bool((med_shift < 0).all())
