"""SignGuard against its three steps written with loops (Xu et al., ICDCS 2022); the clustering
itself is scikit-learn's mean shift, called here directly."""
import math
import statistics

import numpy as np
import pytest
import torch
from sklearn.cluster import MeanShift, estimate_bandwidth

import robustagg as ra

pytestmark = pytest.mark.filterwarnings("ignore:Binning data failed")

from .reference import KINDS, make_inputs, norm, rows


def reference(x, seed, lower=0.1, upper=3.0, frac=0.1):
    r = rows(x)
    n, d = len(r), len(r[0])
    norms = [norm(v) if all(math.isfinite(u) for u in v) else math.inf for v in r]
    med = statistics.median(norms)
    s1 = {i for i in range(n) if lower * med <= norms[i] <= upper * med}
    m = max(1, math.ceil(frac * d))
    cols = torch.randperm(d, generator=torch.Generator().manual_seed(seed))[:m].sort().values
    feats = np.array([[sum(r[i][k] > 0 for k in cols.tolist()) / m,
                       sum(r[i][k] == 0 for k in cols.tolist()) / m,
                       sum(r[i][k] < 0 for k in cols.tolist()) / m] for i in range(n)])
    top = feats.max(axis=0)
    feats = feats / np.where(top > 0, top, 1)
    bw = estimate_bandwidth(feats, quantile=0.5, n_samples=min(50, n), random_state=0,
                            n_jobs=1) if n > 1 else 0.0
    if bw > 0:
        labels = list(MeanShift(bandwidth=bw, bin_seeding=True, cluster_all=False, n_jobs=1)
                      .fit(feats).labels_)
    else:
        labels = [[tuple(f) for f in feats].index(tuple(f)) for f in feats]
    sizes = {lab: labels.count(lab) for lab in labels if lab >= 0}
    best = max(sizes.values(), default=0)
    winner = next((lab for lab in labels if sizes.get(lab) == best), None)
    keep = sorted(i for i in s1 if labels[i] == winner)
    if not keep:
        return torch.zeros(d, dtype=torch.float64), keep
    out = [sum(r[i][k] * min(1.0, med / norms[i]) if norms[i] > 0 else r[i][k] for i in keep)
           / len(keep) for k in range(d)]
    return torch.tensor(out, dtype=torch.float64), keep


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, pytest.param(5, marks=pytest.mark.slow), 9])
@pytest.mark.parametrize("d", [1, pytest.param(7, marks=pytest.mark.slow), 17,
                               pytest.param(4097, marks=pytest.mark.slow)])
def test_matches_reference(kind, n, d):
    x = make_inputs(kind, n, d, n + d)
    if n >= 5:  # two attackers: large norms, flipped signs
        x[: 2] = -10 * x[: 2].abs()
    rule = ra.SignGuard(seed=3)
    out = rule(x)
    expected, keep = reference(x, 3)
    assert rule.selected.tolist() == keep
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)


def test_filters_attackers_and_seeded():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 500, generator=g) + 0.5
    x[0] *= 50                       # norm far above the median
    x[1] = -x[1].abs()               # all-negative signs
    rule = ra.SignGuard(f=2, seed=0)
    out = rule(x)
    assert not {0, 1} & set(rule.selected.tolist())
    rule.reset()
    assert torch.equal(rule(x), out)
    with pytest.raises(ValueError, match="coordinate_fraction must be in"):
        ra.SignGuard(coordinate_fraction=0)
