"""Blades' chain attack on ClippedClustering, against the formula written with numpy."""
import math

import numpy as np
import pytest
import torch
from sklearn.cluster import AgglomerativeClustering

import robustagg as ra
from attacks import AdaptiveClippedClustering


def reference(x, f):
    h = len(x)
    mu = x.mean(axis=0)

    def cd(a, b):
        return 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))

    dist = np.array([[cd(x[i], x[j]) if i != j else 0.0 for j in range(h)] for i in range(h)])
    labels = AgglomerativeClustering(n_clusters=2, metric="precomputed",
                                     linkage="single").fit(dist.clip(min=0)).labels_
    theta_cross = math.acos(1 - min(dist[i, j] for i in range(h) for j in range(h) if i != j))
    theta_cross -= 0.1
    flag = 1 if labels.sum() > h // 2 else 0
    group = [x[i] for i in range(h) if labels[i] == flag]
    to_mean = [cd(v, mu) for v in group]
    k = int(np.argmax(to_mean))
    theta = math.acos(1 - to_mean[k])
    m = group[k] / np.linalg.norm(group[k])
    rows = []
    for _ in range(f):
        if theta + theta_cross >= math.pi:
            m = -10 * mu
        else:
            t = theta + theta_cross - 1e-4
            a = math.cos(t) - math.sin(t) / math.tan(theta)
            b = math.cos(theta_cross - 1e-4) + math.sin(theta_cross - 1e-4) / math.tan(theta)
            m = 10 * (a * mu / np.linalg.norm(mu) + b * m)
            theta = t
        rows.append(m)
    return np.stack(rows)


def test_matches_formula():
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        x = (torch.randn(9, 30, generator=g) + 0.4).double()
        out = AdaptiveClippedClustering()(x, 3)
        np.testing.assert_allclose(out.numpy(), reference(x.numpy(), 3), rtol=1e-9, atol=1e-9)


def test_first_link_is_a_rotation_of_norm_ten_and_the_chain_grows():
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(10, 50, generator=g) * 0.2 + 1.0).double()
    out = AdaptiveClippedClustering()(x, 3)
    assert float(out[0].norm()) == pytest.approx(10.0)
    assert torch.isfinite(out).all() and not torch.equal(out[1], out[2])
    assert isinstance(ra.ClippedClustering(f=3)(torch.cat([x, out])), torch.Tensor)


def test_degenerate_direction_sends_minus_ten_mu():
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    out = AdaptiveClippedClustering()(x, 2)
    assert torch.equal(out, torch.tensor([[-20.0, 0.0], [-20.0, 0.0]]))
