"""``topk_shared``: the server's own aggregates choose the round's mask, the same for everyone."""
from __future__ import annotations

import torch

from .base import Compressor, check_vector, mask_seed, register_compressor
from .row import SparseRow
from .topk import topk_indices


@register_compressor("topk_shared")
class TopKShared(Compressor):
    """A global top-k mask chosen by the server: round t's mask is the ``k - r`` coordinates of
    largest ``|a_j|``, where ``a`` holds, per coordinate, the last aggregate value the server
    computed there (the whole aggregate when it is dense, as with error feedback), plus
    ``r = round(explore·k)`` coordinates drawn at random (seed ``mask_seed(seed, t)``) among
    the others. Round 0, with no aggregate yet, is all random.

    The random share is needed: an aggregate on a mask is zero elsewhere, so a mask taken from
    it alone could never leave the coordinates it started with. The mask depends on aggregates
    only, which the Byzantine workers influence no more than the rule lets them; it resembles
    the leader-chosen common masks of ScaleCom (Chen et al., NeurIPS 2020) with the robust
    aggregate as the leader.
    """

    shared = True

    def __init__(self, ratio: float = 0.01, error_feedback: bool = False, seed: int = 0,
                 explore: float = 0.5, residual: bool = False):
        super().__init__(ratio, error_feedback, seed, residual)
        if not 0 <= explore <= 1:
            raise ValueError(f"TopKShared: explore must be in [0, 1], got {explore!r}")
        self.explore = float(explore)
        self.memory: torch.Tensor | None = None  # a: last aggregate value per coordinate

    def settings(self):
        return {**super().settings(), "explore": self.explore}

    def round_mask(self, round, d):  # noqa: A002
        k = self.k(d)
        top = torch.empty(0, dtype=torch.long)
        if self.memory is not None:
            a = torch.nan_to_num(self.memory.abs(), nan=0.0, posinf=0.0)
            top = topk_indices(a, k - round_explore(self.explore, k))
        taken = torch.zeros(d, dtype=torch.bool)
        taken[top] = True
        g = torch.Generator().manual_seed(mask_seed(self.seed, round))
        perm = torch.randperm(d, generator=g)
        rest = perm[~taken[perm]][: k - top.numel()]
        return torch.cat([top, rest]).sort().values

    def observe(self, aggregate, mask):
        if self.memory is None:
            self.memory = torch.zeros_like(aggregate)
        if mask is None:
            self.memory.copy_(aggregate)
        else:
            self.memory[mask] = aggregate[mask]

    def compress(self, g, mask=None):
        g = check_vector(g, "topk_shared")
        if mask is None:
            raise ValueError("topk_shared: compress needs the round's mask")
        return SparseRow.of(g[mask], None, g.numel())


def round_explore(explore: float, k: int) -> int:
    """Random coordinates in a mask of k: ``round(explore·k)``, at least 1 when explore > 0
    and k > 1, so that the mask can move."""
    r = round(explore * k)
    return min(k, max(r, 1 if explore > 0 and k > 1 else 0))
