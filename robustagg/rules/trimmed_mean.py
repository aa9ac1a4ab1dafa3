from .. import functional as F
from .registry import register_rule
from .streamed import StreamedRule


@register_rule("trimmed_mean")
class TrimmedMean(StreamedRule):
    """Coordinate-wise f-trimmed mean (n ≥ 2f + 1); ``device``/``chunk_columns``: where it is
    computed (see :class:`StreamedRule`). See :func:`robustagg.functional.trimmed_mean`."""

    bound = (2, 1)

    def aggregate(self, x):
        return F.trimmed_mean(x, self.f, **self.stream)
