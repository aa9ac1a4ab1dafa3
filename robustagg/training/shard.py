"""One shard of a sharded parameter server: a contiguous slice ``[lo, hi)`` of the flat
parameter vector, with that slice of the parameters, of the optimizer state, of every worker's
gradient (its rows of the round, in a preallocated ``[n, hi - lo]`` buffer) and of every
worker's momentum.

A shard never sees a whole row. The coordinator (:mod:`robustagg.training.coordinator`) asks
it for the few numbers a rule needs from its columns (partial squared distances, partial sums
of squares, which rows are finite) and tells it what to do with its slice (average the
selected rows, mix neighbours, scale rows, take a weighted sum, run a coordinate-wise rule),
so the aggregate's slice is computed where the slice lives. The optimizer is elementwise, so a
shard stepping its slice computes the same bits as one optimizer over the whole vector.

Plain Python: in-process for the local backend, wrapped as a Ray actor for the Ray backend
(:mod:`robustagg.training.sharded`). Everything it returns is a tensor, a numpy array (the
large ones: Ray moves numpy arrays without pickling, torch tensors it copies at a fraction of
the speed) or plain data.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from robustagg import kernels
from robustagg.backends.base import check_gradient
from robustagg.functional import _scaling
from robustagg.functional._checks import finite_rows
from robustagg.functional._rowstats import _BLOCK_VALUES, row_dots
from robustagg.functional.bulyan import _closest_to_median_mean
from robustagg.functional.clip import clip_to
from robustagg.run.worker import single_thread

from .server import cores, fold_momentum, process_memory_mb


class Shard:
    """Shard ``index`` of run ``cfg`` (a ``TrainConfig``), owning columns ``[lo, hi)`` of the
    model's d; ``params``: the initial slice, float32 ``[hi - lo]``."""

    def __init__(self, cfg, index: int, lo: int, hi: int, d: int, params):
        self.cfg, self.index, self.lo, self.hi = cfg, index, lo, hi
        self.width = kernels.distance_group_width(d)
        self.param = torch.nn.Parameter(torch.as_tensor(params, dtype=torch.float32).clone())
        c = cfg
        if c.optimizer == "adam":
            self.optimizer = torch.optim.Adam([self.param], lr=c.lr, weight_decay=c.weight_decay)
        else:
            self.optimizer = torch.optim.SGD([self.param], lr=c.lr, momentum=c.momentum,
                                             weight_decay=c.weight_decay)
        self.rows = torch.empty(cfg.workers, hi - lo)
        self.m = 0           # rows of the round in use
        self.x = None        # the rows the current stage works on (the buffer, or mixed rows)
        self.agg = None      # this slice of the round's aggregate
        self.z = None        # an iterate of Weiszfeld or centered clipping
        self.center = None   # centered clipping's center (the last finite aggregate's slice)
        self.momentum: dict[int, torch.Tensor] = {}
        attack = cfg.build_attack()
        self.attack = attack if attack is not None and attack.kind == "model" else None
        rule = cfg.build_rule()
        self.rule = getattr(rule, "rule", rule)  # a coordinate-wise rule runs here as it is

    def run(self, method: str, *args):
        """``self.<method>(*args)`` with torch on one thread (its reductions' bits depend on the
        thread count) and the native kernels on every core (theirs do not)."""
        with single_thread(), kernels.kernel_threads(cores()):
            return getattr(self, method)(*args)

    def where(self) -> dict:
        """Where this shard runs: its process, host and (on Ray) node id, for tests and logs."""
        import socket
        import sys

        node = None
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            node = sys.modules["ray"].get_runtime_context().get_node_id()
        return {"index": self.index, "pid": os.getpid(), "host": socket.gethostname(),
                "node": node, "columns": [self.lo, self.hi]}

    def memory_mb(self) -> dict:
        """This shard's process memory (:func:`~robustagg.training.server.process_memory_mb`)."""
        return process_memory_mb()

    # ---- the round's rows ----
    def params(self) -> np.ndarray:
        """float32 ``[hi - lo]``: this slice of the parameters (a copy)."""
        return self.param.detach().numpy().copy()

    def fill(self, slices: dict, start: int = 0) -> list[int]:
        """Write each worker's slice (``{worker id: float32 [hi - lo]}``, a tensor or numpy
        array) into the buffer in worker-id order from row ``start`` on (the rows before it
        are kept: the coordinator delivers a round in chunks), folded into its momentum with
        ``worker_momentum``; returns the ids whose slice is malformed (then nothing is written:
        the coordinator drops them and sends the chunk again)."""
        w = self.hi - self.lo
        checked = {i: check_gradient(g, w) for i, g in slices.items()}
        bad = sorted(i for i, g in checked.items() if g is None)
        if bad:
            return bad
        for k, i in enumerate(sorted(checked), start):
            self.rows[k].copy_(fold_momentum(self.momentum, i, checked[i],
                                             self.cfg.worker_momentum))
        self.m = start + len(checked)
        self.x = self.rows[:self.m]
        return []

    def fill_refs(self, refs: dict, start: int = 0) -> dict:
        """:meth:`fill` from Ray object references (``{worker id: ObjectRef}`` of each
        worker's slice, fetched here in one ``ray.get``: the slices come from the workers'
        object stores, not through the coordinator). Returns ``{worker id: why}`` for the
        slices refused: "malformed answer" (as :meth:`fill`), or lost (the object could not be
        fetched, e.g. its node died); then nothing is written."""
        from robustagg.backends.ray_backend import get_each

        values, failed = get_each(refs)
        # a slice that could not be fetched is None here, which fill's check refuses
        bad = self.fill({i: values.get(i) for i in refs}, start)
        return {i: f"lost ({type(failed[i]).__name__})" if i in failed else "malformed answer"
                for i in bad}

    def forge(self, seen: list[int], at: int, f: int) -> None:
        """The model attack on this slice: from the rows ``seen`` (the finite honest rows,
        chosen by the coordinator from whole rows) forge f rows and write them at rows
        ``at .. at + f - 1``; with no row to see, NaN rows (as the attack gives)."""
        if seen:
            forged = self.attack(self.rows[seen], f)
        else:
            forged = torch.full((f, self.hi - self.lo), float("nan"))
        self.rows[at:at + f].copy_(forged)
        self.m = at + f
        self.x = self.rows[:self.m]

    # ---- partial statistics: the few numbers the coordinator sums ----
    def distance_partials(self) -> np.ndarray:
        """float64 ``[groups, m, m]``: the squared distances of the current rows over each of
        this slice's column groups, the whole model's
        (:func:`robustagg.kernels.distance_group_width` of its d), in column order."""
        return kernels.pairwise_sq_distance_partials(self.x, self.width).numpy()

    def finite_rows(self) -> torch.Tensor:
        """bool ``[m]``: which current rows are finite on this slice."""
        return finite_rows(self.x)

    def sq_norms(self) -> torch.Tensor:
        """float64 ``[m]``: each current row's sum of squares over this slice."""
        return row_dots(self.x)

    def sq_dists_to_z(self, rows: list[int]) -> torch.Tensor:
        """float64 ``[len(rows)]``: each of ``rows``' sum of squares of (row − z) over this
        slice, in float64 (so finite for finite rows), over column blocks of bounded size."""
        idx = torch.tensor(rows, dtype=torch.long)
        out = torch.zeros(len(rows), dtype=torch.float64)
        width = max(1, _BLOCK_VALUES // max(len(rows), 1))
        for s in range(0, self.hi - self.lo, width):
            diff = self.x[idx, s:s + width].double() - self.z[s:s + width].double()
            out += diff.square().sum(dim=1)
        return out

    def honest_gap(self, h: int) -> float:
        """This slice's share of ``‖aggregate − mean of the h honest rows‖²`` (float64)."""
        return float((self.agg - self.rows[:h].mean(0)).double().square().sum())

    # ---- finishing this slice ----
    def coordinate(self) -> None:
        """A coordinate-wise rule (mean, median, trimmed mean) on this slice."""
        self.agg = self.rule(self.x)

    def rows_mean(self, idx: list[int]) -> None:
        """The mean of the selected rows (Krum, multi-Krum), as the unsharded rule takes it."""
        idx = torch.tensor(idx, dtype=torch.long)

        def mean(rows):
            return kernels.rows_mean(rows, idx)

        self.agg = _scaling.rescue_columns(mean, self.x, mean(self.x))

    def nan(self) -> None:
        """A NaN slice: the rule found nothing it could trust (too many non-finite rows)."""
        self.agg = torch.full((self.hi - self.lo,), float("nan"))

    def bulyan_phase(self, selected: list[int], beta: int, e: int = 0):
        """Bulyan's coordinate phase on this slice of the selected rows (scaled by 2^-e when
        the coordinator found an overflow in some shard); returns whether it was exact (the
        coordinator rescales everywhere if any shard was not)."""
        s = self.x.index_select(0, torch.tensor(selected, dtype=torch.long))
        out, exact = _closest_to_median_mean(_scaling.scale(s, e), beta)
        self.agg = _scaling.unscale(out, e)
        return exact, _scaling.exponent(s)

    def mix(self, neighbours: list[list[int]]) -> None:
        """Nearest-neighbour mixing on this slice: row i becomes the mean of rows
        ``neighbours[i]``."""
        self.x = self.x[torch.tensor(neighbours, dtype=torch.long)].mean(dim=1)

    def clip_rows(self, rows: list[int], threshold: float, norms: list[float]) -> None:
        """Scale ``rows`` to norm at most ``threshold`` given their whole-row ``norms``
        (static clipping, ARC), by the unsharded rule's own arithmetic."""
        if not rows:
            return
        idx = torch.tensor(rows, dtype=torch.long)
        clipped = clip_to(self.x[idx], threshold, torch.tensor(norms, dtype=torch.float64))
        self.x = self.x.index_copy(0, idx, clipped)

    def start_z(self, rows: list[int], alpha: list[float], center: bool) -> None:
        """The iterate's start on this slice: the weighted mean ``alpha @ x[rows]``
        (Weiszfeld), or the center (centered clipping: zeros before the first finite
        aggregate)."""
        if center:
            self.z = torch.zeros(self.hi - self.lo) if self.center is None else self.center
        else:
            self.z = torch.tensor(alpha, dtype=torch.float32) @ self.x[rows]

    def weiszfeld_step(self, rows: list[int], w: list[float]) -> tuple[float, float]:
        """``z ← w @ x[rows]``; returns this slice's ``‖z_new − z‖²`` and ``‖z_new‖²``."""
        new = torch.tensor(w, dtype=torch.float32) @ self.x[rows]
        step = float((new - self.z).double().square().sum())
        self.z = new
        return step, float(new.double().square().sum())

    def clipping_step(self, rows: list[int], w: list[float]) -> None:
        """Centered clipping: ``v ← v + w @ (x[rows] − v)``."""
        self.z = self.z + torch.tensor(w, dtype=torch.float32) @ (self.x[rows] - self.z)

    def take_z(self) -> None:
        self.agg = self.z

    # ---- the step ----
    def agg_finite(self) -> bool:
        return bool(torch.isfinite(self.agg).all())

    def apply(self, finite: bool, keep_center: bool) -> None:
        """Step the optimizer with this slice of the aggregate when the whole aggregate is
        finite (else no step, as the unsharded server skips it); ``keep_center``: centered
        clipping carries a finite aggregate into the next round."""
        if finite:
            self.param.grad = self.agg.detach().clone()
            self.optimizer.step()
            if keep_center:
                self.center = self.agg.detach().clone()
        self.param.grad = None

    # ---- checkpoints ----
    def state_dict(self) -> dict:
        return {"param": self.param.detach().clone(), "optimizer": self.optimizer.state_dict(),
                "momentum": {i: m.clone() for i, m in self.momentum.items()},
                "center": None if self.center is None else self.center.clone()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.param.copy_(state["param"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.momentum = {int(i): m.clone() for i, m in state["momentum"].items()}
        self.center = None if state["center"] is None else state["center"].clone()
