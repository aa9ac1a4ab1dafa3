"""Fair shares of one Ray cluster among the runs using it: who may hold how many worker actors.

The policy is max-min fairness over actor slots (``capacity``, e.g. the cluster's CPUs divided
by the CPUs of one actor): every run that has joined gets an equal share, a run never gets more
than it can use (its ``demand``: one actor per worker of its run), what a capped run leaves is
split again among the others, and the slots that do not divide evenly go to the runs that
joined first. When a run leaves, the others' shares grow; when one joins, they shrink. A
:class:`~robustagg.backends.ray_partition.PartitionBackend` asks for its run's share before
every round and resizes its partition to it, so shares change hands only between rounds.

:class:`ShareArbiter` holds the members and answers those questions; run it as a named Ray
actor (:func:`start_arbiter`) that every run's backend finds by name. It also records each
run's share and held actors over time, for measuring utilisation.
"""
from __future__ import annotations

import time

NAMESPACE = "robustagg_shares"  # the Ray namespace of arbiters, found by name from any job


def fair_shares(capacity: int, demands: dict) -> dict:
    """``{run: slots}``: max-min fair shares of ``capacity`` slots among the runs of
    ``demands`` (``{run: most slots it can use}``, in the order the runs joined). Shares are
    equal up to one slot, capped by demand; the remainder goes to the earliest runs."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
        raise ValueError(f"fair_shares: capacity must be an int >= 0, got capacity={capacity!r}")
    for run, want in demands.items():
        if isinstance(want, bool) or not isinstance(want, int) or want < 1:
            raise ValueError(f"fair_shares: run {run!r} demands {want!r}; a demand must be an "
                             f"int >= 1")
    share = {run: 0 for run in demands}
    left, open_runs = capacity, list(demands)
    while left and open_runs:  # the runs still open always hold equal shares
        each = left // len(open_runs)
        if each == 0:  # fewer slots than open runs: one each to the earliest
            for run in open_runs[:left]:
                share[run] += 1
            break
        for run in open_runs:
            share[run] += min(each, demands[run] - share[run])
        left = capacity - sum(share.values())
        open_runs = [run for run in open_runs if share[run] < demands[run]]
    return share


class ShareArbiter:
    """The members of a shared cluster and their fair shares of ``capacity`` actor slots.

    A run joins (by name, with its demand) once per holder: a sweep joins for its whole
    length and each of its training runs' backends joins again while it runs, so the sweep
    keeps its share between its cells; the run is a member until every holder has left."""

    def __init__(self, capacity: int):
        fair_shares(capacity, {})  # validates capacity
        self.capacity = capacity
        self.members: dict = {}  # run -> [holders, demand], in the order of joining
        self.log: list = []  # (time.time(), run, share, held) on every change

    def join(self, run: str, demand: int) -> int:
        """Add a holder of ``run`` (demand: the most actors it can use); returns its share."""
        fair_shares(0, {run: demand})  # validates demand
        holders, _ = self.members.get(run, (0, demand))
        self.members[run] = [holders + 1, demand]
        self._note(run)
        return self.share(run)

    def leave(self, run: str) -> None:
        """Remove a holder of ``run``; the run leaves when its last holder has."""
        if run not in self.members:
            return
        self.members[run][0] -= 1
        if self.members[run][0] <= 0:
            del self.members[run]
            self._note(run, held=0)

    def shares(self) -> dict:
        return fair_shares(self.capacity, {run: d for run, (_, d) in self.members.items()})

    def share(self, run: str) -> int:
        """The actors ``run`` may hold now (0 when it is not a member)."""
        return self.shares().get(run, 0)

    def report(self, run: str, held: int) -> None:
        """``run`` now holds ``held`` actors (recorded for the utilisation timeline)."""
        self._note(run, held=held)

    def _note(self, run, held=None):
        self.log.append((time.time(), run, self.share(run), held))

    def timeline(self) -> list:
        """``[(time.time(), run, share, held or None)]`` on every join, leave and resize."""
        return list(self.log)


def start_arbiter(name: str, capacity: int):
    """A :class:`ShareArbiter` of ``capacity`` slots as a Ray actor named ``name`` in
    :data:`NAMESPACE`, owned by this driver (it ends with it). Refuses a name in use."""
    import ray

    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return ray.remote(ShareArbiter).options(name=name, namespace=NAMESPACE, num_cpus=0,
                                                max_concurrency=1).remote(capacity)
    raise ValueError(f"an arbiter named {name!r} already runs on this cluster; pick another name")


def find_arbiter(name: str, timeout_s: float = 10.0):
    """The arbiter actor named ``name``; a clear error when none runs."""
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            if time.monotonic() > deadline:
                raise ValueError(f"no share arbiter named {name!r} runs on this cluster (start "
                                 f"one with robustagg.backends.ray_shares.start_arbiter)") from None
            time.sleep(0.2)
