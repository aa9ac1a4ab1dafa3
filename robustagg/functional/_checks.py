"""Argument checks shared by the rules, run once where arguments enter (never in inner loops)."""
from __future__ import annotations

import torch

from .. import kernels

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_matrix(x, rule: str) -> None:
    """Raise unless ``x`` is a non-empty floating-point ``Tensor[n, d]``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{rule} expects a Tensor[n, d], got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{rule} expects x of shape [n, d], got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{rule} got empty input: n=0 vectors")
    if x.shape[1] == 0:
        raise ValueError(f"{rule} got vectors of dimension d=0")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{rule} needs floating-point vectors, got dtype {x.dtype}")


def as_matrix(x, rule: str) -> torch.Tensor:
    """Check ``x`` (:func:`check_matrix`) and return it in a compute dtype: float16/bfloat16 are
    computed in float32, float32/float64 as they are."""
    check_matrix(x, rule)
    return x.float() if x.dtype in _LOW_PRECISION else x


def check_f(f, rule: str, name: str = "f") -> int:
    """``f`` must be a non-negative int."""
    if isinstance(f, bool) or not isinstance(f, int):
        raise TypeError(f"{rule}: {name} must be an int, got {f!r}")
    if f < 0:
        raise ValueError(f"{rule}: {name} must be >= 0, got {name}={f}")
    return f


def bound_text(a: int, b: int) -> str:
    """``n >= a*f + b`` written as people write it: ``2f + 3``, ``f + 1``, ``4f + 3``."""
    coef = "f" if a == 1 else f"{a}f"
    return f"{coef} + {b}" if b else coef


def check_bound(rule: str, n: int, f: int, a: int, b: int) -> None:
    """Raise ``ValueError`` unless ``n >= a*f + b``."""
    if n < a * f + b:
        raise ValueError(f"{rule} needs n >= {bound_text(a, b)} workers, got n={n}, f={f}")


def check_positive(value, rule: str, name: str, integer: bool = False):
    """``value`` must be > 0 (and an int when ``integer``)."""
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{rule}: {name} must be an int, got {value!r}")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{rule}: {name} must be > 0, got {name}={value!r}")
    return value


def matrix_and_distances(x, f, distances, rule: str, a: int, b: int):
    """Entry checks of a distance-based rule: ``x`` a floating ``Tensor[n, d]``, ``n >= a*f + b``,
    ``distances`` None or ``[n, n]``. Returns ``(x, distances)``, the distances computed once here
    when not given (float64, see :func:`robustagg.kernels.pairwise_sq_distances`)."""
    x = as_matrix(x, rule)
    n = x.shape[0]
    check_bound(rule, n, check_f(f, rule), a, b)
    if distances is None:
        return x, kernels.pairwise_sq_distances(x)
    if tuple(distances.shape) != (n, n):
        raise ValueError(f"{rule}: distances must have shape [{n}, {n}], "
                         f"got {tuple(distances.shape)}")
    return x, distances.to(torch.float64)


def finite_rows(x: torch.Tensor) -> torch.Tensor:
    """Bool[n]: rows without NaN or ±Inf. A row's sum is finite only if its entries are (a NaN
    or ±Inf carries through), and summing is many times faster than an entry-wise check on the
    CPU; rows whose sum is not finite (non-finite, or a sum that overflowed) are checked entry
    by entry."""
    ok = torch.isfinite(x.detach().sum(dim=1))
    if not bool(ok.all()):
        rows = (~ok).nonzero().squeeze(1)
        ok[rows] = torch.isfinite(x.detach()[rows]).all(dim=1)
    return ok


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is finite: its sum first (as in :func:`finite_rows`), the
    entry-wise check only when the sum is not finite."""
    t = t.detach()
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def needs_grad(x: torch.Tensor) -> bool:
    """Whether the result must carry x's autograd graph: every rule's result does whenever x
    requires grad and grad mode is on (native kernels, which do not record it, are then
    replaced by torch operations)."""
    return x.requires_grad and torch.is_grad_enabled()


def no_streamed_grad(x: torch.Tensor, rule: str) -> None:
    """Streaming (``device``/``chunk_columns``) writes results chunk by chunk and records no
    graph: refuse rather than drop it."""
    if needs_grad(x):
        raise ValueError(f"{rule}: streaming (device/chunk_columns) does not carry autograd; "
                         f"pass x.detach(), or compute without streaming (device=None)")
