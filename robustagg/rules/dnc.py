import torch

from .. import functional as F
from ..functional._checks import check_positive
from .base import Rule
from .registry import register_rule


@register_rule("dnc")
class DnC(Rule):
    """Divide-and-conquer (n ≥ 2f + 1); ``selected`` holds the averaged indices. The random
    coordinates come from a generator seeded by ``seed``, so the same seed gives the same
    coordinates round after round; :meth:`reset` rewinds it. See
    :func:`robustagg.functional.dnc`."""

    bound = (2, 1)

    def __init__(self, f: int = 0, sub_dim: int = 10_000, n_iters: int = 5,
                 filter_frac: float = 1.0, seed: int = 0):
        super().__init__(f)
        self.sub_dim = check_positive(sub_dim, "DnC", "sub_dim", integer=True)
        self.n_iters = check_positive(n_iters, "DnC", "n_iters", integer=True)
        if not (isinstance(filter_frac, (int, float)) and 0 <= filter_frac <= 1):
            raise ValueError(f"DnC: filter_frac must be in [0, 1], got {filter_frac!r}")
        self.filter_frac, self.seed = float(filter_frac), seed
        self.reset()

    def aggregate(self, x):
        out, self.selected = F.dnc(x, self.f, self.generator, self.sub_dim, self.n_iters,
                                   self.filter_frac, return_selected=True)
        return out

    def reset(self):
        super().reset()
        self.generator = torch.Generator().manual_seed(self.seed)

    def _settings(self):
        return {"f": self.f, "sub_dim": self.sub_dim, "n_iters": self.n_iters,
                "filter_frac": self.filter_frac, "seed": self.seed}
