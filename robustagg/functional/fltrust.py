"""FLTrust (Cao, Fang, Liu, Gong, NDSS 2021)."""
from __future__ import annotations

import torch

from ._checks import as_matrix
from ._rowstats import row_dots, sq_norms, weighted_sum


def fltrust(x: torch.Tensor, server_grad: torch.Tensor, return_weights: bool = False):
    r"""FLTrust: trust scores from the cosine similarity to the server's own gradient
    :math:`g_0` (computed on a small clean root dataset), magnitudes normalised to
    :math:`\lVert g_0\rVert`,

    .. math:: TS_i = \mathrm{ReLU}(\cos(x_i, g_0)),\quad
              \bar x_i = \frac{\lVert g_0\rVert}{\lVert x_i\rVert} x_i,\quad
              \text{out} = \frac{1}{\sum_j TS_j}\sum_i TS_i\,\bar x_i.

    ``x: Tensor[n, d]``, ``server_grad: Tensor[d]`` → ``Tensor[d]`` (and the weights
    :math:`TS_i \lVert g_0\rVert / (\lVert x_i\rVert \sum_j TS_j)`, float64 ``[n]``, when
    ``return_weights``); any n ≥ 1 and any number of Byzantine workers (the trust comes from
    the server). Cao, Fang, Liu, Gong, "FLTrust: Byzantine-robust federated learning via trust
    bootstrapping", NDSS 2021 (its trust score, magnitude normalisation and aggregation).

    Conventions: a zero or non-finite vector has trust 0; when every trust score is 0 the
    result is the zero vector (no step; FLPoison averages every normalised vector instead,
    letting the Byzantine ones in with full weight); a zero or non-finite ``server_grad`` is a
    ``ValueError``. Cost: two float64 passes over n·d values (norms and inner products with
    g_0) and one weighted sum.
    """
    rule = "FLTrust"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    d = x.shape[1]
    if not isinstance(server_grad, torch.Tensor) or tuple(server_grad.shape) != (d,):
        got = tuple(server_grad.shape) if isinstance(server_grad, torch.Tensor) else server_grad
        raise ValueError(f"{rule}: server_grad must be a Tensor[{d}], got {got!r}")
    g0 = server_grad.to(x.device)
    g0_sq = float(g0.double().pow(2).sum())
    if not (g0_sq > 0 and g0_sq < float("inf")):
        raise ValueError(f"{rule}: server_grad must be finite and non-zero, got norm^2={g0_sq}")
    sq = sq_norms(x)
    dots = row_dots(x, g0)
    ok = torch.isfinite(sq) & (sq > 0)
    norms = torch.where(ok, sq, torch.ones_like(sq)).sqrt()
    g0_norm = g0_sq ** 0.5
    trust = torch.where(ok, (dots / (norms * g0_norm)).clamp(min=0.0), torch.zeros_like(sq))
    total = trust.sum()  # a tensor: with x's graph, the normalisation is differentiated too
    w = trust * g0_norm / norms / total if float(total.detach()) > 0 else torch.zeros_like(trust)
    out = weighted_sum(x, w).to(dtype)
    return (out, w) if return_weights else out
