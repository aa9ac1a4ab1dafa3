"""``randk_shared``: one random mask per round, the same for every worker."""
from __future__ import annotations

from .base import Compressor, check_vector, mask_seed, random_mask, register_compressor
from .row import SparseRow


@register_compressor("randk_shared")
class RandKShared(Compressor):
    """Rand-k with a global mask, as in RoSDHB (Gupta, Honsell, Xu, Gupta & Neglia,
    "Reconciling Communication Compression and Byzantine-Robustness in Distributed Learning",
    arXiv 2508.17129, 2025): in round t every worker sends ``g[M_t]``, where ``M_t`` is k
    coordinates drawn uniformly without replacement from the seed ``mask_seed(seed, t)`` that
    the server publishes. No scaling by d/k: the step is a block-coordinate step on M_t (the
    unscaled rand-k, a contractive compressor with ``E‖C(g) - g‖² = (1 - k/d)‖g‖²``).

    All workers share the coordinates, so the values alone travel (4 bytes per entry) and a
    rule compares workers on the same k coordinates: it runs on the ``[n, k]`` sub-matrix.
    """

    shared = True

    def round_mask(self, round, d):  # noqa: A002
        return random_mask(mask_seed(self.seed, round), d, self.k(d))

    def compress(self, g, mask=None):
        g = check_vector(g, "randk_shared")
        if mask is None:
            raise ValueError("randk_shared: compress needs the round's mask")
        return SparseRow.of(g[mask], None, g.numel())
