"""Simulated workers: synthetic honest gradients, for measuring the training loop at scale
without paying for the models' compute (``python -m experiments.bench_scale``).

Select with ``dataset="simulated", model="simulated", model_kwargs={"dim": d, "noise": σ}``
(Hydra: ``dataset=simulated model=simulated model.dim=... model.noise=...``). The run is the
quadratic problem ``min_w ½‖w‖²`` over ``w ∈ R^d``: worker i's gradient in round r is

    g_i^r = w_r + σ · ξ_{i,r}

so the honest gradients sit around a slowly moving mean (the parameters, as the optimizer
shrinks them) with per-worker noise. ``ξ_{i,r}`` is a window of d consecutive values of one
standard normal sequence (the *noise bank*, ``d + L`` values drawn once per process from the
run's seed, ``L = max(workers, 1024)``), starting at offset ``(i + s_r) mod L`` where ``s_r`` is
drawn from ``(seed, round)``: within a round every worker has a different window, each
coordinate of which is an independent standard normal, and the whole run is a pure function of
the seed (any process, any packing of workers into processes, gives the same bits).

A gradient then costs one pass over d values (an add of two float32 vectors), and every logical
worker of a process shares that process's bank and per-round loss, so many workers packed into
one actor (``RayBackend(workers_per_actor=...)``) cost about the transport of their gradients.
The worker runs through the same backends, server, shards and rules as a real one: only
:func:`robustagg.run.worker.build_worker` and :func:`~robustagg.run.worker.compute_gradient`
branch to :class:`SimulatedWorker`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

NAME = "simulated"
MIN_WINDOWS = 1024
DIM, NOISE = 1000, 1.0  # the settings' defaults (the model's and the workers')
_STREAM = 0x5157  # separates the noise's random streams from the run's others


class Quadratic(nn.Module):
    """The model of a simulated run: one parameter vector ``w`` of ``dim`` values, drawn
    N(0, 1) from the global RNG (``build_model`` seeds it). Its loss is ``½‖w‖²``: the output
    is ``√(½‖w‖²)`` for every input row, so the regression loss against the simulated
    dataset's zero targets is exactly that."""

    def __init__(self, dim: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        value = (0.5 * self.w.double().square().sum()).sqrt().float()
        return value.expand(len(x), 1)


def quadratic_model(input_shape, num_classes, dim: int = DIM, noise: float = NOISE):
    """The simulated run's model (:class:`Quadratic` of ``dim`` parameters). ``noise``: σ of
    the workers' per-worker noise (read by the workers; declared here, with the model's size,
    so that one place holds the simulated run's settings)."""
    if num_classes != 0 or tuple(input_shape) != (1,):
        raise ValueError(f"model={NAME!r} needs dataset={NAME!r} (its loss is ½‖w‖²), got a "
                         f"dataset of input_shape={tuple(input_shape)}, num_classes={num_classes}")
    check_settings(dim, noise)
    return Quadratic(dim)


def simulated_data(samples: int = 1024):
    """The simulated run's dataset: ``samples`` zero inputs of one feature with zero targets
    (a regression), only so that the partition gives each worker a shard; at least as many
    samples as workers are needed."""
    from .data import Data

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"{NAME}: samples must be an int >= 1, got samples={samples!r}")
    return Data(torch.zeros(samples, 1), torch.zeros(samples), torch.zeros(1, 1),
                torch.zeros(1), num_classes=0)


def check_settings(dim, noise) -> None:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"model={NAME!r}: dim must be an int >= 1, got dim={dim!r}")
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise >= 0
            and np.isfinite(noise)):
        raise ValueError(f"model={NAME!r}: noise must be a finite number >= 0, got noise={noise!r}")


@functools.lru_cache(maxsize=2)
def noise_bank(dim: int, noise: float, seed: int, windows: int) -> torch.Tensor:
    """``σ · ξ``: ``dim + windows`` float32 values, standard normal scaled by ``noise``, drawn
    from ``seed``; one per process and setting (cached), shared by its logical workers."""
    # a seed of its own: the model's initial w is torch.randn(dim) from ``seed`` itself
    own = int(np.random.SeedSequence([seed, _STREAM]).generate_state(1, np.uint64)[0] >> 1)
    bank = torch.randn(dim + windows, generator=torch.Generator().manual_seed(own))
    return bank.mul_(noise) if noise != 1.0 else bank


def window_offset(worker_id: int, round: int, seed: int, windows: int) -> int:
    """Where worker ``worker_id``'s noise window of ``round`` starts in the bank: distinct
    workers below ``windows`` get distinct offsets in every round."""
    shift = int(np.random.default_rng([seed, round, _STREAM]).integers(windows))
    return (worker_id + shift) % windows


_LAST_LOSS = [None, 0.0]  # (round, parameters' address) and its loss: the latest round only


def round_loss(params: torch.Tensor, round: int) -> float:
    """``½‖params‖²`` (float64 sum), computed once per process and round: every logical worker
    of the process reads the same parameters in a round."""
    key = (round, params.data_ptr(), params.numel())
    if _LAST_LOSS[0] != key:
        _LAST_LOSS[:] = [key, 0.5 * float(params.double().square().sum())]
    return _LAST_LOSS[1]


@dataclass
class SimulatedWorker:
    """Worker ``spec.worker_id`` of a simulated run (module doc); stands where
    :class:`~robustagg.run.worker.WorkerState` does for the backends: ``spec``, ``attack``
    (a fault attack of a Byzantine worker, else None) and ``compressor``."""

    spec: object
    attack: object = None
    compressor: object = None

    @classmethod
    def of(cls, spec, attack=None, compressor=None) -> "SimulatedWorker":
        if attack is not None and getattr(attack, "kind", None) != "fault":
            raise ValueError(f"worker {spec.worker_id}: attack={spec.attack!r} needs data; "
                             f"simulated workers carry out fault attacks only (crash, straggle)")
        kw = spec.model_kwargs
        check_settings(kw.get("dim", DIM), kw.get("noise", NOISE))
        return cls(spec, attack, compressor)

    @property
    def windows(self) -> int:
        return max(self.spec.workers, MIN_WINDOWS)

    def gradient(self, params: torch.Tensor, round: int):
        """``(g, loss)``: ``g = params + σ ξ_{i,round}`` (float32 ``[dim]``, a new tensor) and
        the round's ``½‖params‖²``."""
        s, kw = self.spec, self.spec.model_kwargs
        dim, noise = kw.get("dim", DIM), float(kw.get("noise", NOISE))
        if params.shape != (dim,):
            raise ValueError(f"simulated worker {s.worker_id}: parameters of shape "
                             f"{tuple(params.shape)}, expected ({dim},)")
        bank = noise_bank(dim, noise, s.seed, self.windows)
        off = window_offset(s.worker_id, round, s.seed, self.windows)
        grad = torch.add(params, bank[off:off + dim])
        return grad, round_loss(params, round)
