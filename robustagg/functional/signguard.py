"""SignGuard (Xu, Huang, Zhang, Xiong, ICDCS 2022)."""
from __future__ import annotations

import math

import numpy as np
import torch

from ._clustering import median, sklearn_cluster
from ._checks import as_matrix, check_bound, check_f, check_positive, finite_rows
from ._rowstats import sq_norms, weighted_sum


def _largest_cluster(features: np.ndarray) -> np.ndarray:
    """Bool [n]: the members of the most populous mean-shift cluster of ``features`` (ties: the
    cluster of the lowest index; points mean shift leaves unclustered are never members)."""
    import warnings

    cluster = sklearn_cluster("SignGuard")
    n = len(features)
    # n_jobs=1: a handful of 3-d points; a worker pool would cost more than the clustering
    bandwidth = cluster.estimate_bandwidth(features, quantile=0.5, n_samples=min(50, n),
                                   random_state=0, n_jobs=1) if n > 1 else 0.0
    if bandwidth > 0:
        with warnings.catch_warnings():  # few points: sklearn seeds from the points, and says so
            warnings.filterwarnings("ignore", message="Binning data failed")
            labels = cluster.MeanShift(bandwidth=bandwidth, bin_seeding=True, cluster_all=False,
                               n_jobs=1).fit(features).labels_
    else:  # most points coincide: the clusters are the groups of identical features
        labels = np.unique(features, axis=0, return_inverse=True)[1].reshape(-1)
    best, best_size = None, 0
    for i in range(n):  # first index of each cluster, in index order: ties go to the lowest
        lab = labels[i]
        size = int((labels == lab).sum())
        if lab >= 0 and size > best_size:
            best, best_size = lab, size
    return labels == best if best is not None else np.zeros(n, dtype=bool)


def signguard(x: torch.Tensor, generator: torch.Generator, lower: float = 0.1,
              upper: float = 3.0, coordinate_fraction: float = 0.1,
              return_selected: bool = False):
    r"""SignGuard: norm filter, sign-statistics clustering, then the mean of the survivors
    clipped to the median norm.

    1. :math:`M = \mathrm{med}_i \lVert x_i\rVert`, :math:`S_1 = \{i : L M \le \lVert x_i\rVert
       \le R M\}` (L = ``lower``, R = ``upper``).
    2. On ⌈``coordinate_fraction``·d⌉ random coordinates (from ``generator``), each vector's
       fractions of positive, zero and negative entries, each feature divided by its largest
       value over the vectors; mean-shift clustering of these 3-d points (bandwidth estimated
       at quantile 0.5); :math:`S_2` = the most populous cluster.
    3. :math:`\frac{1}{|S|}\sum_{i \in S} x_i \min(1, M/\lVert x_i\rVert)`, :math:`S = S_1\cap S_2`.

    ``x: Tensor[n, d]`` → ``Tensor[d]`` (and S, ascending, when ``return_selected``); the rule
    assumes an honest majority (n ≥ 2f + 1). Xu, Huang, Zhang, Xiong, "SignGuard:
    Byzantine-robust federated learning through collaborative malicious gradient filtering",
    ICDCS 2022 (arXiv:2109.05872), Algorithm 1, with the paper's L = 0.1, R = 3, 10% of the
    coordinates and mean shift. scikit-learn does the clustering (imported on first use).

    Differences from the peers, on purpose: fedlib/Blades clusters all coordinates with
    k-means into two clusters and clips before the norm test, so its upper bound R never
    removes anything; FLPoison draws a contiguous run of coordinates and defaults to DBSCAN.
    Conventions: a vector with a NaN or ±Inf entry has norm +inf and fails the norm filter;
    an empty S gives the zero vector (no step). Cost: a float64 norm pass over n·d values, a
    pass over the sampled coordinates, and the weighted sum.
    """
    rule = "SignGuard"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    n, d = x.shape
    check_positive(lower, rule, "lower")
    check_positive(upper, rule, "upper")
    if not 0 < coordinate_fraction <= 1:
        raise ValueError(f"{rule}: coordinate_fraction must be in (0, 1], "
                         f"got coordinate_fraction={coordinate_fraction!r}")
    norms = sq_norms(x).sqrt().cpu()
    med = median(norms)
    s1 = (norms >= lower * med) & (norms <= upper * med)
    m = max(1, math.ceil(coordinate_fraction * d))
    cols = torch.randperm(d, generator=generator)[:m].sort().values
    sub = x.index_select(1, cols.to(x.device))
    feats = torch.stack([(sub > 0).sum(1), (sub == 0).sum(1), (sub < 0).sum(1)], dim=1)
    feats = (feats.double() / m).cpu()
    top = feats.max(dim=0).values
    feats = feats / torch.where(top > 0, top, torch.ones_like(top))
    s2 = torch.from_numpy(_largest_cluster(feats.numpy()))
    selected = (s1 & s2 & finite_rows(x).cpu()).nonzero().squeeze(1)
    w = torch.zeros(n, dtype=torch.float64)
    if selected.numel():
        w[selected] = (med / norms[selected]).clamp(max=1.0).nan_to_num(1.0) / selected.numel()
    out = weighted_sum(x, w).to(dtype)
    return (out, selected) if return_selected else out
