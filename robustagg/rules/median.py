from __future__ import annotations

from .. import functional as F
from .base import Weighted
from .registry import register_rule
from .streamed import StreamedRule


@register_rule("median", "coordinate_median")
class CoordinateMedian(Weighted, StreamedRule):
    """Coordinate-wise median (n ≥ 2f + 1 when f is given), the weighted median when called
    with ``weights`` (``max_weight_share`` caps one worker's share); ``device``/``chunk_columns``:
    where it is computed (see :class:`StreamedRule`). See
    :func:`robustagg.functional.coordinate_median`."""

    bound = (2, 1)

    def __init__(self, f: int = 0, device: str | None = None, chunk_columns: int | None = None,
                 max_weight_share: float | None = None):
        super().__init__(f, device, chunk_columns)
        self._set_share(max_weight_share)

    def aggregate(self, x, weights=None):
        return F.coordinate_median(x, **self.stream, weights=weights,
                                   max_weight_share=self.max_weight_share)
