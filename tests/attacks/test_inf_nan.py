"""Inf and NaN: non-finite rows of the right shape; robust rules keep the aggregate finite,
the mean does not."""
import math

import pytest
import torch

import robustagg as ra
from attacks import Inf, NaN


@pytest.mark.parametrize("atk, check", [(Inf(), torch.isposinf), (NaN(), torch.isnan)])
def test_rows_and_rules(atk, check):
    x = torch.randn(10, 6, dtype=torch.float64)
    b = atk(x, 3)
    assert b.shape == (3, 6) and b.dtype == torch.float64 and bool(check(b).all())
    allx = torch.cat([x, b])
    for rule in (ra.Krum(f=3), ra.CoordinateMedian(), ra.TrimmedMean(f=3)):
        assert bool(torch.isfinite(rule(allx)).all())
    assert not math.isfinite(float(ra.Mean()(allx).sum()))
