"""CGE against a sort of the norms (Gupta, Liu, Vaidya, DSN-W 2021)."""
import math

import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from .reference import KINDS, make_inputs, norm, rows

CASES = [(1, 0), (4, 0), (3, 1), (5, 2), (6, 1), (8, 3)]


def reference(x, f, average):
    r = rows(x)
    n = len(r)
    norms = [norm(v) if all(math.isfinite(u) for u in v) else math.inf for v in r]
    keep = sorted(range(n), key=lambda i: (norms[i], i))[: n - f]
    total = [sum(r[i][k] for i in keep) for k in range(len(r[0]))]
    scale = 1.0 / (n - f) if average else 1.0
    return torch.tensor([t * scale for t in total], dtype=torch.float64), keep


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,f", CASES)
@pytest.mark.parametrize("d", [1, 7, 9, 17, 4097])
@pytest.mark.parametrize("average", [False, True])
def test_matches_reference(kind, n, f, d, average):
    x = make_inputs(kind, n, d, 3 * n + d)
    rule = ra.CGE(f=f, average=average)
    out = rule(x)
    expected, keep = reference(x, f, average)
    assert rule.selected.tolist() == keep
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_sum_not_mean_by_default_and_non_finite():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [float("nan"), 0.0], [30.0, 0.0], [0.0, 3.0]])
    assert F.cge(x, 2).tolist() == [1.0, 5.0]
    assert F.cge(x, 2, average=True).tolist() == pytest.approx([1 / 3, 5 / 3])
    with pytest.raises(ValueError, match=r"CGE needs n >= 2f \+ 1 workers, got n=4, f=2"):
        ra.CGE(f=2)(torch.randn(4, 3))
