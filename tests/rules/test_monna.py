"""MoNNA against a sort of the distances to the pivot (Farhadkhani et al., ICML 2023)."""
import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from .reference import KINDS, make_inputs, rows, sq_dist

CASES = [(1, 0), (4, 0), (3, 1), (5, 2), (6, 1), (8, 3)]


def reference(x, f, pivot):
    r = rows(x)
    n = len(r)
    if isinstance(pivot, int):
        order = sorted(range(n), key=lambda j: (j != pivot, sq_dist(r[pivot], r[j]), j))
    else:
        p = [float(v) for v in pivot.double()]
        order = sorted(range(n), key=lambda j: (sq_dist(p, r[j]), j))
    keep = order[: n - f]
    mean = [sum(r[i][k] for i in keep) / len(keep) for k in range(len(r[0]))]
    return torch.tensor(mean, dtype=torch.float64), keep


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,f", CASES)
@pytest.mark.parametrize("d", [1, 7, 17, 4097])
def test_matches_reference(kind, n, f, d):
    for seed in range(2):
        x = make_inputs(kind, n, d, seed)
        for pivot in sorted({0, n - 1}):
            rule = ra.MoNNA(f=f, pivot=pivot)
            out = rule(x)
            expected, keep = reference(x, f, pivot)
            assert rule.selected.tolist() == keep
            torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_tensor_pivot_and_shared_distances(kind):
    x = make_inputs(kind, 9, 9, 3)
    p = make_inputs("normal", 1, 9, 7)[0]
    out, keep = F.monna(x, 3, p, return_selected=True)
    expected, expected_keep = reference(x, 3, p)
    assert keep.tolist() == expected_keep
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)
    dist = ra.kernels.pairwise_sq_distances(x)
    assert torch.equal(F.monna(x, 3, 4, distances=dist), F.monna(x, 3, 4))


def test_pivot_first_among_duplicates_and_non_finite_rows():
    x = torch.tensor([[1.0], [1.0], [1.0], [5.0], [float("nan")]])
    _, keep = F.monna(x, 2, 2, return_selected=True)
    assert keep.tolist() == [2, 0, 1]
    assert F.monna(x, 2, 3).isfinite().all()


def test_errors():
    with pytest.raises(ValueError, match=r"MoNNA needs n >= 2f \+ 1 workers, got n=4, f=2"):
        ra.MoNNA(f=2)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="pivot must be a row index below n, got pivot=5, n=5"):
        ra.MoNNA(f=1, pivot=5)(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"pivot must be a row index or a Tensor\[3\]"):
        F.monna(torch.randn(5, 3), 1, torch.zeros(4))
    with pytest.raises(ValueError, match="pivot vector must be finite"):
        F.monna(torch.randn(5, 3), 1, torch.tensor([0.0, float("inf"), 0.0]))


def test_near_duplicates_around_a_large_offset():
    # Distances to the pivot by direct differences: the expansion |x|^2 - 2<x, p> + |p|^2
    # cancels when the rows sit close together far from the origin.
    g = torch.Generator().manual_seed(3)
    x = 1e4 + 1e-3 * torch.randn(9, 2000, generator=g, dtype=torch.float64)
    ref = ((x - x[0]) ** 2).sum(dim=1)
    ref[0] = -1.0
    _, sel = F.monna(x, 3, pivot=0, return_selected=True)
    assert sel.tolist() == torch.sort(ref, stable=True).indices[:6].tolist()
