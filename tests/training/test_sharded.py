"""The sharded parameter server (``server_shards=k``) against the unsharded one.

Contract (robustagg/training/coordinator.py: aggregate): coordinate-wise and selection rules
bit-identical (the summed partial distances are the whole-matrix kernel's bits, so the
selection is the same); norm-based rules within the accuracy contract. Checked on random matrices with ties,
duplicates, non-finite rows, n at the rule's minimum, f = 0 and awkward d, and end to end on
training runs with the local backend (in-process shards).
"""
import pytest
import torch

import robustagg as ra
from robustagg.run.config import TrainConfig
from robustagg.kernels import distance_group_width
from robustagg.run.sharding import shard_bounds
from robustagg.training import coordinator, train
from robustagg.training.sharded import LocalShards
from robustagg.run.worker import single_thread


def shard_aggregate(cfg, x, k):
    """(aggregate, selection) of ``x[n, d]`` by ``cfg``'s rule over k in-process shards."""
    n, d = x.shape
    shards = LocalShards(cfg, shard_bounds(d, k), torch.zeros(d))
    shards.each("fill", [({i: x[i, lo:hi].contiguous() for i in range(n)},)
                         for lo, hi in shard_bounds(d, k)])
    rule = cfg.build_rule()
    rule.check(n)
    sel = coordinator.aggregate(shards, rule, n, d)
    return torch.cat([s.agg for s in shards.shards]), sel


