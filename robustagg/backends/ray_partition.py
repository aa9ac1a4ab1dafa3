"""A run's partition of a shared Ray cluster: worker actors in placement groups, resized
between rounds.

Several training runs can share one Ray cluster, each holding a partition: k worker actors,
each in a placement-group bundle of ``cpus_per_actor`` CPUs that Ray reserves for it. The run's
n (logical) workers are dealt to the k actors in contiguous blocks of worker ids
(:func:`deal`, a pure function of n and k). Before each round the backend asks how many actors
the run should hold — a fixed ``schedule`` (``{round: actors}``), or the run's fair share from
a :class:`~robustagg.backends.ray_shares.ShareArbiter` (``arbiter``) — and resizes: it removes
actors (and their reservations) from the end, or reserves and starts new ones, then deals the
workers again. A moved worker's shard is rebuilt by the actor that now hosts it, from the
dataset the backend keeps once in the object store, the first time that actor is asked for it.

The result does not depend on the partition: a worker's gradient is a pure function of its
spec, the parameters and the round (:mod:`robustagg.run.worker`), so a run resized at any
rounds, or given any share, ends with the bits of the same run on the in-process backend.

Ray's placement groups cannot change size, so a partition is a set of one-bundle placement
groups, one per actor, placed all or nothing at a resize: a partition that can never be
placed (more CPUs than the cluster has, or a bundle larger than every node) is refused at once,
and one that does not fit in the free CPUs within ``place_timeout_s`` seconds is refused then,
naming what is free. Under an arbiter, growth never waits: the new reservations stay pending
(the CPUs are still another run's until its next round) and are taken up at a later round.
"""
from __future__ import annotations

import logging
import os

from .base import refuse_residual, spec_compressor
from .ray_backend import RayBackend, _RayWorker, put_dataset
from .ray_shares import find_arbiter

logger = logging.getLogger(__name__)


