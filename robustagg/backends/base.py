"""The Backend interface: where workers run (Ray actors, AWS Lambda, this process).

Given a round's parameters, a backend returns the gradients that arrived within the round,
each tagged with its worker id; omissions (timeout, crash, malformed answer) are simply
absent, with the reason in :attr:`Arrivals.errors`. The parameter server never knows which
backend it drives.

A worker is described by a :class:`~robustagg.run.config.WorkerSpec`: plain data
(JSON-serializable when the dataset and model are named), from which a stateless worker rebuilds
its shard and model (:func:`robustagg.run.worker.build_worker`) and computes the same gradient a
stateful one would (:func:`robustagg.run.worker.compute_gradient`). Backends import the run's
modules (:mod:`robustagg.run`), never the training loop that drives them.
"""
from __future__ import annotations

import abc
import importlib
import warnings
from dataclasses import dataclass, field

import torch

from robustagg.run.config import WorkerSpec


@dataclass
class Arrivals:
    """What came back in one round. ``grads[i]``: float32 ``Tensor[d]`` from worker i (with
    compression, its :class:`~robustagg.compression.SparseRow`); ``slices[i]`` instead, when the
    round was asked with ``split`` (:meth:`Backend.compute`): worker i's gradient as k
    references to its slices where the backend keeps them (for Ray, ``ObjectRef`` objects of
    float32 numpy arrays ``[hi - lo]``, in ``split``'s order), never fetched here;
    ``losses[i]``: its minibatch loss; ``compute_s[i]``: its compute time (seconds, measured on
    the worker); ``errors[i]``: why worker i is missing (only for omitted workers);
    ``wall_s``: the backend's wall time for the round (publish to last arrival)."""

    grads: dict = field(default_factory=dict)
    slices: dict = field(default_factory=dict)
    losses: dict = field(default_factory=dict)
    compute_s: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    wall_s: float = 0.0


def check_gradient(g, d: int):
    """A worker's answer as float32 ``Tensor[d]``, or None if it is not exactly that.

    Accepts a numpy array or a tensor; a wrong dtype, shape or type makes an omission (NaN/Inf
    values are kept: they are the Byzantine threat the rules handle, not a format error).
    """
    import numpy as np

    if isinstance(g, np.ndarray):
        if g.dtype != np.float32 or g.shape != (d,):
            return None
        with warnings.catch_warnings():  # read-only buffers (Ray's object store) are only read
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(g)
    if isinstance(g, torch.Tensor) and g.dtype == torch.float32 and tuple(g.shape) == (d,):
        return g
    return None


def check_split(split, d: int) -> list[tuple[int, int]]:
    """``split`` (column ranges ``[(lo, hi), ...]``) as a list of int pairs, if they are
    non-empty, contiguous and cover ``[0, d)``; else ``ValueError`` naming it."""
    try:
        out = [(int(lo), int(hi)) for lo, hi in split]
    except (TypeError, ValueError):
        out = None
    if not out or out[0][0] != 0 or out[-1][1] != d or \
            any(lo >= hi for lo, hi in out) or any(a[1] != b[0] for a, b in zip(out, out[1:])):
        raise ValueError(f"split must be non-empty contiguous column ranges [(lo, hi), ...] "
                         f"covering [0, {d}), got split={split!r}")
    return out


def check_answer(g, d: int, compressor=None):
    """A worker's answer checked as :func:`check_gradient` does, or with a compressor as its
    message (:func:`robustagg.compression.check_message`: k values, and k increasing
    in-range indices without a shared mask); None if it is not exactly that."""
    if compressor is None:
        return check_gradient(g, d)
    from robustagg.compression import check_message

    return check_message(g, d, compressor.k(d), compressor.shared)


def spec_compressor(specs: list[WorkerSpec]):
    """The compressor the workers of ``specs`` use (None: dense gradients), for checking their
    answers."""
    from robustagg.run.build import build_compressor

    s = specs[0]
    return None if s.compression == "none" else \
        build_compressor(s.compression, s.compression_kwargs, s.seed)


def refuse_residual(compressor, backend: str, why: str) -> None:
    """A ValueError if ``compressor`` keeps a residual on the worker (``residual=True``) and
    the ``backend`` cannot keep a worker's state from one round to the next (``why``)."""
    if compressor is not None and compressor.residual:
        raise ValueError(f"{backend} backend: residual=True keeps what each worker has not sent "
                         f"in the worker's process, but {why}; use the local or ray backend, "
                         f"or error_feedback=True (kept on the server)")


class Backend(abc.ABC):
    """Runs the workers. Lifecycle: ``start(specs)``, then ``compute(...)`` once per round,
    then ``close()`` (also a context manager). ``splits``: whether ``compute`` takes ``split``
    (a backend that keeps answers where another process can fetch them, as Ray's object store
    does)."""

    splits = False

    @abc.abstractmethod
    def start(self, specs: list[WorkerSpec], data=None) -> None:
        """Create the workers (may take seconds: processes, data loading). ``data``: the
        dataset already loaded by the server (a ``robustagg.run.data.Data``), which a
        backend sharing memory with the server may hand to its workers instead of having each
        load it; backends whose workers load by name ignore it."""

    @abc.abstractmethod
    def compute(self, round: int, params: torch.Tensor, worker_ids: list[int],
                timeout_s: float, mask: torch.Tensor | None = None,
                split: list[tuple[int, int]] | None = None) -> Arrivals:
        """Publish ``params`` (float32 ``Tensor[d]``, the model as one vector) once, ask each of
        ``worker_ids`` for its gradient of round ``round``, and return what arrived (checked
        with :func:`check_answer`) within ``timeout_s`` seconds. ``mask``: the round's shared
        coordinates (int64 ``Tensor[k]``) when the workers compress with a shared mask,
        published with the parameters.

        ``split=[(lo, hi), ...]`` (taken only where :attr:`splits` is true, for dense gradients):
        contiguous column ranges covering ``[0, d)``. Each worker then answers its gradient's
        slices as separate objects, and :attr:`Arrivals.slices` holds, for each worker whose
        answer arrived and was a float32 ``[d]`` vector, the references to them in ``split``'s
        order (:attr:`Arrivals.grads` stays empty): whoever owns a slice fetches it and checks it
        again (a slice is only what the worker says it is)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the workers and anything started by ``start``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# name -> "module:Class", imported on first use so that naming a backend costs nothing
_BACKENDS = {
    "local": "robustagg.backends.local_backend:LocalBackend",
    "ray": "robustagg.backends.ray_backend:RayBackend",
    "ray_partition": "robustagg.backends.ray_partition:PartitionBackend",
    "lambda": "robustagg.backends.serverless.backend:LambdaBackend",
}


def register_backend(name: str, target: str) -> None:
    """Make ``"module:Class"`` (a :class:`Backend` subclass) available as ``name``."""
    _BACKENDS[name] = target


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def make_backend(name: str, **kwargs) -> Backend:
    """The backend registered as ``name``, built with ``kwargs``."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
    module, cls = _BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)
