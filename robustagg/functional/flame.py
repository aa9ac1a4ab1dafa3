"""FLAME (Nguyen et al., USENIX Security 2022)."""
from __future__ import annotations

import torch

from .. import kernels
from ._clustering import sklearn_cluster
from ._checks import as_matrix, finite_rows
from ._graph import median_tensor
from ._rowstats import cosines, sq_norms, weighted_sum


def _admitted(dist: torch.Tensor, n: int) -> torch.Tensor:
    """Bool [m]: the members of the HDBSCAN cluster of at least n // 2 + 1 vectors."""
    m = dist.shape[0]
    size = n // 2 + 1
    if m < size:
        return torch.zeros(m, dtype=torch.bool)
    if m == 1:  # n = 1: the one vector is the majority
        return torch.ones(1, dtype=torch.bool)
    hdbscan = sklearn_cluster("FLAME").HDBSCAN
    labels = hdbscan(min_cluster_size=max(size, 2), min_samples=1, metric="precomputed",
                     allow_single_cluster=True, copy=True).fit(dist.numpy()).labels_
    return torch.from_numpy(labels >= 0)


def flame(x: torch.Tensor, generator: torch.Generator, noise: float = 0.001,
          return_selected: bool = False):
    r"""FLAME: admit the majority cluster of cosine distances, clip to the median norm, average,
    add Gaussian noise.

    1. HDBSCAN on :math:`c_{ij} = 1 - \cos(x_i, x_j)` with ``min_cluster_size`` = n/2 + 1
       (integer division), ``min_samples`` = 1 and a single cluster allowed: the admitted set
       A is that cluster (the others are outliers).
    2. :math:`S = \mathrm{med}_i \lVert x_i\rVert` over all n vectors.
    3. :math:`\frac{1}{|A|}\sum_{i\in A} x_i \min(1, S/\lVert x_i\rVert) + \mathcal N(0,
       (\lambda S)^2 I)`, λ = ``noise`` (the paper's 0.001 for image classification), drawn
       from ``generator`` (CPU).

    ``x: Tensor[n, d]`` → ``Tensor[d]`` (and A, ascending, when ``return_selected``);
    assumes fewer than n/2 malicious vectors. Nguyen et al., "FLAME: taming backdoors in
    federated learning", USENIX Security 2022, Algorithm 1 (clustering, adaptive clipping,
    adaptive noising). scikit-learn's HDBSCAN does the clustering (imported on first use).

    robustagg aggregates gradients (updates), so the cosine distances and norms are those of
    the updates :math:`W_i - G`, as in FLPoison's FLAME; the paper clusters the local models
    :math:`W_i` and clips :math:`W_i - G`. FLPoison scales the noise by each layer's standard
    deviation; here σ = λS on every coordinate, as in the paper. Conventions: a vector with a
    NaN or ±Inf entry is never admitted and has norm +inf in the median; when nothing is
    admitted the result is the noise alone around zero (no step). Cost: one native distance
    pass (the cosines come from the distances and norms), one norm pass, one weighted sum.
    """
    rule = "FLAME"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    n, d = x.shape
    if not (isinstance(noise, (int, float)) and noise >= 0):
        raise ValueError(f"{rule}: noise must be >= 0, got noise={noise!r}")
    finite = finite_rows(x).cpu()
    sq = sq_norms(x).cpu()  # with x's graph when it has one: the clipping follows x
    norms = sq.sqrt()
    idx = finite.nonzero().squeeze(1)
    dist = 1.0 - cosines(kernels.pairwise_sq_distances(x).cpu(), sq.detach())[idx][:, idx]
    selected = idx[_admitted(dist.clamp_min(0.0), n)]
    s = median_tensor(norms)
    w = torch.zeros(n, dtype=torch.float64)
    if selected.numel():
        w[selected] = (s / norms[selected]).clamp(max=1.0).nan_to_num(1.0) / selected.numel()
    out = weighted_sum(x, w)
    if noise > 0 and float(s.detach()) > 0:
        out = out + (torch.randn(d, generator=generator, dtype=torch.float64) * (noise * s)).to(
            device=x.device, dtype=x.dtype)
    out = out.to(dtype)
    return (out, selected) if return_selected else out
