"""The training loop end to end with in-process workers (the ``local`` backend): accuracy,
attacks, faults, non-finite aggregates, worker momentum, checkpoints, determinism, metrics.

The Ray backend is checked against these same runs in test_ray.py.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from robustagg.backends.base import WorkerSpec
from robustagg.training import TrainConfig, train
from robustagg.run import worker as W
from robustagg.training.metrics import FIELDS, read_jsonl
from robustagg.run.models import build_model
from robustagg.training.server import ParameterServer


def run(tmp_path, name, **kw):
    kw = {"backend": "local", "progress": False, "output_dir": str(tmp_path / name), **kw}
    return train(TrainConfig(**kw))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return run(tmp_path_factory.mktemp("clean"), "clean", rule="mean", rounds=40)


def test_clean_digits_reaches_090(clean):
    assert clean.final_accuracy >= 0.9
    assert [r["round"] for r in clean.history] == list(range(40))


@pytest.mark.parametrize("rule,robust", [("mean", False), ("krum", True), ("median", True),
                                         ("trimmed_mean", True)])
def test_gaussian_attack_breaks_mean_not_robust_rules(tmp_path, rule, robust):
    # logistic regression: bounded honest gradients, so noise of std 200 dominates the mean
    res = run(tmp_path, rule, model="logreg", rule=rule, attack="gaussian", rounds=30)
    clean = run(tmp_path, rule + "-clean", model="logreg", rule=rule, rounds=30)
    if robust:
        assert res.final_accuracy >= clean.final_accuracy - 0.1 and res.final_accuracy > 0.8
    else:
        assert res.final_accuracy < 0.3 and clean.final_accuracy > 0.8


def test_krum_never_selects_gaussian_rows(tmp_path):
    res = run(tmp_path, "k", rule="krum", attack="gaussian", rounds=5)
    for r in res.history:
        assert r["byzantine_share"] == 0.0 and r["selected"][0] in range(8)
        assert r["dist_honest_mean"] < 100  # a selected honest gradient is near the honest mean
    mean = run(tmp_path, "m", rule="mean", attack="gaussian", rounds=1).history[0]
    # the mean moves by (sum of two N(0, 200^2 I_d) rows)/10: norm about 200*sqrt(2d)/10
    d = 4810
    assert mean["dist_honest_mean"] == pytest.approx(200 * (2 * d) ** 0.5 / 10, rel=0.1)


def test_nonfinite_aggregate_is_skipped(tmp_path):
    res = run(tmp_path, "nan", rule="mean", attack="nan", rounds=3)
    assert all(r["skipped"] == "non-finite aggregate" for r in res.history)
    init = torch.nn.utils.parameters_to_vector(build_model("mlp", (64,), 10, seed=0).parameters())
    assert torch.equal(res.params, init.detach())  # nothing reached the model
    res = run(tmp_path, "nan-krum", rule="krum", attack="nan", rounds=3)
    assert not any(r["skipped"] for r in res.history) and torch.isfinite(res.params).all()


def test_crash_is_an_omission_and_run_finishes(tmp_path, clean):
    res = run(tmp_path, "crash", rule="mean", rounds=40, attack="crash", attack_kwargs={"round": 5})
    for r in res.history:
        assert r["omitted"] == ({} if r["round"] < 5 else {"8": "crashed", "9": "crashed"})
        assert r["arrived"] == (10 if r["round"] < 5 else 8)
    assert res.summary["omissions"] == 2 * 35
    assert abs(res.final_accuracy - clean.final_accuracy) < 0.05


def test_too_many_omissions_fail_clearly(tmp_path):
    with pytest.raises(RuntimeError, match=r"round 0: only 5 of 7 workers answered.*"
                                           r"Krum needs n >= 2f \+ 3 workers, got n=5, f=2"):
        run(tmp_path, "q", rule="krum", workers=7, attack="crash", rounds=2)


def test_straggler_beyond_timeout_is_omitted(tmp_path):
    res = run(tmp_path, "s", rule="median", rounds=2, attack="straggle",
              attack_kwargs={"delay": 5.0}, round_timeout_s=1.0)
    assert all(set(r["omitted"]) == {"8", "9"} and "timeout" in r["omitted"]["8"]
               for r in res.history)


def test_checkpoint_then_resume_equals_uninterrupted(tmp_path):
    # small noise: the mean lets it through, so the attack generator's state matters too
    kw = dict(rule="mean", attack="gaussian", attack_kwargs={"std": 0.05}, worker_momentum=0.5,
              checkpoint_every=3)
    full = run(tmp_path, "full", rounds=12, **kw)
    run(tmp_path, "part", rounds=6, **kw)  # "interrupted" after round 6
    resumed = run(tmp_path, "part", rounds=12, resume=True, **kw)
    assert torch.equal(resumed.params, full.params)
    logged = read_jsonl(os.path.join(resumed.output_dir, "metrics.jsonl"))
    assert [r["round"] for r in logged] == list(range(12))
    assert [r["train_loss"] for r in logged] == [r["train_loss"] for r in full.history]


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    a = run(tmp_path, "a", rule="trimmed_mean", attack="alie", rounds=8, partition="dirichlet")
    b = run(tmp_path, "b", rule="trimmed_mean", attack="alie", rounds=8, partition="dirichlet")
    c = run(tmp_path, "c", rule="trimmed_mean", attack="alie", rounds=8, partition="dirichlet",
            seed=1)
    assert torch.equal(a.params, b.params)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert not torch.equal(a.params, c.params)


def test_worker_momentum_matches_reference():
    cfg = TrainConfig(backend="local", rule="mean", byzantine=0, workers=3, lr=1.0, momentum=0.0,
                      worker_momentum=0.5, model="logreg", progress=False)
    server = ParameterServer(cfg)
    states = [W.build_worker(WorkerSpec(worker_id=i, workers=3, model="logreg", seed=0,
                                        batch_size=32, indices=s.indices))
              for i, s in enumerate(server.backend.states[i].spec for i in range(3))]
    p0 = server.params()
    g0 = [W.compute_gradient(s, p0, 0)[0] for s in states]
    server.step()
    p1 = server.params()
    assert torch.allclose(p1, p0 - torch.stack(g0).mean(0), atol=1e-6)  # m^0 = g^0
    g1 = [W.compute_gradient(s, p1, 1)[0] for s in states]
    server.step()
    m1 = [0.5 * a + 0.5 * b for a, b in zip(g1, g0)]
    assert torch.allclose(server.params(), p1 - torch.stack(m1).mean(0), atol=1e-6)


def test_metrics_files(clean):
    with open(os.path.join(clean.output_dir, "metrics.csv")) as fh:
        lines = fh.read().splitlines()
    assert lines[0].split(",") == FIELDS and len(lines) == 41
    evals = [r for r in clean.history if r.get("test_acc") is not None]
    assert [r["round"] for r in evals] == [9, 19, 29, 39]
    with open(os.path.join(clean.output_dir, "summary.json")) as fh:
        assert json.load(fh)["final_test_acc"] == clean.final_accuracy
    assert all(r["compute_s"] > 0 and r["round_s"] >= r["aggregation_s"] for r in clean.history)


def test_config_errors_before_anything_starts():
    with pytest.raises(ValueError, match="Krum needs n >= 2f \\+ 3 workers, got n=6, f=2"):
        TrainConfig(workers=6, byzantine=2)
    with pytest.raises(ValueError, match="byzantine must be an int in \\[0, workers=4\\)"):
        TrainConfig(workers=4, byzantine=4, rule="mean")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="needs byzantine >= 1"):
        TrainConfig(attack="gaussian", byzantine=0, rule="mean")
    with pytest.raises(ValueError, match="TrainConfig: unknown fields \\['wokers'\\]"):
        TrainConfig.from_dict({"wokers": 3})


def test_cli_bound_error_without_ray():
    code = ("import sys\nfrom robustagg.training.__main__ import main\n"
            "try:\n    main(['workers=6', 'rule=krum'])\nexcept SystemExit as e:\n"
            "    print(e)\nprint('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.splitlines() == ["error: Krum needs n >= 2f + 3 workers, got n=6, f=2", "False"]


def test_attack_object_equals_attack_name(tmp_path):
    import attacks

    by_name = run(tmp_path, "n", rule="mean", attack="gaussian", attack_kwargs={"std": 0.1},
                  rounds=3)
    by_object = run(tmp_path, "o", rule="mean", attack=attacks.Gaussian(std=0.1, seed=0), rounds=3)
    assert torch.equal(by_name.params, by_object.params)
    crash = run(tmp_path, "c", rule="median", attack=attacks.Crash(round=1), rounds=2)
    assert [len(r["omitted"]) for r in crash.history] == [0, 2]
