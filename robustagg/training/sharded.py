"""A sharded parameter server: ``TrainConfig(server_shards=k)``.

The flat parameter vector ``[d]`` is cut into k contiguous slices
(:func:`robustagg.run.sharding.shard_bounds`); shard s (:class:`~robustagg.training.shard.Shard`)
holds slice s of the parameters, of the optimizer state, of every worker's momentum and of
the round's rows, so no process holds an ``[n, d]`` buffer. Per round:

1. the coordinator (this server) gathers the shards' parameter slices and publishes the
   parameters through the backend, as the unsharded server does;
2. shard s receives slice s of each arrived gradient only. On Ray (Ray backend and shard
   actors) each worker answers its gradient as k numpy slices in the object store and the
   coordinator fetches only the small metadata beside them (loss, time, format): each shard
   fetches its own slices from the object store of the worker's node straight into its
   preallocated ``[n, hi - lo]`` buffer, and no gradient passes through the coordinator
   (``coordinator_gradient_bytes`` in each round's record: 0). Otherwise (in-process shards) the
   coordinator cuts each arrived gradient and hands each shard its slice;
3. a model attack forges each shard's slice of the Byzantine rows (coordinate-wise attacks);
4. the rule runs over the shards (:func:`robustagg.training.coordinator.aggregate`): partial
   distances and sums of squares go to the coordinator, the selection, weights or scales come
   back, and each shard finishes its slice of the aggregate;
5. if every slice is finite each shard steps its optimizer on its slice, else no shard does.

Shards are in-process objects for the local backend (fast and testable), Ray actors for the Ray
backend, placed with a ``SPREAD`` placement group so that on a multi-node cluster they land on
different nodes (:mod:`robustagg.backends.ray_placement`). The result equals the unsharded
server's as :func:`robustagg.training.coordinator.aggregate` states: bit for bit for
coordinate-wise rules, for selection rules wherever the selection is the same, within the
accuracy contract for norm-based ones.

The coordinator keeps the model for evaluation; its copy is brought up to date from the shards
only when it is read (evaluation, checkpoints, :meth:`ShardedServer.params`).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from robustagg.run.sharding import shard_bounds
from robustagg.rules import CenteredClipping

from . import coordinator
from .server import ParameterServer
from .shard import Shard


class LocalShards:
    """The shards as objects in this process."""

    def __init__(self, cfg, bounds, flat):
        self.shards = [Shard(cfg, s, lo, hi, len(flat), flat[lo:hi])
                       for s, (lo, hi) in enumerate(bounds)]

    def call(self, method, *args):
        return [s.run(method, *args) for s in self.shards]

    def each(self, method, args):
        return [s.run(method, *a) for s, a in zip(self.shards, args)]

    def close(self):
        self.shards = []


# What each shard's bundle reserves: memory rather than CPU, so that the workers' CPU shares
# (the cluster's CPUs divided among them) still fit; the shards compute only between answers.
SHARD_BUNDLE = {"memory": 2 ** 26}


class RayShards:
    """The shards as Ray actors, one per bundle of a ``SPREAD`` placement group."""

    def __init__(self, cfg, bounds, flat):
        import ray

        from robustagg.backends import ray_placement

        self.ray, self.placement = ray, ray_placement
        self.pg = ray_placement.spread(len(bounds), SHARD_BUNDLE)
        cls = ray.remote(Shard)
        self.actors = [cls.options(num_cpus=0, memory=SHARD_BUNDLE["memory"], max_restarts=0,
                                   **ray_placement.bundle(self.pg, s))
                       .remote(cfg, s, lo, hi, len(flat), flat[lo:hi].numpy())
                       for s, (lo, hi) in enumerate(bounds)]
        self.call("where")  # up, or the error of the one that failed

    def call(self, method, *args):
        refs = [self.ray.put(a) if isinstance(a, torch.Tensor) else a for a in args]
        return self.ray.get([a.run.remote(method, *refs) for a in self.actors])

    def each(self, method, args):
        return self.ray.get([a.run.remote(method, *x) for a, x in zip(self.actors, args)])

    def close(self):
        for a in self.actors:
            self.ray.kill(a, no_restart=True)
        self.actors = []
        self.placement.remove(self.pg)


# Gradients delivered to the shards per call (bytes, all shards together): bounds what a shard
# fetches and holds mapped at once (the chunk's slices, on its node's object store) and, through
# the coordinator, the extra copy crossing it costs; a chunk's objects are freed once delivered.
DELIVERY_BYTES = 2 ** 28


class ShardedServer(ParameterServer):
    """A :class:`ParameterServer` whose state lives in ``cfg.server_shards`` shards (module
    doc). Same interface: ``step``, ``params``, ``evaluate``, ``state_dict``,
    ``load_state_dict``, ``close``."""

    def __init__(self, cfg, backend=None):
        super().__init__(cfg, backend)
        # the workers send each shard its slices directly when both ends are in Ray
        self.direct = self.backend.splits and isinstance(self.shards, RayShards)
        self.keeps_center = isinstance(getattr(self.rule, "rule", self.rule), CenteredClipping)
        self._synced = True

    def _buffer(self, n, d):
        """The rows live in the shards: start them here, once the model exists and before the
        workers take the cluster's CPUs (so the placement group can still spread)."""
        self.bounds = shard_bounds(d, self.cfg.server_shards)
        group = RayShards if self.cfg.backend == "ray" else LocalShards
        self.shards = group(self.cfg, self.bounds, ParameterServer.params(self))
        return None

    def params(self) -> torch.Tensor:
        """The model as one float32 vector, gathered from the shards."""
        return torch.from_numpy(np.concatenate(self.shards.call("params")))

    def where(self) -> list[dict]:
        """Each shard's process and host."""
        return self.shards.call("where")

    def _sync(self):
        if not self._synced:
            with torch.no_grad():
                torch.nn.utils.vector_to_parameters(self.params(), self.parameters)
            self._synced = True

    def _deliver(self, arr, d: int) -> list[int]:
        """Fill the shards' buffers with the round's arrived gradients, :data:`DELIVERY_BYTES`
        of gradients at a time in worker-id order: either each shard fetches its own slices
        from the object store (``arr.slices``, :meth:`Shard.fill_refs`: the gradients never
        reach this process) or this process cuts each arrived gradient (``arr.grads``) into
        numpy slices and sends each shard its own. Each worker's gradient (or references) is
        dropped from ``arr`` once every shard has its slice, so the object store frees it; the
        chunks bound what a shard's node fetches and holds at once. A worker whose slice a
        shard refuses is an omission (its chunk is sent again without it). Returns the ids of
        the rows the shards hold, in row order."""
        source = arr.slices if self.direct else arr.grads
        ids, pending = [], sorted(source)
        per_chunk = max(1, DELIVERY_BYTES // (4 * d))
        for start in range(0, len(pending), per_chunk):
            part = pending[start:start + per_chunk]
            while part:
                if self.direct:
                    refused = self.shards.each("fill_refs", [
                        ({i: source[i][s] for i in part}, len(ids))
                        for s in range(len(self.bounds))])
                else:
                    # numpy slices: Ray ships a numpy view's own bytes out of band (a torch
                    # view would be pickled with its whole storage: every shard would get
                    # whole rows)
                    refused = [dict.fromkeys(bad, "malformed answer")
                               for bad in self.shards.each("fill", [
                                   ({i: source[i].numpy()[lo:hi] for i in part}, len(ids))
                                   for lo, hi in self.bounds])]
                bad = {}
                for r in refused:  # a worker refused by several shards: the first one's why
                    for i, why in r.items():
                        bad.setdefault(i, why)
                if not bad:
                    break
                arr.errors.update(bad)
                part = [i for i in part if i not in bad]
            ids += part
            for i in pending[start:start + per_chunk]:
                del source[i]
        return ids

    def _step(self) -> dict:
        c, r = self.cfg, self.round
        t0 = time.perf_counter()
        params = self.params()
        d = params.numel()
        arr = self.backend.compute(r, params, self._asked(), c.round_timeout_s,
                                   **({"split": self.bounds} if self.direct else {}))
        t1 = time.perf_counter()
        # what this process received of the workers' gradients (none on the direct path)
        received = sum(4 * g.numel() for g in arr.grads.values())
        ids = self._deliver(arr, d)
        arrived = len(ids)
        t_fill = time.perf_counter()
        honest_ids = [i for i in ids if i not in self.byzantine]
        h = len(honest_ids)
        if self.model_attack is not None:
            lo, hi = (0, h) if self.model_attack.omniscient else (h, len(ids))
            if hi == lo:
                raise RuntimeError(f"round {r}: no gradient arrived for attack={c.attack!r} to see")
            seen = list(range(lo, hi))  # too few for the attack: it says so, as unsharded
            if hi - lo >= self.model_attack.min_honest:
                # the attack forges from the finite rows (finite in every shard), or gives
                # NaN rows when too few are
                finite = coordinator.finite_rows(self.shards)[lo:hi]
                seen = [lo + k for k in finite.nonzero().squeeze(1).tolist()]
                if len(seen) < self.model_attack.min_honest:
                    seen = []
            self.shards.call("forge", seen, h, len(self.byzantine))
            ids = honest_ids + sorted(self.byzantine)
        self._check_arrivals(ids, arr, r)
        self.rule.selected = coordinator.aggregate(self.shards, self.rule, len(ids), d)
        t2 = time.perf_counter()
        finite = all(self.shards.call("agg_finite"))
        self.shards.call("apply", finite, self.keeps_center)
        self._synced = False
        t3 = time.perf_counter()
        record = self._selection(ids)
        record["dist_honest_mean"] = math.sqrt(sum(self.shards.call("honest_gap", h))) \
            if honest_ids else None
        self.round += 1
        compute = max(arr.compute_s.values(), default=0.0)
        honest_losses = [arr.losses[i] for i in honest_ids if i in arr.losses]
        record.update(
            round=r, arrived=arrived, asked=len(self._asked()),
            omitted={str(i): why for i, why in sorted(arr.errors.items())},
            skipped="" if finite else "non-finite aggregate",
            train_loss=sum(honest_losses) / len(honest_losses) if honest_losses else None,
            compute_s=compute, transport_s=max(arr.wall_s - compute, 0.0),
            backend_s=t1 - t0, aggregation_s=t2 - t1, step_s=t3 - t2, fill_s=t_fill - t1,
            compute_sum_s=sum(arr.compute_s.values()),
            memory_mb=self.shards.call("memory_mb"),
            bytes_sent={str(i): 4 * d for i in ids}, bytes_round=4 * d * len(ids),
            coordinator_gradient_bytes=received)
        return record

    def evaluate(self) -> dict:
        self._sync()
        return super().evaluate()

    def state_dict(self) -> dict:
        """The unsharded server's state (the model gathered from the shards) plus each
        shard's: its parameter slice, optimizer state, worker momenta and centered clipping's
        center, as tensors and plain data."""
        self._sync()
        return {**super().state_dict(), "shards": self.shards.call("state_dict")}

    def load_state_dict(self, state: dict) -> None:
        if len(state.get("shards", ())) != len(self.bounds):
            raise ValueError(f"the checkpoint holds {len(state.get('shards', ()))} shards, "
                             f"this run has server_shards={len(self.bounds)}")
        super().load_state_dict(state)
        self.shards.each("load_state_dict", [(s,) for s in state["shards"]])
        self._synced = True

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.shards.close()
