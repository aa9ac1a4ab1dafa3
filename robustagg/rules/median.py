from .. import functional as F
from .registry import register_rule
from .streamed import StreamedRule


@register_rule("median", "coordinate_median")
class CoordinateMedian(StreamedRule):
    """Coordinate-wise median (n ≥ 2f + 1 when f is given); ``device``/``chunk_columns``: where
    it is computed (see :class:`StreamedRule`). See
    :func:`robustagg.functional.coordinate_median`."""

    bound = (2, 1)

    def aggregate(self, x):
        return F.coordinate_median(x, **self.stream)
