"""MDA against a loop over every subset (El Mhamdi, Guerraoui, Rouault, ICML 2018)."""
import itertools
import math

import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from .reference import KINDS, make_inputs, rows, sq_dist

CASES = [(1, 0), (4, 0), (3, 1), (5, 2), (6, 1), (8, 3), (9, 2)]  # n = 2f + 1 included


def reference(x, f):
    """Mean of the first subset (itertools order: lexicographic) of least diameter."""
    r = rows(x)
    n = len(r)
    best, best_s = math.inf, None
    for s in itertools.combinations(range(n), n - f):
        diam = max((sq_dist(r[i], r[j]) for i, j in itertools.combinations(s, 2)), default=0.0)
        if diam < best or best_s is None:
            best, best_s = diam, s
    mean = [sum(r[i][k] for i in best_s) / len(best_s) for k in range(len(r[0]))]
    return torch.tensor(mean, dtype=torch.float64), list(best_s)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,f", CASES)
@pytest.mark.parametrize("d", [1, 7, 17])
def test_matches_reference(kind, n, f, d):
    for seed in range(3):
        x = make_inputs(kind, n, d, seed)
        rule = ra.MDA(f=f)
        out = rule(x)
        expected, sel = reference(x, f)
        assert rule.selected.tolist() == sel
        torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("d", [9, 4097])
def test_large_d(d):
    x = make_inputs("duplicates", 7, d, 5)
    out, sel = F.mda(x, 2, return_selected=True)
    expected, expected_sel = reference(x, 2)
    assert sel.tolist() == expected_sel
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)


def test_hand_solved_and_ties():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    assert F.mda(x, 2).item() == 1.0  # {0, 1, 2} has diameter 2, every other triple more
    # {1, 2, 3} and {0, 1, 2} both have diameter 2: the lexicographically first wins,
    # whatever order the tied subsets are met in
    x = torch.tensor([[3.0], [1.0], [2.0], [0.0], [10.0]])
    out, sel = F.mda(x, 2, return_selected=True)
    assert sel.tolist() == [0, 1, 2] and out.item() == 2.0


def test_non_finite_vectors_never_chosen():
    x = make_inputs("normal", 7, 5, 1)
    x[2, 1], x[5] = float("nan"), float("inf")
    out, sel = F.mda(x, 2, return_selected=True)
    assert torch.isfinite(out).all() and not {2, 5} & set(sel.tolist())


def test_subset_limit_names_the_count():
    with pytest.raises(ValueError, match=r"MDA searches .* C\(30, 5\) = 142506 subsets, above "
                                         r"max_subsets=100000"):
        ra.MDA(f=5).check(30)
    ra.MDA(f=5, max_subsets=200_000).check(30)
    with pytest.raises(ValueError, match="max_subsets=10"):
        F.mda(torch.randn(8, 2), 2, max_subsets=10)
    with pytest.raises(ValueError, match=r"MDA needs n >= 2f \+ 1 workers, got n=4, f=2"):
        ra.MDA(f=2)(torch.randn(4, 3))
