"""The sparse row: what a compressing worker sends, and the server's check of it.

A :class:`SparseRow` holds k entries of a d-vector as two numpy arrays, ``indices`` (int32
when d < 2^31, else int64; strictly increasing, in ``[0, d)``) and ``values`` (float32), or
the values alone when the round's shared mask gives the indices. Numpy arrays travel through
Ray's object store without a copy and map one-to-one to the wire format's sparse payload.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch


def index_dtype(d: int) -> np.dtype:
    """The narrowest index type for a d-vector: int32 below 2^31, else int64."""
    return np.dtype(np.int32) if d < 2**31 else np.dtype(np.int64)


def numpy_tensor(a: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():  # read-only buffers (Ray's object store) are only read
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(a)


@dataclass(frozen=True)
class SparseRow:
    """``values: float32 [k]``; ``indices: [k]`` increasing coordinates, or None when they are
    the round's shared mask; ``d``: the dense length."""

    values: np.ndarray
    indices: np.ndarray | None
    d: int

    @classmethod
    def of(cls, values: torch.Tensor, indices: torch.Tensor | None, d: int) -> "SparseRow":
        """From tensors (indices increasing, as the compressors produce them)."""
        idx = None if indices is None else indices.numpy().astype(index_dtype(d), copy=False)
        return cls(values.detach().float().contiguous().numpy(), idx, d)

    @property
    def nbytes(self) -> int:
        """Payload bytes: the values, plus the indices when the row carries them."""
        return self.values.nbytes + (0 if self.indices is None else self.indices.nbytes)

    def message(self):
        """Plain numpy data for a transport: ``values``, or ``(indices, values)``."""
        return self.values if self.indices is None else (self.indices, self.values)

    def coordinates(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The row's coordinates (int64): its own indices, else ``mask``."""
        if self.indices is None:
            if mask is None:
                raise ValueError("a row without indices needs the round's shared mask")
            return mask
        return numpy_tensor(self.indices).long()

    def dense(self, mask: torch.Tensor | None = None, out: torch.Tensor | None = None):
        """The row as ``Tensor[d]``, zero where it has no entry (written into ``out`` if
        given)."""
        out = torch.zeros(self.d) if out is None else out.zero_()
        out[self.coordinates(mask)] = numpy_tensor(self.values)
        return out


def check_message(answer, d: int, k: int, shared: bool) -> SparseRow | None:
    """A worker's compressed answer as a :class:`SparseRow`, or None if it is not exactly one:
    with ``shared``, float32 values ``[k]``; else ``(indices, values)`` with integer indices
    ``[k]`` strictly increasing in ``[0, d)`` and float32 values ``[k]``. NaN/Inf values are
    kept (the rules' business); a duplicated or out-of-range index is refused (a worker could
    otherwise count one coordinate twice or write outside the model)."""
    if isinstance(answer, SparseRow):
        if answer.d != d:
            return None
        answer = answer.message()
    if shared:
        indices, values = None, answer
    elif isinstance(answer, tuple) and len(answer) == 2:
        indices, values = answer
    else:
        return None
    if not isinstance(values, np.ndarray) or values.dtype != np.float32 or values.shape != (k,):
        return None
    if indices is not None:
        if not isinstance(indices, np.ndarray) or indices.dtype not in (np.int32, np.int64) \
                or indices.shape != (k,):
            return None
        if indices[0] < 0 or indices[-1] >= d or (k > 1 and not (np.diff(indices) > 0).all()):
            return None
    return SparseRow(values, indices, d)
