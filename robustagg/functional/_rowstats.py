"""Per-row statistics in float64 for the rules that weigh, clip or compare vectors by angle:
row inner products in one pass over n·d values, and inner products, cosines and centred Gram
matrices derived from the squared distances of :func:`robustagg.kernels.pairwise_sq_distances`
(so the O(n²·d) part runs on the native kernel)."""
from __future__ import annotations

import torch

# float64 copies of at most this many values at a time (32 MiB): the passes stay O(n·d) in time
# without doubling the memory of a large input.
_BLOCK_VALUES = 1 << 22


def row_dots(x: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
    r"""float64 ``[n]``: :math:`\langle x_i, v\rangle` (``v: Tensor[d]``), or
    :math:`\lVert x_i\rVert^2` when ``v`` is None, summed in float64 over column blocks.
    A row with NaN gives NaN, one with ±Inf gives ±Inf or NaN."""
    n, d = x.shape
    width = max(1, _BLOCK_VALUES // max(n, 1))
    out = torch.zeros(n, dtype=torch.float64, device=x.device)
    for s in range(0, d, width):
        block = x[:, s:s + width].double()
        other = block if v is None else v[s:s + width].to(device=x.device, dtype=torch.float64)
        out += (block * other).sum(dim=1)
    return out


def sq_distances_to(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""float64 ``[n]``: :math:`\lVert x_i - v\rVert^2` by direct differences (no cancellation
    for rows near ``v``, unlike the expansion through norms and inner products), summed in
    float64 over column blocks; +inf for a row with NaN or ±Inf (``v`` must be finite)."""
    n, d = x.shape
    width = max(1, _BLOCK_VALUES // max(n, 1))
    out = torch.zeros(n, dtype=torch.float64, device=x.device)
    for s in range(0, d, width):
        diff = x[:, s:s + width].double() - v[s:s + width].to(device=x.device,
                                                              dtype=torch.float64)
        out += (diff * diff).sum(dim=1)
    return torch.where(torch.isnan(out), torch.full_like(out, float("inf")), out)


def sq_norms(x: torch.Tensor) -> torch.Tensor:
    """float64 ``[n]`` squared norms; +inf for a row with NaN or ±Inf (a sum of squares is
    finite only if every entry is, so no entry-wise check is needed)."""
    out = row_dots(x)
    return torch.where(torch.isfinite(out), out, torch.full_like(out, float("inf")))


def gram_from_distances(distances: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    r""":math:`\langle x_i, x_j\rangle = (\lVert x_i\rVert^2 + \lVert x_j\rVert^2 - D_{ij})/2`
    (float64 ``[n, n]``) from squared distances and squared norms of finite rows."""
    return (sq[:, None] + sq[None, :] - distances) * 0.5


def cosines(distances: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    """Cosine similarities (float64 ``[n, n]``, clamped to [-1, 1]) of finite rows; a pair with
    a zero or non-finite row has cosine 0 (no direction to compare)."""
    ok = torch.isfinite(sq) & (sq > 0)
    safe_sq = torch.where(ok, sq, torch.ones_like(sq))
    safe_d = torch.where(ok[:, None] & ok[None, :], distances, torch.zeros_like(distances))
    cos = gram_from_distances(safe_d, safe_sq) / torch.sqrt(safe_sq[:, None] * safe_sq[None, :])
    cos = cos.clamp(-1.0, 1.0)
    return torch.where(ok[:, None] & ok[None, :], cos, torch.zeros_like(cos))


def centred_gram(distances: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    r"""Inner products of the rows centred on their weighted mean :math:`\mu = \sum_k w_k x_k`
    (``w``: float64 ``[n]`` summing to 1), from squared distances alone:
    :math:`\langle x_i-\mu, x_j-\mu\rangle = (r_i + r_j - D_{ij})/2` with
    :math:`r_i = \lVert x_i - \mu\rVert^2 = \sum_k w_k D_{ik} - \tfrac12 \sum_{k,l} w_k w_l D_{kl}`.
    ``distances``: float64 ``[..., n, n]`` (finite), ``w``: ``[..., n]``."""
    row = (distances * w[..., None, :]).sum(dim=-1)
    r = row - 0.5 * (row * w).sum(dim=-1, keepdim=True)
    return (r[..., :, None] + r[..., None, :] - distances) * 0.5


def weighted_sum(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_i w_i x_i` over the rows with :math:`w_i \ne 0` only (so a non-finite row of
    weight 0 contributes nothing), in x's dtype; ``w``: float64 ``[n]``."""
    rows = (w != 0).nonzero().squeeze(1)
    if rows.numel() == 0:
        return torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
    sel = x.index_select(0, rows.to(x.device))
    return (w[rows].to(device=x.device, dtype=x.dtype)[None, :] @ sel).squeeze(0)
