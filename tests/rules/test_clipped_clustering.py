"""ClippedClustering against its steps written with loops, over several rounds (Li, Ngai,
Voigt 2023; fedlib/Blades); the clustering itself is scikit-learn's, called here directly."""
import statistics

import numpy as np
import pytest
import torch
from sklearn.cluster import AgglomerativeClustering

import robustagg as ra

from .cosine_reference import cosine_distances
from .reference import KINDS, make_inputs


def reference(a, history, max_tau=1e5):
    n = len(a)
    dist, norms = cosine_distances(a)
    history = history + list(norms)
    tau = min(statistics.median(history), max_tau)
    if n == 1:
        keep = [0]
    else:
        labels = AgglomerativeClustering(n_clusters=2, metric="precomputed",
                                         linkage="average").fit(dist.clip(min=0)).labels_
        ones = labels.sum()
        pick = labels[0] if 2 * ones == n else int(ones > n - ones)
        keep = [i for i in range(n) if labels[i] == pick]
    clipped = [a[i] * min(1.0, tau / norms[i]) if norms[i] > 0 else a[i] for i in keep]
    return np.mean(clipped, axis=0), keep, history


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 5, 8])
@pytest.mark.parametrize("d", [1, 7, 17, 4097])
def test_rounds_match_reference(kind, n, d):
    rule = ra.ClippedClustering()
    history = []
    for t in range(3):
        x = make_inputs(kind, n, d, 10 * t + n + d).double() * (t + 1)
        out = rule(x)
        expected, keep, history = reference(x.numpy(), history)
        assert rule.selected.tolist() == keep
        torch.testing.assert_close(out, torch.tensor(expected), rtol=1e-6, atol=1e-8)


def test_attackers_in_the_smaller_cluster_and_reset():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 50, generator=g) * 0.1 + 1.0
    x[:3] = -5.0 * x[:3]
    rule = ra.ClippedClustering(f=3)
    rule(x)
    assert rule.selected.tolist() == list(range(3, 9))
    assert rule.history.shape == (9,)
    x[4, 2] = float("nan")
    rule(x)
    assert 4 not in rule.selected.tolist() and rule.history.shape == (17,)
    rule.reset()
    assert rule.history is None
