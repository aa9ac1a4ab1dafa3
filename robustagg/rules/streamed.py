"""Rules whose kernels can stream x through another device (:mod:`robustagg.streaming`)."""
from __future__ import annotations

from .. import streaming
from .base import Rule


class StreamedRule(Rule):
    """A :class:`Rule` with the ``device`` and ``chunk_columns`` settings of its functional form:
    ``device=None`` computes where x lives; another device computes there, streaming x through
    it in column chunks (``chunk_columns`` wide; None sizes them from free memory). The result
    is on x's device. ``device`` is a device string (``"cuda"``, ``"cuda:1"``, ``"cpu"``) or a
    ``torch.device``; experiments set it as ``rule.device=cuda``. Both are checked here, when
    the rule is built."""

    def __init__(self, f: int = 0, device: str | None = None, chunk_columns: int | None = None):
        super().__init__(f)
        streaming.check_settings(device, chunk_columns, type(self).__name__)
        self.device, self.chunk_columns = device, chunk_columns

    @property
    def stream(self) -> dict:
        """The keywords passed on to the functional form."""
        return {"device": self.device, "chunk_columns": self.chunk_columns}

    def _settings(self) -> dict:
        # only the settings in use, so the repr of a rule built without them is unchanged
        return {**super()._settings(), **{k: v for k, v in self.stream.items() if v is not None}}
