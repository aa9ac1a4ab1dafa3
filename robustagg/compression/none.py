"""``none``: the dense gradient, as without compression."""
from __future__ import annotations

import torch

from .base import Compressor, check_vector, register_compressor
from .row import SparseRow


@register_compressor("none")
class NoCompression(Compressor):
    """Sends all d coordinates (``ratio`` is 1). The training loop then takes its dense path;
    :meth:`compress` gives the full row, indices included, for callers that want one form."""

    def __init__(self):
        super().__init__(ratio=1.0)

    def compress(self, g, mask=None):
        g = check_vector(g, "none")
        return SparseRow.of(g, torch.arange(g.numel()), g.numel())

    def settings(self):
        return {}
