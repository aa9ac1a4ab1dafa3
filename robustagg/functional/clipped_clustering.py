"""Clipped clustering (Li, Ngai, Voigt, IEEE Transactions on Big Data 2023; fedlib/Blades)."""
from __future__ import annotations

import torch

from .. import kernels
from ._clustering import sklearn_cluster
from ._checks import as_matrix, finite_rows
from ._graph import median_tensor
from ._rowstats import cosines, sq_norms, weighted_sum


def clipped_clustering(x: torch.Tensor, history: torch.Tensor | None = None,
                       max_tau: float = 1e5, return_details: bool = False):
    r"""Clipped clustering: clip every vector to the median of all norms seen so far, split the
    vectors in two by agglomerative clustering (average linkage) on cosine distance, and
    average the larger group.

    .. math:: \tau = \min(\mathrm{med}(\text{norms so far}), \tau_{\max}),\quad
              y_i = x_i \min(1, \tau/\lVert x_i\rVert),\quad
              \text{out} = \frac{1}{|G|}\sum_{i\in G} y_i,

    G the larger of the two clusters of the distances :math:`1 - \cos(x_i, x_j)` (clipping does
    not change a cosine). ``history``: float64 ``[m]`` norms of earlier rounds (None: none);
    this round's finite norms join them before the median. ``x: Tensor[n, d]`` → ``Tensor[d]``
    (with ``return_details``: ``(out, G, norms)``, G ascending and norms this round's finite
    norms, float64, for the caller's history); assumes an honest majority. Li, Ngai, Voigt,
    "An experimental study of Byzantine-robust aggregation schemes in federated learning",
    IEEE Transactions on Big Data 2023 (the ClippedClustering of fedlib/Blades, with its
    ``max_tau = 1e5``). scikit-learn does the clustering (imported on first use).

    Conventions, where Blades leaves room or differs: of two clusters of equal size the one
    holding the lowest index is taken (Blades takes sklearn's label 0); a vector with a NaN or
    ±Inf entry is left out of the clustering and of the history (Blades gives it distance 2
    and lets its norm into the median); a zero vector has cosine 0 with every other. Cost: one
    native distance pass (the cosines come from the distances and the norms), one norm pass,
    one weighted sum.
    """
    rule = "ClippedClustering"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    n = x.shape[0]
    finite = finite_rows(x).cpu()
    sq = sq_norms(x).cpu()  # with x's graph when it has one: tau and the scales follow x
    norms = sq.sqrt()
    seen = norms[finite] if history is None else torch.cat([history.double().cpu(),
                                                            norms[finite]])
    tau = median_tensor(seen).clamp(max=float(max_tau)) if seen.numel() else \
        torch.tensor(float(max_tau), dtype=torch.float64)
    idx = finite.nonzero().squeeze(1)
    if idx.numel() >= 2:
        dist = 1.0 - cosines(kernels.pairwise_sq_distances(x).cpu(), sq.detach())[idx][:, idx]
        labels = torch.from_numpy(sklearn_cluster(rule).AgglomerativeClustering(
            n_clusters=2, metric="precomputed", linkage="average").fit(
                dist.clamp_min(0.0).numpy()).labels_)
        size1 = int(labels.sum())
        size0 = len(labels) - size1
        pick = int(labels[0]) if size0 == size1 else int(size1 > size0)
        selected = idx[labels == pick]
    else:
        selected = idx
    w = torch.zeros(n, dtype=torch.float64)
    if selected.numel():
        w[selected] = (tau / norms[selected]).clamp(max=1.0).nan_to_num(1.0) / selected.numel()
    out = weighted_sum(x, w).to(dtype)
    return (out, selected, norms.detach()[finite]) if return_details else out
