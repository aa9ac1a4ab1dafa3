"""Partitions of a shared Ray cluster: dealing workers to actors, fair shares, placement (and
its refusals, never a hang), resizing between rounds without changing the result, and two
runs at once in partitions of their own."""
import threading

import pytest
import torch

from robustagg.backends.ray_partition import PartitionBackend, deal
from robustagg.backends.ray_shares import ShareArbiter, fair_shares
from robustagg.run.config import TrainConfig
from robustagg.training import train
from robustagg.training.server import ParameterServer

SETTINGS = dict(workers=5, byzantine=1, rule="median", model="logreg", partition="dirichlet",
                attack="label_flip", progress=False)


# ---- dealing workers to actors (pure) ----
@pytest.mark.parametrize("n,k", [(1, 1), (5, 1), (5, 2), (5, 5), (10, 3), (7, 4)])
def test_deal_cuts_contiguous_balanced_blocks(n, k):
    ids = list(range(n))[::-1]  # any order in, sorted blocks out
    blocks = deal(ids, k)
    assert len(blocks) == k and sum(blocks, []) == sorted(ids)
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert deal(ids, k) == blocks


@pytest.mark.parametrize("k", [0, 6, 2.0, True])
def test_deal_refuses_impossible_actor_counts(k):
    with pytest.raises(ValueError, match="actors"):
        deal(list(range(5)), k)


# ---- fair shares (pure) ----
def reference_shares(capacity, demands):
    """Max-min fairness one slot at a time: each slot to the run holding the fewest (the
    earliest on ties) among those below their demand."""
    share = {r: 0 for r in demands}
    for _ in range(capacity):
        open_runs = [r for r in demands if share[r] < demands[r]]
        if not open_runs:
            break
        share[min(open_runs, key=lambda r: share[r])] += 1
    return share


@pytest.mark.parametrize("capacity,demands", [
    (6, {"a": 10, "b": 10, "c": 10}), (7, {"a": 10, "b": 10, "c": 10}),
    (6, {"a": 1, "b": 10, "c": 10}), (10, {"a": 2, "b": 3}), (2, {"a": 5, "b": 5, "c": 5}),
    (0, {"a": 1}), (5, {}), (9, {"a": 4, "b": 1, "c": 2, "d": 9})])
def test_fair_shares_are_max_min_fair(capacity, demands):
    share = fair_shares(capacity, demands)
    assert share == reference_shares(capacity, demands)
    assert sum(share.values()) == min(capacity, sum(demands.values()))


@pytest.mark.parametrize("capacity,demands", [(-1, {}), (2.5, {}), (4, {"a": 0}),
                                              (4, {"a": 1.5})])
def test_fair_shares_refuse_bad_input(capacity, demands):
    with pytest.raises(ValueError, match="capacity|demand"):
        fair_shares(capacity, demands)


def test_arbiter_shares_shrink_on_join_and_grow_on_leave():
    arb = ShareArbiter(6)
    assert arb.join("A", 10) == 6
    arb.join("B", 10)
    arb.join("C", 10)
    assert arb.shares() == {"A": 2, "B": 2, "C": 2}
    arb.join("A", 10)  # a second holder (the sweep and its current run)
    arb.leave("A")
    assert arb.share("A") == 2  # still held by the other holder
    arb.leave("A")
    assert arb.shares() == {"B": 3, "C": 3} and arb.share("A") == 0
    arb.report("B", 3)
    assert [e[1:] for e in arb.timeline()][-1] == ("B", 3, 3)


# ---- placement on a Ray cluster ----
def _specs(n):
    from robustagg.run.config import WorkerSpec

    return [WorkerSpec(worker_id=i, workers=n, model="logreg", seed=0) for i in range(n)]


def test_partition_places_each_actor_in_its_own_bundle(ray_local):
    import ray
    from ray.util import placement_group_table

    before = ray.available_resources().get("CPU", 0)
    backend = PartitionBackend(actors=2, cpus_per_actor=0.25)
    backend.start(_specs(3))
    try:
        assert len(backend.actors) == 2 and len(backend.groups) == 2
        assert {placement_group_table(pg)["state"] for pg in backend.groups} == {"CREATED"}
        assert ray.available_resources().get("CPU", 0) == pytest.approx(before - 0.5)
        assert [sorted(i for i, a in backend.actor_of.items() if a is actor)
                for actor in backend.actors] == [[0, 1], [2]]
        arr = backend.compute(0, torch.zeros(650), [0, 1, 2], timeout_s=60)
        assert sorted(arr.grads) == [0, 1, 2]
    finally:
        groups = list(backend.groups)
        backend.close()
    assert {placement_group_table(pg)["state"] for pg in groups} == {"REMOVED"}


def test_partition_larger_than_the_cluster_is_refused_at_once(ray_local):
    import ray

    total = ray.cluster_resources()["CPU"]
    backend = PartitionBackend(actors=3, cpus_per_actor=total / 2, place_timeout_s=600)
    with pytest.raises(ValueError, match="can never be placed: the cluster has"):
        backend.start(_specs(3))
    with pytest.raises(ValueError, match="can never be placed"):
        PartitionBackend(actors=1, cpus_per_actor=total + 1).start(_specs(1))
    assert not backend.groups and not backend.pending


