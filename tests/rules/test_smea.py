"""SMEA against the d x d covariance of every subset (Allouah et al., ICML 2023)."""
import itertools

import numpy as np
import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from .reference import KINDS, make_inputs

CASES = [(1, 0), (4, 0), (3, 1), (5, 2), (6, 1), (8, 3), (9, 2)]


def top_eigenvalue(sub):
    """Largest eigenvalue of the empirical covariance (1/|S| normalisation): from the d x d
    matrix when d is small, else from the |S| x |S| Gram matrix (same non-zero spectrum)."""
    c = sub - sub.mean(axis=0)
    m = c.T @ c if c.shape[1] <= 64 else c @ c.T
    return max(np.linalg.eigvalsh(m / len(sub))[-1], 0.0)


def reference(x, f):
    """Least top eigenvalue; subsets within 1e-9 of the mean squared distance tie, and the
    first in itertools (lexicographic) order among them wins."""
    a = x.double().numpy()
    n = len(a)
    spread = np.mean([((a[i] - a[j]) ** 2).sum() for i in range(n) for j in range(n)])
    values = {s: top_eigenvalue(a[list(s)]) for s in itertools.combinations(range(n), n - f)}
    best = min(values.values())
    s = next(s for s, v in values.items() if v <= best + 1e-9 * spread)
    return torch.tensor(a[list(s)].mean(axis=0)), list(s)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,f", CASES)
@pytest.mark.parametrize("d", [1, 7, 17])
def test_matches_reference(kind, n, f, d):
    for seed in range(3):
        x = make_inputs(kind, n, d, seed)
        rule = ra.SMEA(f=f)
        out = rule(x)
        expected, sel = reference(x, f)
        assert rule.selected.tolist() == sel
        torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("d", [9, 4097])
def test_large_d(d):
    x = make_inputs("normal", 7, d, 4)
    out, sel = F.smea(x, 2, return_selected=True)
    expected, expected_sel = reference(x, 2)
    assert sel.tolist() == expected_sel
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)


def test_outlier_direction_is_caught():
    # four points on a small circle and one far along an axis: the far one is left out
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [50.0, 0.0]])
    _, sel = F.smea(x, 1, return_selected=True)
    assert sel.tolist() == [0, 1, 2, 3]


def test_non_finite_and_limit():
    x = make_inputs("normal", 7, 5, 1)
    x[0], x[3, 2] = float("-inf"), float("nan")
    out, sel = F.smea(x, 2, return_selected=True)
    assert torch.isfinite(out).all() and not {0, 3} & set(sel.tolist())
    with pytest.raises(ValueError, match=r"SMEA searches .* C\(30, 5\) = 142506 subsets"):
        ra.SMEA(f=5).check(30)
