"""Geometric median (RFA, Pillutla et al.) against the definition: it minimises the sum of
distances, checked against a long float64 Weiszfeld run and against every input point."""
import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from . import reference as ref
from .reference import make_inputs


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_geometric_median_minimises_sum_of_distances(n):
    for seed in range(5):
        x = make_inputs("normal", n, 4, seed)
        z = ra.GeometricMedian(max_iter=1000, tol=1e-12)(x)
        best = ref.weiszfeld(x)
        assert ref.gm_objective(x, z) <= ref.gm_objective(x, best.float()) * (1 + 1e-5)
        assert all(ref.gm_objective(x, z) <= ref.gm_objective(x, xi) + 1e-5 for xi in x)


def test_geometric_median_resists_outlier():
    x = torch.zeros(7, 3)
    x[0] = 1e6
    assert F.geometric_median(x).norm() < 1e-2  # the mean would be at 1.4e5 per coordinate


def test_geometric_median_weights():
    x = torch.tensor([[0.0], [1.0]])
    z = F.geometric_median(x, weights=torch.tensor([3.0, 1.0]), max_iter=500)
    assert abs(z.item()) < 1e-3  # the heavier point wins
    with pytest.raises(ValueError, match="weights"):
        F.geometric_median(x, weights=torch.tensor([1.0]))
