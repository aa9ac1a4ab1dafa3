"""DnC against a loop with numpy's SVD on the same random coordinates (Shejwalkar &
Houmansadr, NDSS 2021)."""
import math

import numpy as np
import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from .reference import KINDS, make_inputs

CASES = [(1, 0), (4, 0), (3, 1), (5, 2), (8, 3), (10, 2)]


def reference(x, f, seed, sub_dim, n_iters, c=1.0):
    g = torch.Generator().manual_seed(seed)
    a = x.double().numpy()
    n, d = a.shape
    finite = np.isfinite(a).all(axis=1)
    count = np.zeros(n, dtype=int)
    for _ in range(n_iters):
        cols = np.arange(d) if sub_dim >= d else \
            torch.randperm(d, generator=g)[:sub_dim].sort().values.numpy()
        sub = a[finite][:, cols]
        centred = sub - sub.mean(axis=0)
        v = np.linalg.svd(centred, full_matrices=False)[2][0]
        scores = np.full(n, np.inf)
        scores[finite] = (centred @ v) ** 2
        good = sorted((s, i) for i, s in enumerate(scores) if np.isfinite(s))
        for _, i in good[: n - math.floor(c * f)]:
            count[i] += 1
    keep = [i for i in range(n) if count[i] == count.max() and finite[i]]
    return torch.tensor(a[keep].mean(axis=0)), keep


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,f", CASES)
@pytest.mark.parametrize("d,sub_dim", [(1, 10), (7, 3), (17, 9), (4097, 1000)])
def test_matches_reference(kind, n, f, d, sub_dim):
    x = make_inputs(kind, n, d, n + d)
    if kind == "ties":  # integer inputs make the top singular vector ambiguous; break ties
        x = x + 1e-3 * make_inputs("normal", n, d, 99)
    rule = ra.DnC(f=f, sub_dim=sub_dim, n_iters=3, seed=4)
    out = rule(x)
    expected, keep = reference(x, f, 4, sub_dim, 3)
    assert rule.selected.tolist() == keep
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)


def test_outliers_removed_same_seed_same_result_and_reset():
    x = make_inputs("normal", 10, 300, 0)
    x[7] += 20.0
    x[8] -= 20.0
    rule = ra.DnC(f=2, sub_dim=50, seed=1)
    first = rule(x)
    assert not {7, 8} & set(rule.selected.tolist())
    rule.reset()
    assert torch.equal(rule(x), first)


def test_non_finite_rows_and_errors():
    x = make_inputs("normal", 7, 20, 2)
    x[3, 0], x[5] = float("nan"), float("inf")
    out, sel = F.dnc(x, 2, torch.Generator().manual_seed(0), sub_dim=5, return_selected=True)
    assert torch.isfinite(out).all() and not {3, 5} & set(sel.tolist())
    with pytest.raises(ValueError, match=r"DnC needs n >= 2f \+ 1 workers, got n=4, f=2"):
        ra.DnC(f=2)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="filter_frac must be in"):
        ra.DnC(f=1, filter_frac=1.5)
