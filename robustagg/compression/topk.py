"""``topk``: each worker keeps its k coordinates of largest magnitude (exact)."""
from __future__ import annotations

import torch

from .base import Compressor, check_vector, register_compressor
from .row import SparseRow


def topk_indices(a: torch.Tensor, k: int) -> torch.Tensor:
    """Coordinates of the k largest entries of ``a`` (ties broken by ``torch.topk``), increasing."""
    return torch.topk(a, k, sorted=False).indices.sort().values


@register_compressor("topk")
class TopK(Compressor):
    """Top-k sparsification (Aji & Heafield, "Sparse Communication for Distributed Gradient
    Descent", EMNLP 2017; Stich, Cordonnier & Jaggi, "Sparsified SGD with Memory", NeurIPS
    2018): ``C(g)_j = g_j`` for the k coordinates j of largest ``|g_j|``, else 0. Per-worker
    masks: the indices travel with the values (8 bytes per entry below d = 2^31)."""

    def compress(self, g, mask=None):
        g = check_vector(g, "topk")
        idx = topk_indices(g.abs(), self.k(g.numel()))
        return SparseRow.of(g[idx], idx, g.numel())
