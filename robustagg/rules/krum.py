from .. import functional as F
from .registry import register_rule
from .streamed import StreamedRule


@register_rule("krum")
class Krum(StreamedRule):
    """Krum (n ≥ 2f + 3); ``selected`` holds the chosen index. ``device``/``chunk_columns``:
    where the distances are computed (see :class:`StreamedRule`). See
    :func:`robustagg.functional.krum`."""

    bound = (2, 3)

    def aggregate(self, x):
        out, self.selected = F.krum(x, self.f, return_selected=True, **self.stream)
        return out


@register_rule("multi_krum", "multikrum")
class MultiKrum(StreamedRule):
    """Multi-Krum (n ≥ 2f + 3, 1 ≤ m ≤ n, m = n - f by default); ``selected`` holds the m
    averaged indices. ``device``/``chunk_columns``: as for :class:`Krum`. See
    :func:`robustagg.functional.multi_krum`."""

    bound = (2, 3)

    def __init__(self, f: int = 0, m: int | None = None, device: str | None = None,
                 chunk_columns: int | None = None):
        super().__init__(f, device, chunk_columns)
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ValueError(f"MultiKrum needs m >= 1 (or None for n - f), got m={m!r}")
        self.m = m

    def check(self, n):
        super().check(n)
        if self.m is not None and self.m > n:
            raise ValueError(f"MultiKrum needs m <= n, got m={self.m}, n={n}")

    def aggregate(self, x):
        out, self.selected = F.multi_krum(x, self.f, self.m, return_selected=True, **self.stream)
        return out

    def _settings(self):
        return {**super()._settings(), "m": self.m}
