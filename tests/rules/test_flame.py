"""FLAME against its steps written with numpy (Nguyen et al., USENIX Security 2022); the
clustering itself is scikit-learn's HDBSCAN, called here directly."""
import numpy as np
import pytest
import torch
from sklearn.cluster import HDBSCAN

import robustagg as ra

from .cosine_reference import cosine_distances
from .reference import KINDS, make_inputs


def reference(a, seed, noise=0.001):
    n, d = a.shape
    dist, norms = cosine_distances(a)
    if n == 1:
        keep = [0]
    else:
        labels = HDBSCAN(min_cluster_size=max(n // 2 + 1, 2), min_samples=1,
                         metric="precomputed", allow_single_cluster=True,
                         copy=True).fit(dist.clip(min=0)).labels_
        keep = [i for i in range(n) if labels[i] >= 0]
    s = float(np.median(norms))
    out = np.zeros(d)
    if keep:
        out = np.mean([a[i] * min(1.0, s / norms[i]) if norms[i] > 0 else a[i]
                       for i in keep], axis=0)
    if noise > 0 and s > 0:
        g = torch.Generator().manual_seed(seed)
        out = out + torch.randn(d, generator=g, dtype=torch.float64).numpy() * noise * s
    return out, keep


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 5, 8])
@pytest.mark.parametrize("d", [1, 7, 17, 4097])
def test_matches_reference(kind, n, d):
    x = make_inputs(kind, n, d, n + d).double()
    rule = ra.FLAME(seed=5)
    out = rule(x)
    expected, keep = reference(x.numpy(), 5)
    assert rule.selected.tolist() == keep
    torch.testing.assert_close(out, torch.tensor(expected), rtol=1e-6, atol=1e-8)


def test_backdoor_direction_rejected_noise_seeded():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 40, generator=g) * 0.2 + 1.0
    x[:3] = torch.randn(40, generator=g) * 3  # a different direction, larger norm
    rule = ra.FLAME(f=3, seed=1)
    out = rule(x)
    assert not {0, 1, 2} & set(rule.selected.tolist())
    rule.reset()
    assert torch.equal(rule(x), out)
    quiet = ra.FLAME(noise=0.0)(x)
    assert 0 < float((out - quiet).norm()) < 1.0
    x[5, 0] = float("inf")
    assert torch.isfinite(ra.FLAME(f=3)(x)).all()
