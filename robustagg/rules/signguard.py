import torch

from .. import functional as F
from ..functional._checks import check_positive
from .base import Rule
from .registry import register_rule


@register_rule("signguard")
class SignGuard(Rule):
    """SignGuard (honest majority, n ≥ 2f + 1 when f is given); ``selected`` holds the averaged
    indices. The sampled coordinates come from a generator seeded by ``seed`` (same seed, same
    coordinates round after round; :meth:`reset` rewinds it). See
    :func:`robustagg.functional.signguard`."""

    bound = (2, 1)

    def __init__(self, f: int = 0, lower: float = 0.1, upper: float = 3.0,
                 coordinate_fraction: float = 0.1, seed: int = 0):
        super().__init__(f)
        self.lower = check_positive(lower, "SignGuard", "lower")
        self.upper = check_positive(upper, "SignGuard", "upper")
        if not (isinstance(coordinate_fraction, (int, float)) and 0 < coordinate_fraction <= 1):
            raise ValueError(f"SignGuard: coordinate_fraction must be in (0, 1], "
                             f"got {coordinate_fraction!r}")
        self.coordinate_fraction, self.seed = float(coordinate_fraction), seed
        self.reset()

    def aggregate(self, x):
        out, self.selected = F.signguard(x, self.generator, self.lower, self.upper,
                                         self.coordinate_fraction, return_selected=True)
        return out

    def reset(self):
        super().reset()
        self.generator = torch.Generator().manual_seed(self.seed)

    def _settings(self):
        return {"f": self.f, "lower": self.lower, "upper": self.upper,
                "coordinate_fraction": self.coordinate_fraction, "seed": self.seed}