def matrix(kind, n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.rand(n, 1, generator=g) * 3
    if kind == "duplicates":
        x[1] = x[0]
        x[-1] = x[-2]
    elif kind == "ties":  # integer values: many equal coordinates and equal distances
        x = torch.randint(-2, 3, (n, d), generator=g).float()
    elif kind == "nonfinite":
        x[-1, d // 2] = float("nan")
        x[-2, -1] = float("inf")
    return x


EXACT = [("mean", {}, []), ("median", {}, []), ("trimmed_mean", {}, []), ("krum", {}, []),
         ("multi_krum", {"m": 3}, []), ("bulyan", {}, []), ("mean", {}, ["nnm"]),
         ("median", {}, ["nnm"]), ("krum", {}, ["nnm"])]
NORMED = [("geometric_median", {}, []), ("centered_clipping", {"tau": 0.5, "n_iter": 3}, []),
          ("mean", {}, [("clip", {"tau": 1.0})]), ("median", {}, ["arc"])]


def settings(rule, kw, pre, n, f):
    # local backend: the config is only read for the rule and the shards' optimizer
    return TrainConfig(rule=rule, rule_kwargs=kw, pre=pre, workers=n, byzantine=f,
                       backend="local", server_shards=2)


@pytest.mark.parametrize("rule,kw,pre", EXACT, ids=lambda v: str(v))
@pytest.mark.parametrize("kind", ["random", "duplicates", "ties", "nonfinite"])
@pytest.mark.parametrize("d", [3 * 256, 1000, 4097])
def test_exact_rules_equal_unsharded(rule, kw, pre, kind, d):
    f = 2 if kind == "nonfinite" else 1
    probe = settings(rule, kw, pre, 20, f).build_rule()
    n = max(probe.min_n, 5)  # the rule's minimum n (at least 5 rows)
    cfg = settings(rule, kw, pre, n, f)
    x = matrix(kind, n, d)
    with single_thread():
        ref = cfg.build_rule()
        want = ref(x)
        for k in (2, 3):
            got, sel = shard_aggregate(cfg, x, k)
            torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
            if ref.selected is not None:
                assert torch.equal(sel, ref.selected)


@pytest.mark.parametrize("rule", ["median", "krum", "multi_krum", "mean"])
def test_f_zero(rule):
    cfg = TrainConfig(rule=rule, workers=3, byzantine=0, backend="local", server_shards=2)
    x = matrix("random", 3, 300)
    with single_thread():
        assert torch.equal(shard_aggregate(cfg, x, 2)[0], cfg.build_rule()(x))


@pytest.mark.parametrize("rule,kw,pre", NORMED, ids=lambda v: str(v))
@pytest.mark.parametrize("kind", ["random", "duplicates", "nonfinite"])
def test_norm_based_rules_within_accuracy(rule, kw, pre, kind):
    n, d = 9, 1000
    cfg = settings(rule, kw, pre, n, 2)
    x = matrix(kind, n, d)
    with single_thread():
        want = cfg.build_rule()(x)
        got, _ = shard_aggregate(cfg, x, 3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)


def filled(x, k):
    n, d = x.shape
    shards = LocalShards(settings("mean", {}, [], n, 0), shard_bounds(d, k), torch.zeros(d))
    shards.each("fill", [({i: x[i, lo:hi].contiguous() for i in range(n)},)
                         for lo, hi in shard_bounds(d, k)])
    return shards


@pytest.mark.parametrize("kind", ["random", "duplicates", "nonfinite"])
@pytest.mark.parametrize("n,d", [(12, 4097), (2, 300), (7, 70000), (33, 9 * 1024 + 5)])
def test_partial_distances_sum_to_the_kernels_bits(kind, n, d):
    x = matrix(kind, n, d)
    x[: n // 2] *= 1e-3  # scales apart: float32 runs and float64 sums both round
    whole = ra.kernels.pairwise_sq_distances(x)
    for k in (2, 3, 5):
        if -(-d // distance_group_width(d)) >= k:
            assert torch.equal(coordinator.distances(filled(x, k)), whole), k
    ref = ((x.double()[:, None] - x.double()[None]) ** 2).sum(-1)
    bad = ~torch.isfinite(x).all(1)
    ref[bad] = ref[:, bad] = float("inf")  # the contract: +inf for a pair with such a row
    ref.fill_diagonal_(0.0)
    torch.testing.assert_close(whole, ref, rtol=1e-6, atol=0)


def test_real_ties_select_as_unsharded():
    """Rows in pairs c + v, c - v: every pair's two Krum scores are equal in real arithmetic and
    differ only by rounding, so summed partials that were merely within the kernel's accuracy
    of the whole-row distances would pick the other row of the best pair about half the time."""
    n, d, f = 12, 70_000, 2
    cfg = TrainConfig(rule="krum", workers=n, byzantine=f, backend="local", server_shards=3)
    with single_thread():
        for seed in range(6):
            g = torch.Generator().manual_seed(seed)
            c = torch.randn(1, d, generator=g)
            v = torch.randn(n // 2, d, generator=g) * torch.rand(n // 2, 1, generator=g)
            y = torch.cat([c + v, c - v])
            rule = cfg.build_rule()
            want = rule(y)
            got, sel = shard_aggregate(cfg, y, 3)
            assert torch.equal(sel, rule.selected) and torch.equal(got, want), seed


def test_bounds_are_aligned_and_small_models_refused():
    for d, k in [(4810, 3), (1000, 2), (1000, 3), (10 ** 6 + 3, 4), (10 ** 7, 7)]:
        b = shard_bounds(d, k)
        w = distance_group_width(d)
        assert b[0][0] == 0 and b[-1][1] == d and all(lo % w == 0 for lo, _ in b)
        assert all(hi > lo for lo, hi in b)
        assert all(b[s][1] == b[s + 1][0] for s in range(k - 1))
        sizes = [-(-(hi - lo) // w) for lo, hi in b]  # groups per shard: as even as can be
        assert max(sizes) - min(sizes) <= 1
    for d in (1, 7, 9, 17, 100, 256):
        with pytest.raises(ValueError, match="server_shards=2 needs at least 2 groups"):
            shard_bounds(d, 2)


@pytest.mark.parametrize("kw,match", [
    ({"rule": "mda"}, "does not decompose.*supported rules: bulyan"),
    ({"pre": ["bucketing"], "rule": "median"}, "pre-aggregation Bucketing"),
    ({"attack": "gaussian"}, "model attack 'gaussian' needs whole rows"),
    ({"attack": "min_max"}, "model attack 'min_max'"),
    ({"weighted": True, "rule": "median"}, "weighted"),
    ({"compression": "topk"}, "compression"),
    ({"server_shards": 0}, "server_shards must be an int >= 1"),
])
def test_refused_with_what_is_supported(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{"server_shards": 2, **kw})


def run(tmp_path, name, **kw):
    kw = {"backend": "local", "progress": False, "output_dir": str(tmp_path / name),
          "rounds": 6, "eval_every": 3, **kw}
    return train(TrainConfig(**kw))


@pytest.mark.parametrize("kw", [
    {"rule": "krum"},
    {"rule": "median", "attack": "alie", "worker_momentum": 0.5},
    {"rule": "multi_krum", "attack": "ipm", "optimizer": "adam", "lr": 0.01},
    {"rule": "bulyan", "workers": 11, "attack": "sign_flip"},
    {"rule": "trimmed_mean", "attack": "label_flip"},
    {"rule": "mean", "pre": ["nnm"], "attack": "alie"},
    {"rule": "krum", "attack": "nan"},
], ids=lambda v: "-".join(str(x) for x in v.values()))
def test_sharded_run_equals_unsharded(tmp_path, kw):
    one = run(tmp_path, "one", **kw)
    three = run(tmp_path, "three", server_shards=3, **kw)
    assert torch.equal(three.params, one.params)
    for a, b in zip(one.history, three.history):
        assert a["selected"] == b["selected"] and a["skipped"] == b["skipped"]
        assert a["test_acc"] == b["test_acc"] if "test_acc" in a else True
        if a["dist_honest_mean"] is not None:
            assert b["dist_honest_mean"] == pytest.approx(a["dist_honest_mean"], rel=1e-6)


@pytest.mark.parametrize("rule", ["geometric_median", "centered_clipping"])
def test_sharded_iterative_rules_within_accuracy(tmp_path, rule):
    one = run(tmp_path, "one", rule=rule)
    two = run(tmp_path, "two", rule=rule, server_shards=2)
    torch.testing.assert_close(two.params, one.params, rtol=1e-4, atol=1e-5)


def test_sharded_checkpoint_then_resume_equals_uninterrupted(tmp_path):
    kw = {"rule": "centered_clipping", "server_shards": 2, "worker_momentum": 0.5,
          "checkpoint_every": 3}
    full = run(tmp_path, "full", **kw)
    run(tmp_path, "part", **{**kw, "rounds": 3})
    resumed = run(tmp_path, "part", **{**kw, "resume": True})
    assert torch.equal(resumed.params, full.params)


def test_delivery_in_chunks_equals_unsharded(tmp_path, monkeypatch):
    from robustagg.training import sharded

    kw = {"rule": "multi_krum", "attack": "alie", "worker_momentum": 0.5}
    one = run(tmp_path, "one", **kw)
    monkeypatch.setattr(sharded, "DELIVERY_BYTES", 1)  # one worker per call to the shards
    three = run(tmp_path, "three", server_shards=3, **kw)
    assert torch.equal(three.params, one.params)
    assert [r["selected"] for r in three.history] == [r["selected"] for r in one.history]


def test_a_slice_a_shard_refuses_is_an_omission(tmp_path, monkeypatch):
    """A float64 answer (which a backend's own check would refuse) reaching the shards: they
    refuse its slice, the coordinator drops the worker and delivers the rest of its chunk."""
    from robustagg.backends.local_backend import LocalBackend
    from robustagg.training import sharded

    class Float64For3(LocalBackend):
        def compute(self, *a, **k):
            arr = super().compute(*a, **k)
            arr.grads[3] = arr.grads[3].double()
            return arr

    monkeypatch.setattr(sharded, "DELIVERY_BYTES", 3 * 4 * 5000)  # chunks of a few workers
    cfg = TrainConfig(rule="mean", byzantine=0, backend="local", server_shards=2,
                      progress=False, rounds=1, output_dir=str(tmp_path / "bad"))
    server = sharded.ShardedServer(cfg, backend=Float64For3())
    try:
        params = server.params()
        rec = server.step()
        assert rec["omitted"] == {"3": "malformed answer"} and rec["arrived"] == 9
        want = [g for i, g in LocalBackend.compute(server.backend, 0, params, list(range(10)),
                                                   60.0).grads.items() if i != 3]
        torch.testing.assert_close(server.params(),
                                   params - 0.1 * torch.stack(want).mean(0))
    finally:
        server.close()