def test_partition_that_does_not_fit_the_free_cpus_times_out(ray_local):
    import ray

    cpus = round(ray.cluster_resources()["CPU"] * 0.6, 2)  # two of these never fit at once
    holder = PartitionBackend(actors=1, cpus_per_actor=cpus)
    holder.start(_specs(1))
    try:
        late = PartitionBackend(actors=1, cpus_per_actor=cpus, place_timeout_s=1.0, run="late")
        with pytest.raises(TimeoutError, match="run 'late': 1 more actors .* not placed within "
                                               "place_timeout_s=1.0 s"):
            late.start(_specs(1))
        assert not late.groups and not late.pending
    finally:
        holder.close()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="either an arbiter"):
        PartitionBackend(arbiter="x", actors=2)
    with pytest.raises(ValueError, match="schedule maps rounds"):
        PartitionBackend(schedule={"a": 2})
    with pytest.raises(ValueError, match="schedule maps rounds"):
        PartitionBackend(schedule={0: 0})
    with pytest.raises(ValueError, match="actors must be"):
        PartitionBackend(actors=0)
    with pytest.raises(ValueError, match="cpus_per_actor must be"):
        PartitionBackend(cpus_per_actor=None)


# ---- training in a resized partition ----
def test_resizing_between_rounds_keeps_the_result(ray_local):
    """Shrunk and grown between rounds (workers dealt again, each moved shard rebuilt where it
    lands, a Byzantine data-poisoning worker moved too), the run ends with exactly the
    parameters and losses of the in-process run, so the same seed and resize schedule give the
    same result."""
    cfg = TrainConfig(**SETTINGS, rounds=6, backend="local")
    backend = PartitionBackend(schedule={0: 2, 2: 1, 3: 3}, cpus_per_actor=0.25)
    server = ParameterServer(cfg, backend=backend)
    try:
        records = [server.step() for _ in range(cfg.rounds)]
        assert backend.sizes == {0: 2, 1: 2, 2: 1, 3: 3, 4: 3, 5: 3}
        params = server.params()
    finally:
        backend.close()
    local = ParameterServer(cfg)
    expected = [local.step() for _ in range(cfg.rounds)]
    assert torch.equal(params, local.params())
    assert [r["train_loss"] for r in records] == [r["train_loss"] for r in expected]
    assert all(not r["omitted"] for r in records)


def test_two_runs_at_once_in_separate_partitions(ray_local, tmp_path):
    """Two runs train at the same time on one cluster, each in placement groups of its own,
    and each ends as it does alone in-process."""
    backends, results = {}, {}

    class Recording(PartitionBackend):
        def start(self, specs, data=None):
            super().start(specs, data)
            backends[self.run] = self

    def run(seed):
        cfg = TrainConfig(**SETTINGS, rounds=4, seed=seed, backend="local",
                          output_dir=str(tmp_path / f"s{seed}"))
        server = ParameterServer(cfg, backend=Recording(actors=2, cpus_per_actor=0.25,
                                                        run=f"s{seed}"))
        try:
            for _ in range(cfg.rounds):
                server.step()
            results[seed] = server.params()
            results[f"groups{seed}"] = {pg.id for pg in server.backend.groups}
        finally:
            server.backend.close()

    threads = [threading.Thread(target=run, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert set(backends) == {"s0", "s1"}
    assert len(results["groups0"]) == len(results["groups1"]) == 2
    assert not results["groups0"] & results["groups1"]
    for seed in (0, 1):
        alone = train(TrainConfig(**SETTINGS, rounds=4, seed=seed, backend="local",
                                  output_dir=str(tmp_path / f"local{seed}")))
        assert torch.equal(results[seed], alone.params)


def test_a_kept_partition_serves_the_next_run_of_its_name(ray_local):
    """With keep=True the actors outlive the run: the next run of the same name (a sweep's
    next cell) deals its own workers to the same processes, and ends as it does alone."""
    import ray
    from ray.util import placement_group_table

    from robustagg.backends.ray_partition import release

    def run(seed):
        cfg = TrainConfig(**SETTINGS, rounds=2, seed=seed, backend="local")
        backend = PartitionBackend(actors=2, cpus_per_actor=0.25, run="sweep", keep=True)
        server = ParameterServer(cfg, backend=backend)
        for _ in range(cfg.rounds):
            server.step()
        pids = ray.get([a.ping.remote() for a in backend.actors])
        groups = list(backend.groups)
        backend.close()
        local = ParameterServer(cfg)
        for _ in range(cfg.rounds):
            local.step()
        assert torch.equal(server.params(), local.params())
        return pids, groups

    try:
        first, groups = run(0)
        second, _ = run(1)
        assert second == first
    finally:
        release("sweep")
    assert {placement_group_table(pg)["state"] for pg in groups} == {"REMOVED"}


def test_a_run_outlives_its_arbiter(ray_local, caplog):
    """Following an arbiter's shares, a run whose arbiter has gone (its driver ended) keeps its
    partition, says so once, and trains on to the same result."""
    import ray

    from robustagg.backends.ray_shares import start_arbiter

    arbiter = start_arbiter("outlived", 2)
    cfg = TrainConfig(**SETTINGS, rounds=3, backend="local")
    backend = PartitionBackend(arbiter="outlived", run="r", cpus_per_actor=0.25)
    server = ParameterServer(cfg, backend=backend)
    try:
        server.step()
        ray.kill(arbiter, no_restart=True)
        with caplog.at_level("WARNING", logger="robustagg.backends.ray_partition"):
            server.step()
            server.step()
        assert caplog.text.count("does not answer") == 1
        assert backend.sizes == {0: 2, 1: 2, 2: 2}
        params = server.params()
    finally:
        backend.close()
    local = ParameterServer(cfg)
    for _ in range(cfg.rounds):
        local.step()
    assert torch.equal(params, local.params())
