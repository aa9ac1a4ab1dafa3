"""Meamed against a per-coordinate loop (Xie, Koyejo, Gupta, 2018)."""
import math

import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from .reference import KINDS, make_inputs, median, rows

CASES = [(1, 0), (4, 0), (3, 1), (5, 2), (6, 1), (8, 3), (10, 2)]


def key(v):
    return math.inf if math.isnan(v) else v


def reference(x, f):
    """Per coordinate, the n - f values nearest the median; equally near: the smaller first."""
    r = rows(x)
    n, d = len(r), len(r[0])
    med = median(x).tolist()
    out = []
    for k in range(d):
        col = sorted((abs(key(r[i][k]) - med[k]), key(r[i][k])) for i in range(n))[: n - f]
        out.append(sum(v for _, v in col) / (n - f))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,f", CASES)
@pytest.mark.parametrize("d", [1, 7, 9, 17, 4097])
def test_matches_reference(kind, n, f, d):
    x = make_inputs(kind, n, d, n * 31 + d)
    torch.testing.assert_close(ra.Meamed(f=f)(x).double(), reference(x, f), rtol=1e-6,
                               atol=1e-6)


def test_hand_solved_tie_goes_to_the_smaller_value():
    # median 2; 2, 1, 3 are kept, then 0 and 4 are equally near and only one fits: 0
    x = torch.tensor([[2.0], [4.0], [1.0], [3.0], [0.0], [50.0], [-50.0]])
    assert F.meamed(x, 3).item() == pytest.approx(1.5)
    assert F.meamed(x.flip(0), 3).item() == pytest.approx(1.5)


def test_non_finite_values_trimmed_and_blocks():
    x = make_inputs("normal", 7, 5, 2)
    x[0, 1], x[3, 1], x[5, 4] = float("nan"), float("-inf"), float("inf")
    out = F.meamed(x, 2)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), reference(x, 2), rtol=1e-6, atol=1e-6)


def test_bound():
    with pytest.raises(ValueError, match=r"Meamed needs n >= 2f \+ 1 workers, got n=4, f=2"):
        ra.Meamed(f=2)(torch.randn(4, 3))
