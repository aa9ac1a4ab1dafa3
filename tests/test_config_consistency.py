"""A run is declared once: ``TrainConfig``. The composed Hydra config of the default experiment
holds every TrainConfig field at its place, with TrainConfig's default, except the choices
``experiments/conf/config.yaml`` makes explicitly (named in the README); ``WorkerSpec`` shares
TrainConfig's names and defaults; ``python -m robustagg.training`` reads exactly its fields."""
import dataclasses
import inspect

import pytest
import torch

from experiments.schema import task_config, train_config
from robustagg.run.config import TrainConfig, WorkerSpec, experiment_paths
from robustagg.run.data import DATASETS
from robustagg.run.models import MODELS
from tests.experiments.conftest import compose  # noqa: F401  (the fixture)

# The default experiment's own choices (config.yaml, and the ray option's process packing).
DEFAULT_EXPERIMENT = {"attack": "gaussian", "momentum": 0.0,
                      "backend_kwargs": {"workers_per_actor": 5}}


def given(factory, kwargs: dict) -> dict:
    """``kwargs`` without the arguments that equal ``factory``'s defaults."""
    params = inspect.signature(factory).parameters

    def same(v, default):
        return list(v) == list(default) if isinstance(v, (list, tuple)) else v == default

    return {k: v for k, v in kwargs.items() if k not in params or not same(v, params[k].default)}


def settings(cfg: TrainConfig) -> dict:
    """Every field, with the rule and attack compared as the objects they build and the
    dataset's and model's kwargs without their factory's defaults (names given with all their
    defaults build the same objects as names given alone)."""
    out = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
           if f.name not in ("rule", "rule_kwargs", "pre", "attack", "attack_kwargs")}
    out["dataset_kwargs"] = given(DATASETS[cfg.dataset], cfg.dataset_kwargs)
    out["model_kwargs"] = given(MODELS[cfg.model], cfg.model_kwargs)
    rule, attack = cfg.build_rule(), cfg.build_attack()
    out["rule"] = repr(rule)
    out["attack"] = None if attack is None else (repr(attack), attack.omniscient, getattr(
        attack, "generator", torch.Generator()).get_state().tolist())
    return out


def differences(a: TrainConfig, b: TrainConfig) -> dict:
    sa, sb = settings(a), settings(b)
    return {k: (sa[k], sb[k]) for k in sa if sa[k] != sb[k]}


def test_default_experiment_is_train_config_defaults_plus_its_declared_choices(compose):
    composed = train_config(task_config(compose()))
    assert differences(composed, TrainConfig(**DEFAULT_EXPERIMENT)) == {}


def test_undoing_the_declared_choices_gives_train_config(compose):
    composed = train_config(task_config(compose("attack=none", "optimizer.momentum=0.9",
                                                "backend=local")))
    assert differences(composed, TrainConfig(backend="local")) == {}


def test_the_comparison_sees_a_changed_default(compose):
    # what the two tests above rely on: a default that differs is reported, field by field
    composed = train_config(task_config(compose("optimizer.lr=0.2", "rule.f=1", "seed=3",
                                                "model.hidden=[32]")))
    diff = differences(composed, TrainConfig(**DEFAULT_EXPERIMENT))
    # the attack's seed follows seed
    assert set(diff) == {"lr", "rule", "seed", "attack", "model_kwargs"}


def test_every_field_has_its_place_in_the_composed_config(compose):
    cfg = task_config(compose())
    for name, where in experiment_paths().items():
        group, _, key = where.partition(".")
        assert group in cfg, f"{name}: no {group!r} in the experiment config"
        if key and key not in ("name", "*"):
            assert key in cfg[group], f"{name}: no {where!r} in the experiment config"
    # and nothing in it that TrainConfig does not have (option settings aside)
    places = {w.partition(".")[0] for w in experiment_paths().values()}
    assert set(cfg) == places
    for group in ("optimizer", "backend"):
        keys = {w.partition(".")[2] for w in experiment_paths().values() if w.startswith(group)}
        assert set(cfg[group]) == keys


def test_worker_spec_shares_train_config_names_and_defaults():
    defaults = TrainConfig()
    shared = [f for f in dataclasses.fields(WorkerSpec) if f.name in TrainConfig.__dataclass_fields__]
    assert len(shared) >= 10
    for f in shared:
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        # a worker carries out only a data or fault attack; workers is given (no default)
        if f.name not in ("attack", "workers"):
            assert value == getattr(defaults, f.name), f.name
    cfg = TrainConfig(workers=5, byzantine=1, rule="median", attack="label_flip", seed=3,
                      partition="shards", batch_size=8, backend="local")
    spec = WorkerSpec.of(cfg, 4, [1, 2], worker_attack=True)
    assert (spec.workers, spec.is_byzantine, spec.attack, spec.seed, spec.partition,
            spec.batch_size) == (5, True, "label_flip", 3, "shards", 8)
    assert WorkerSpec.of(cfg, 0, [0], worker_attack=True).attack == "none"


def test_cli_reads_train_config_fields():
    from robustagg.training.__main__ import parse

    got = parse(["workers=4", "lr=0.5", "progress=false", "address=none", "rule=median",
                 'attack_kwargs={"std": 1}', 'pre=["nnm"]'])
    assert got == {"workers": 4, "lr": 0.5, "progress": False, "address": None,
                   "rule": "median", "attack_kwargs": {"std": 1}, "pre": ["nnm"]}
    with pytest.raises(SystemExit, match="'wokers=3'"):
        parse(["wokers=3"])
    with pytest.raises(SystemExit, match="workers='four'"):
        parse(["workers=four"])