def deal(ids: list, k: int) -> list[list]:
    """``ids`` (sorted) cut into k contiguous blocks whose sizes differ by at most one, the
    larger ones first: which worker ids each of k actors hosts."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max(len(ids), 1):
        raise ValueError(f"deal: need 1 <= actors <= {len(ids)} workers, got actors={k!r}")
    ids = sorted(ids)
    size, extra = divmod(len(ids), k)
    cuts = [b * size + min(b, extra) for b in range(k + 1)]
    return [ids[cuts[b]:cuts[b + 1]] for b in range(k)]


# run name -> (actors, their placement groups) kept by a closed backend for the next run of
# that name in this process (a sweep's next cell)
_KEPT: dict = {}


def release(run: str) -> None:
    """Kill the actors kept for ``run`` (see ``PartitionBackend(keep=True)``) and free their
    reservations."""
    import ray

    actors, groups = _KEPT.pop(run, ([], []))
    for a in actors:
        ray.kill(a, no_restart=True)
    _remove(groups)


def _remove(pgs) -> None:
    from ray.util.placement_group import remove_placement_group

    for pg in pgs:
        remove_placement_group(pg)


def _feasible(k: int, cpus: float) -> None:
    """Refuse at once a partition of k actors of ``cpus`` CPUs the cluster can never hold."""
    import ray

    nodes = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]]
    total = sum(nodes)
    if cpus > max(nodes, default=0.0) or k * cpus > total:
        raise ValueError(f"a partition of {k} actors x {cpus} CPU = {k * cpus:g} CPU can never "
                         f"be placed: the cluster has {total:g} CPU in {len(nodes)} nodes "
                         f"(largest {max(nodes, default=0.0):g}); lower the actors or "
                         f"cpus_per_actor")


class PartitionBackend(RayBackend):
    """Workers as Ray actors in a resizable partition of a shared cluster.

    ``actors``: the partition's size without a schedule or an arbiter (default: one actor per
    worker); ``schedule``: ``{round: actors}``, the size from that round on (round 0 also sets
    the starting size); ``arbiter`` and ``run``: follow the fair share of ``run`` (default: a
    name of its own) from the arbiter actor named ``arbiter``; ``cpus_per_actor``: each
    actor's reservation; ``place_timeout_s``: how long a placement may wait for free CPUs;
    ``address``: the cluster to join when this process is not connected to Ray yet;
    ``keep``: at ``close``, keep the actors and their reservations in this process for the
    next run of the same ``run`` name (a sweep's next cell), which deals its workers to them
    instead of starting new processes; :func:`release` frees them."""

    def __init__(self, actors: int | None = None, schedule: dict | None = None,
                 arbiter: str | None = None, run: str | None = None,
                 cpus_per_actor: float = 1.0, place_timeout_s: float = 60.0,
                 address: str | None = None, keep: bool = False, max_restarts: int = 3,
                 start_timeout_s: float = 300.0):
        super().__init__(workers_per_actor=1, cpus_per_actor=cpus_per_actor,
                         max_restarts=max_restarts, start_timeout_s=start_timeout_s)
        if actors is not None and (isinstance(actors, bool) or not isinstance(actors, int)
                                   or actors < 1):
            raise ValueError(f"PartitionBackend: actors must be an int >= 1, got actors={actors!r}")
        self.schedule = {}
        for r, k in (schedule or {}).items():
            if not str(r).isdigit() or isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(f"PartitionBackend: schedule maps rounds (ints >= 0) to actors "
                                 f"(ints >= 1), got {r!r}: {k!r}")
            self.schedule[int(r)] = k
        if arbiter is not None and (schedule or actors is not None):
            raise ValueError("PartitionBackend: give either an arbiter (the size follows the "
                             "run's fair share) or actors/schedule (a fixed size), not both")
        if isinstance(cpus_per_actor, bool) or not isinstance(cpus_per_actor, (int, float)) \
                or not cpus_per_actor > 0:
            raise ValueError(f"PartitionBackend: cpus_per_actor must be a number > 0, "
                             f"got {cpus_per_actor!r}")
        if not place_timeout_s > 0:
            raise ValueError(f"PartitionBackend: place_timeout_s must be > 0, "
                             f"got {place_timeout_s!r}")
        self.actors_fixed, self.arbiter_name = actors, arbiter
        self.run = run or f"run-{id(self):x}"
        self.place_timeout_s, self.address, self.keep = place_timeout_s, address, keep
        self.arbiter, self.arbiter_lost, self.connected_here = None, False, False
        self.specs = []
        self.groups, self.starting, self.pending = [], [], []  # groups[b]: actor b's bundle
        self.hosting = []  # hosting[b]: the worker ids actor b has been set up with
        self.sizes = {}  # round -> actors that computed it

    # ---- how many actors ----
    def _target(self, round: int) -> int:
        """How many actors to hold for ``round``: the arbiter's share, the schedule's or the
        fixed size, within 1 and the number of workers."""
        if self.arbiter is not None:
            import ray

            try:
                want = ray.get(self.arbiter.share.remote(self.run), timeout=self.place_timeout_s)
            except ray.exceptions.RayError as e:  # its driver has gone: keep what is held
                if not self.arbiter_lost:
                    logger.warning("run %r: the share arbiter %r does not answer (%s); the "
                                   "partition keeps its %d actors", self.run, self.arbiter_name,
                                   type(e).__name__, len(self.actors))
                self.arbiter_lost = True
                want = len(self.actors)
        elif self.schedule:
            want = self.schedule[max((r for r in self.schedule if r <= round), default=min(
                self.schedule))]
        else:
            want = self.actors_fixed or len(self.specs)
        return max(1, min(want, len(self.specs)))  # at least one; no more than the workers

    # ---- placement ----
    def _reserve(self, k: int) -> list:
        from ray.util.placement_group import placement_group

        return [placement_group([{"CPU": self.cpus_per_actor}]) for _ in range(k)]

    def _place(self, k: int) -> list:
        """Reserve k more bundles and wait for all of them, or release them and raise."""
        import ray

        _feasible(len(self.groups) + len(self.starting) + k, self.cpus_per_actor)
        pgs = self._reserve(k)
        ready, _ = ray.wait([pg.ready() for pg in pgs], num_returns=k,
                            timeout=self.place_timeout_s)
        if len(ready) < k:
            _remove(pgs)
            raise TimeoutError(
                f"run {self.run!r}: {k} more actors of {self.cpus_per_actor} CPU not placed "
                f"within place_timeout_s={self.place_timeout_s} s (the partition would hold "
                f"{len(self.groups) + k}); free now: {ray.available_resources().get('CPU', 0):g} "
                f"of {ray.cluster_resources().get('CPU', 0):g} CPU (other runs hold the rest)")
        return pgs

    def _start_actors(self, pgs) -> None:
        """An actor in each of the placed ``pgs``, serving once it has answered a ping."""
        import ray

        from .ray_placement import bundle

        cls = ray.remote(_RayWorker)
        for pg in pgs:
            a = cls.options(num_cpus=self.cpus_per_actor, max_restarts=self.max_restarts,
                            max_task_retries=0, **bundle(pg, 0)).remote()
            self.starting.append((a, pg, a.ping.remote()))

    def _resize(self, k: int, wait: bool) -> None:
        """Hold k actors: remove reservations and actors from the end, or reserve and start
        new ones (with ``wait``, until they serve; else taking up what is placed and started
        by now), then deal the workers to the serving actors again."""
        import ray

        before = list(self.actors)
        while self.pending and self._held() > k:
            _remove([self.pending.pop()])
        while self.starting and self._held() > k:
            a, pg, _ = self.starting.pop()
            ray.kill(a, no_restart=True)
            _remove([pg])
        while len(self.actors) > k:
            ray.kill(self.actors.pop(), no_restart=True)
            _remove([self.groups.pop()])
            del self.hosting[len(self.actors):]
        if wait:
            if self._held() < k:
                self._start_actors(self._place(k - self._held()))
            ray.get([p for _, _, p in self.starting], timeout=self.start_timeout_s)
        else:
            if self._held() < k:
                self.pending += self._reserve(k - self._held())
            placed = [pg for pg in self.pending if ray.wait([pg.ready()], timeout=0)[0]]
            self.pending = [pg for pg in self.pending if pg not in placed]
            self._start_actors(placed)
        for a, pg, p in list(self.starting):
            if wait or ray.wait([p], timeout=0)[0]:
                self.starting.remove((a, pg, p))
                self.actors.append(a)
                self.groups.append(pg)
        if self.actors != before or None in self.hosting:  # None: kept from another run
            self._deal()

    def _held(self) -> int:
        """Actors serving or starting, and reservations pending."""
        return len(self.actors) + len(self.starting) + len(self.pending)

    def _deal(self) -> None:
        """Deal the workers to the serving actors; an actor whose block changed builds it
        (its ``setup`` runs before its next computation: an actor runs calls in order)."""
        import ray

        by_id = {s.worker_id: s for s in self.specs}
        blocks = deal(list(by_id), len(self.actors))
        self.hosting += [None] * (len(self.actors) - len(self.hosting))
        for b, (a, block) in enumerate(zip(self.actors, blocks)):
            if self.hosting[b] == block:
                continue
            run = (os.urandom(8).hex(), [ray.put([by_id[i] for i in block]), self.data_ref])
            a.setup.remote(run)
            self.hosting[b] = block
            self.actor_of.update({i: a for i in block})
            self.run_of.update({i: run for i in block})
        if self.arbiter is not None:
            self.arbiter.report.remote(self.run, len(self.actors))

    # ---- the Backend interface ----
    def start(self, specs, data=None):
        import ray

        compressor = spec_compressor(specs)
        refuse_residual(compressor, "ray_partition",
                        "a resize deals workers to other actors, which build them anew")
        if not ray.is_initialized():
            if self.address is None:
                raise RuntimeError("PartitionBackend needs a running Ray cluster: connect "
                                   "first (robustagg.backends.ray_cluster.connect) or give "
                                   "backend_kwargs={'address': 'host:port'}")
            from .ray_cluster import connect

            connect(self.address)
            self.connected_here = True
        self.specs, self.compressor = list(specs), compressor
        # one copy for every actor (or none: the actors load the dataset by name), held until
        # close: an actor that is dealt other workers, or restarted by Ray, builds them from it
        self.data_ref = put_dataset(data)
        if self.arbiter_name is not None:
            self.arbiter = find_arbiter(self.arbiter_name)
            ray.get(self.arbiter.join.remote(self.run, len(self.specs)))
        self.actors, self.groups = _KEPT.pop(self.run, ([], []))  # a previous cell's
        self.hosting = [None] * len(self.actors)
        # wait for the placement, unless it follows an arbiter and kept actors can serve now
        self._resize(self._target(0), wait=self.arbiter is None or not self.actors)
        ray.get([a.ping.remote() for a in self.actors], timeout=self.start_timeout_s)

    def compute(self, round, params, worker_ids, timeout_s, mask=None, split=None):
        self._resize(self._target(round), wait=self.arbiter is None)  # between rounds only
        self.sizes[round] = len(self.actors)
        return super().compute(round, params, worker_ids, timeout_s, mask, split)

    def close(self):
        import ray

        if self.keep:  # the serving actors wait for the next run of this name
            self._resize(len(self.actors), wait=False)  # drops the starting and pending
            _KEPT[self.run] = (self.actors, self.groups)
            self.actors, self.groups = [], []
        self._resize_none()
        if self.arbiter is not None:
            try:
                ray.get(self.arbiter.report.remote(self.run, len(_KEPT.get(self.run, [[]])[0])),
                        timeout=10)
                ray.get(self.arbiter.leave.remote(self.run), timeout=10)
            except ray.exceptions.RayError:  # the arbiter's driver has gone: nothing to leave
                pass
            self.arbiter = None
        self.data_ref = None
        if self.connected_here:
            ray.shutdown()
            self.connected_here = False

    def _resize_none(self):
        import ray

        for a in self.actors + [a for a, _, _ in self.starting]:
            ray.kill(a, no_restart=True)
        _remove(self.groups + [pg for _, pg, _ in self.starting] + self.pending)
        self.actors, self.groups, self.starting, self.pending = [], [], [], []
        self.hosting, self.actor_of, self.run_of = [], {}, {}
