"""The training loop with compression: every rule and every attack still runs, the bytes are
recorded, and the settings are checked where they enter."""
import pytest

import attacks
from robustagg.rules import available_rules
from robustagg.run.config import TrainConfig
from robustagg.training import train



def run(tmp_path, **kw):
    base = dict(backend="local", rounds=2, eval_every=2, progress=False, seed=1,
                output_dir=str(tmp_path))
    return train(TrainConfig(**{**base, **kw}))


@pytest.mark.parametrize("rule", [r for r in available_rules() if r != "fltrust"])
def test_every_rule_runs_on_a_shared_mask(tmp_path, rule):
    res = run(tmp_path, rule=rule, attack="alie", workers=11, compression="topk_shared",
              compression_kwargs={"ratio": 0.05}, rounds=1, eval_every=1)
    assert all(r["skipped"] == "" for r in res.history)


def test_fltrust_is_refused_with_compression():
    """Its reference is the server's dense gradient on a root set, beside compressed rows."""
    with pytest.raises(ValueError, match="does not combine with compression='topk'"):
        TrainConfig(rule="fltrust", server_root_samples=50, compression="topk")


@pytest.mark.parametrize("attack", attacks.available_attacks())
@pytest.mark.parametrize("compression", ["topk", pytest.param("randk_shared",
                                                               marks=pytest.mark.slow)])
def test_every_attack_runs_compressed(tmp_path, attack, compression):
    res = run(tmp_path, rule="trimmed_mean", attack=attack, compression=compression,
              compression_kwargs={"ratio": 0.05}, round_timeout_s=5.0, rounds=1, eval_every=1)
    assert len(res.history) == 1


@pytest.mark.parametrize("compression,kw,per_message", [
    ("none", {}, lambda d, k: 4 * d),
    ("topk", {"ratio": 0.01}, lambda d, k: 8 * k),
    ("approx_topk", {"ratio": 0.01}, lambda d, k: 8 * k),
    ("randk_shared", {"ratio": 0.01}, lambda d, k: 4 * k),
    ("topk_shared", {"ratio": 0.01, "error_feedback": True}, lambda d, k: 4 * k),
])
def test_bytes_per_worker_and_round(tmp_path, compression, kw, per_message):
    res = run(tmp_path, rule="krum", attack="ipm", compression=compression, compression_kwargs=kw)
    d = res.params.numel()
    k = round(0.01 * d)
    for rec in res.history:
        assert rec["bytes_sent"] == {str(i): per_message(d, k) for i in range(10)}
        assert rec["bytes_round"] == 10 * per_message(d, k)


def test_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown compression 'gzip'"):
        TrainConfig(compression="gzip")
    with pytest.raises(ValueError, match="ratio"):
        TrainConfig(compression="topk", compression_kwargs={"ratio": 2})
    with pytest.raises(ValueError, match="worker_momentum=0.9 does not combine"):
        TrainConfig(compression="topk", worker_momentum=0.9)
    TrainConfig(compression="randk_shared", worker_momentum=0.9)  # RoSDHB: kept by the server
    with pytest.raises(ValueError, match="error_feedback needs a shared mask"):
        TrainConfig(compression="topk", compression_kwargs={"error_feedback": True})


@pytest.mark.parametrize("compression,extra", [
    ("topk_shared", {"compression_kwargs": {"ratio": 0.05, "error_feedback": True}}),
    ("randk_shared", {"compression_kwargs": {"ratio": 0.05}, "worker_momentum": 0.9}),
])
def test_a_checkpointed_run_resumes_with_its_compression_memory(tmp_path, compression, extra):
    kw = dict(rule="median", attack="alie", compression=compression, rounds=4, eval_every=4,
              **extra)
    whole = run(tmp_path / "whole", **kw)
    run(tmp_path / "split", **{**kw, "rounds": 2, "checkpoint_every": 2})
    resumed = run(tmp_path / "split", **{**kw, "resume": True, "checkpoint_every": 2})
    assert whole.params.equal(resumed.params)


def test_a_worker_residual_runs_at_the_bytes_of_its_mask(tmp_path):
    """Error feedback on the worker costs no byte: k values per message under a shared mask."""
    res = run(tmp_path, rule="trimmed_mean", attack="alie", compression="topk_shared",
              compression_kwargs={"ratio": 0.01, "residual": True}, rounds=3, eval_every=3)
    k = round(0.01 * res.params.numel())
    assert [rec["bytes_round"] for rec in res.history] == [10 * 4 * k] * 3
    plain = run(tmp_path / "plain", rule="trimmed_mean", attack="alie",
                compression="topk_shared", compression_kwargs={"ratio": 0.01}, rounds=3,
                eval_every=3)
    assert not res.params.equal(plain.params)  # from round 1 on the messages carry e


@pytest.mark.parametrize("backend,why", [
    ("lambda", "a function keeps nothing between invocations"),
    ("ray_partition", "a resize deals workers to other actors"),
])
def test_backends_that_rebuild_workers_refuse_a_worker_residual(backend, why):
    from robustagg.backends.ray_partition import PartitionBackend
    from robustagg.backends.serverless.backend import LambdaBackend
    from robustagg.run.config import WorkerSpec

    specs = [WorkerSpec(worker_id=i, workers=2, model="logreg", seed=0,
                        compression="randk_shared",
                        compression_kwargs={"ratio": 0.1, "residual": True}) for i in range(2)]
    make = {"lambda": lambda: LambdaBackend(local=True), "ray_partition": PartitionBackend}
    with pytest.raises(ValueError, match=why):
        make[backend]().start(specs)
