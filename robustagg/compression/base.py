"""The Compressor interface and the name registry.

A compressor turns a worker's gradient ``g: Tensor[d]`` into a :class:`~.row.SparseRow` of
``k = k_of(ratio, d)`` entries. Two kinds:

- **per-worker masks** (``shared = False``: ``topk``, ``approx_topk``): each worker picks its
  own k coordinates and sends their indices with the values;
- **shared masks** (``shared = True``: ``randk_shared``, ``topk_shared``): the server picks one
  set of k coordinates per round (:meth:`Compressor.round_mask`) and publishes it with the
  parameters; every worker sends the values there only, and the rule can run on the
  ``[n, k]`` sub-matrix.

``none`` sends the dense gradient. On the worker a compressor object holds its settings and,
with ``residual``, what the worker has not sent yet (:meth:`Compressor.send`); on the server a
shared-mask compressor may keep what chooses the next mask (``topk_shared``).
"""
from __future__ import annotations

import hashlib

import torch

from .row import SparseRow

_COMPRESSORS: dict[str, type] = {}


def register_compressor(name: str):
    """Class decorator: make a :class:`Compressor` available as ``name``."""
    def deco(cls):
        if name in _COMPRESSORS and _COMPRESSORS[name] is not cls:
            raise ValueError(f"compressor {name!r} is already registered to "
                             f"{_COMPRESSORS[name].__name__}")
        _COMPRESSORS[name] = cls
        cls.name = name
        return cls
    return deco


def compressor(name: str, **kwargs) -> "Compressor":
    """The compressor registered as ``name``, built with ``kwargs``
    (``compressor("topk", ratio=0.01)``)."""
    if name not in _COMPRESSORS:
        raise ValueError(f"unknown compression {name!r}; available: "
                         f"{', '.join(available_compressors())}")
    return _COMPRESSORS[name](**kwargs)


def available_compressors() -> list[str]:
    return sorted(_COMPRESSORS)


def compressor_classes() -> dict[str, type]:
    """``name -> class`` of every registered compressor."""
    return dict(_COMPRESSORS)


def k_of(ratio: float, d: int) -> int:
    """Entries kept of a ``d``-vector at ``ratio = k/d``: ``round(ratio * d)``, at least 1."""
    return min(d, max(1, round(ratio * d)))


def mask_seed(seed: int, round: int) -> int:  # noqa: A002 - the training loop's word
    """The published seed of round ``round``'s random mask: 63 bits of
    SHA-256("mask/<seed>/<round>"), the same in every process."""
    digest = hashlib.sha256(f"mask/{seed}/{round}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def random_mask(seed: int, d: int, k: int) -> torch.Tensor:
    """k distinct coordinates of ``range(d)``, uniformly at random from ``seed``, increasing
    (int64)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(d, generator=g)[:k].sort().values


class Compressor:
    """Settings: ``ratio`` (k/d, in (0, 1]); ``error_feedback`` (EF21 memory on the server, see
    :mod:`.memory`; shared masks only); ``seed`` (randomness of masks and samples);
    ``residual`` (the worker keeps what it did not send, see :meth:`send`)."""

    name = "compressor"
    shared = False

    def __init__(self, ratio: float = 0.01, error_feedback: bool = False, seed: int = 0,
                 residual: bool = False):
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ValueError(f"{type(self).__name__}: ratio (k/d) must be in (0, 1], got "
                             f"ratio={ratio!r}")
        if not isinstance(error_feedback, bool):
            raise ValueError(f"{type(self).__name__}: error_feedback must be a bool, got "
                             f"{error_feedback!r}")
        if error_feedback and not self.shared:
            raise ValueError(
                f"{type(self).__name__}: error_feedback needs a shared mask (randk_shared, "
                f"topk_shared): with per-worker masks a stateless worker would need its memory "
                f"(d floats) sent with the parameters every round, which costs more than the "
                f"compression saves")
        if not isinstance(residual, bool):
            raise ValueError(f"{type(self).__name__}: residual must be a bool, got {residual!r}")
        if residual and error_feedback:
            raise ValueError(f"{type(self).__name__}: residual (error feedback on the worker) and "
                             f"error_feedback (EF21 on the server) are two ways to the same end; "
                             f"choose one")
        self.ratio, self.error_feedback, self.seed = float(ratio), error_feedback, int(seed)
        self.residual = residual
        self.kept: torch.Tensor | None = None  # with residual: what this worker has not sent

    def k(self, d: int) -> int:
        return k_of(self.ratio, d)

    def compress(self, g: torch.Tensor, mask: torch.Tensor | None = None) -> SparseRow:
        """``g: Tensor[d]`` (float32) as the message a worker sends; ``mask``: the round's
        shared coordinates (shared-mask compressors only)."""
        raise NotImplementedError

    def send(self, g: torch.Tensor, mask: torch.Tensor | None = None) -> SparseRow:
        """The message of a worker whose gradient is ``g: Tensor[d]``: ``compress(g, mask)``.

        With ``residual``, error feedback on the worker (Stich, Cordonnier & Jaggi, "Sparsified
        SGD with Memory", NeurIPS 2018, Algorithm 1; Karimireddy et al., "Error Feedback Fixes
        SignSGD", ICML 2019): the worker sends ``C(g + e)`` and keeps ``e <- g + e - C(g + e)``,
        so what it leaves out is delayed, not lost. Under a shared mask every worker's ``e`` on a
        coordinate holds its gradients since the coordinate was last in the mask: the same
        rounds for all, so the values the rule compares stay alike. ``e`` lives in this object,
        on the worker: a worker rebuilt from its spec (a restarted process) starts again
        from ``e = 0``.
        """
        if not self.residual:
            return self.compress(g, mask)
        # g + e in e's own storage (the messages' values are copies, never views of it)
        self.kept = g.clone() if self.kept is None else self.kept.add_(g)
        msg = self.compress(self.kept, mask)
        self.kept[msg.coordinates(mask)] = 0
        return msg

    def round_mask(self, round: int, d: int) -> torch.Tensor | None:  # noqa: A002
        """The round's shared coordinates (k increasing int64), or None for per-worker masks."""
        return None

    def observe(self, aggregate: torch.Tensor, mask: torch.Tensor | None) -> None:
        """The server's aggregate of the round (``Tensor[d]``), for compressors whose next mask
        depends on it."""

    def settings(self) -> dict:
        return {"ratio": self.ratio, "error_feedback": self.error_feedback, "seed": self.seed,
                "residual": self.residual}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.settings().items())})"


def check_vector(g: torch.Tensor, who: str) -> torch.Tensor:
    """``g`` as a contiguous 1-D float32 tensor, or a ValueError naming ``who``."""
    if not isinstance(g, torch.Tensor) or g.dim() != 1 or g.dtype != torch.float32:
        shown = f"{g.dtype} {tuple(g.shape)}" if isinstance(g, torch.Tensor) else type(g).__name__
        raise ValueError(f"{who}: needs a 1-D float32 tensor, got {shown}")
    return g.contiguous()
