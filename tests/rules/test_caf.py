"""CAF against the filter written with explicit vectors and an SVD (Allouah, Guerraoui,
Stephan, ICML 2025)."""
import numpy as np
import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from .reference import make_inputs

CASES = [(1, 0), (4, 0), (3, 1), (5, 2), (6, 1), (8, 3), (9, 2)]


def reference(x, f):
    """The filter on the d-dimensional vectors: top eigenpair of the weighted covariance from
    the SVD of the weighted centred rows; tau_max over the vectors still weighted."""
    a = x.double().numpy()
    n = len(a)
    c = np.ones(n)
    best_lam, best_mu = np.inf, None
    first = True
    while first or c.sum() > n - 2 * f:
        first = False
        mu = (c[:, None] * a).sum(axis=0) / c.sum()
        centred = a - mu
        _, sv, vt = np.linalg.svd(np.sqrt(c / c.sum())[:, None] * centred, full_matrices=False)
        lam, v = sv[0] ** 2, vt[0]
        if lam < best_lam:
            best_lam, best_mu = lam, mu
        if lam <= 1e-300:
            break
        tau = (centred @ v) ** 2
        tau_max = tau[c > 0].max()
        c = np.where(c > 0, c * (1 - tau / tau_max), c).clip(min=0)
    return torch.tensor(best_mu)


@pytest.mark.parametrize("kind", ["normal", "duplicates", "ties"])
@pytest.mark.parametrize("n,f", CASES)
@pytest.mark.parametrize("d", [1, 7, 9, 17, 4097])
def test_matches_reference(kind, n, f, d):
    for seed in range(2):
        x = make_inputs(kind, n, d, seed + 10 * d)
        torch.testing.assert_close(ra.CAF(f=f)(x).double(), reference(x, f), rtol=1e-5,
                                   atol=1e-6)


def test_f0_is_the_mean_and_weights():
    x = make_inputs("normal", 6, 5, 0)
    torch.testing.assert_close(F.caf(x, 0), x.mean(0))
    out, w = F.caf(x, 2, return_weights=True)
    assert w.shape == (6,) and float(w.sum()) > 6 - 2 * 2 - 1e-9
    torch.testing.assert_close(out.double(), (w[:, None] * x.double()).sum(0) / w.sum(),
                               rtol=1e-6, atol=1e-6)


def test_outlier_removed_and_terminates_where_byzfl_loops():
    # three equal vectors, one far and one farther: with tau_max over every vector (ByzFL) the
    # removed far vector keeps the near one from ever being removed; here the filter stops
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [100.0, 0.0]])
    torch.testing.assert_close(F.caf(x, 2), torch.zeros(2), atol=1e-9, rtol=0)


def test_non_finite_rows_start_removed():
    x = make_inputs("normal", 7, 4, 3)
    x[1], x[4, 0] = float("nan"), float("inf")
    out, w = F.caf(x, 2, return_weights=True)
    assert torch.isfinite(out).all() and w[1] == 0 and w[4] == 0
    with pytest.raises(ValueError, match=r"CAF needs n >= 2f \+ 1 workers, got n=4, f=2"):
        ra.CAF(f=2)(torch.randn(4, 3))
