"""Config composition: every option of every group composes into a valid TrainConfig; wrong
values fail at composition with Hydra's message; the rule's bound fails before Ray starts; a
user's own rule plugs in through ``_target_``. No Ray here."""
import textwrap

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

import robustagg as ra
from experiments.schema import task_config, train_config
from tests.experiments.conftest import CONF

GROUPS = ["rule", "pre", "attack", "dataset", "model", "optimizer", "backend"]
# Bulyan needs n >= 4f + 3; Krum after Bucketing(s=2) needs n/2 >= 2f + 3; FLTrust a root set
EXTRA = {"bulyan": ["workers=11"], "bucketing": ["workers=14"],
         "fltrust": ["server_root_samples=100"]}
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


def test_every_group_has_options():
    for g in GROUPS:
        assert any(grp == g for grp, _ in OPTIONS), f"group {g} has no option"


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_each_option_composes_into_a_train_config(compose, group, option):
    override = f"pre=[{option}]" if group == "pre" else f"{group}={option}"
    cfg = compose(override, *EXTRA.get(option, []))
    tc = train_config(task_config(cfg))
    # the option's name reaches the TrainConfig field it sets
    got = {
        "rule": lambda: tc.rule,
        "pre": lambda: [name for name, _ in tc.pre],
        "attack": lambda: tc.attack,
        "dataset": lambda: tc.dataset,
        "model": lambda: tc.model,
        "optimizer": lambda: tc.optimizer,
        "backend": lambda: tc.backend,
    }[group]()
    name = cfg.pre[option].name if group == "pre" else cfg[group].name
    assert got == ([name] if group == "pre" else name)
    # f follows byzantine unless set
    if "f" in cfg.get(group, {}) and group != "pre":
        assert cfg[group].f == cfg.byzantine
    tc.build_rule()  # the rule (and its pre-aggregations) build from the registry


def test_every_registered_name_has_an_option():
    import attacks.registry

    for group, table in [("rule", ra.rules.registry._RULES), ("pre", ra.rules.registry._PRE),
                         ("attack", attacks.registry.ATTACKS)]:
        names = {cls.name for cls in table.values()}
        # each option file extends the schema of the class it names: /schema/<group>/<name>
        covered = {line.split("/")[-1].split("@")[0] for p in (CONF / group).glob("*.yaml")
                   for line in p.read_text().splitlines() if f"/schema/{group}/" in line}
        assert names <= covered, f"{group}: no config for {sorted(names - covered)}"


def test_values_reach_the_train_config(compose):
    cfg = compose("rule=median", "attack=ipm", "attack.epsilon=0.5", "byzantine=3",
                  "pre=[bucketing,nnm]", "dataset.partition=dirichlet", "dataset.alpha=0.3",
                  "model=cnn", "optimizer=adam", "optimizer.lr=0.002", "workers=14", "seed=7")
    tc = train_config(task_config(cfg))
    # f follows byzantine; the rule's other settings are its constructor's defaults
    assert (tc.rule, tc.rule_kwargs["f"], tc.rule_kwargs["device"]) == ("median", 3, None)
    assert (tc.attack, tc.attack_kwargs) == ("ipm", {"epsilon": 0.5, "omniscient": True})
    assert tc.pre == [("bucketing", {"s": 2, "seed": 7}), ("nnm", {"f": 3})]
    assert (tc.partition, tc.alpha, tc.dataset, tc.model) == ("dirichlet", 0.3, "digits", "cnn")
    assert (tc.optimizer, tc.lr, tc.workers, tc.byzantine, tc.seed) == ("adam", 0.002, 14, 3, 7)
    rule = tc.build_rule()
    assert isinstance(rule, ra.Pipeline) and [type(p) for p in rule.pre] == [ra.Bucketing, ra.NNM]


def test_rule_device_setting_reaches_the_rule(compose):
    # the streaming settings of Krum & co. are config fields like any other (docs/kernels.md)
    tc = train_config(task_config(compose("rule=krum", "rule.device=cpu",
                                          "rule.chunk_columns=4096")))
    rule = tc.build_rule()
    assert (rule.device, rule.chunk_columns) == ("cpu", 4096)
    with pytest.raises(ValueError, match="Krum: device must be"):  # before any training
        train_config(task_config(compose("rule=krum", "rule.device=gpu"))).build_rule()


@pytest.mark.parametrize("overrides,needle", [
    (["rule.F=3"], "rule.F"),                      # a typo in a key
    (["byzantine=two"], "byzantine"),              # a wrong type
    (["dataset.partition=random"], "partition"),   # not one of iid/dirichlet/shards
    (["attack=ipm", "attack.epsilon=big"], "epsilon"),
    (["rule=krum_typo"], "rule/krum_typo"),        # an option that does not exist
    (["pre=[nnm]", "pre.nnm.tau=1"], "tau"),       # an argument the pre-aggregation lacks
])
def test_wrong_values_fail_at_composition(compose, overrides, needle):
    with pytest.raises((HydraException, OmegaConfBaseException)) as e:
        compose(*overrides)
    assert needle in str(e.value)


@pytest.mark.parametrize("overrides,message", [
    (["rule=krum", "workers=6", "byzantine=2"], "Krum needs n >= 2f + 3 workers, got n=6, f=2"),
    (["rule=bulyan", "workers=9", "byzantine=2"], "n=9, f=2"),
    (["byzantine=10"], "byzantine"),
])
def test_bound_fails_before_ray_starts(compose, monkeypatch, tmp_path, overrides, message):
    import robustagg.backends.ray_cluster as rc
    from experiments.train import run

    def no_ray(*a, **k):
        raise AssertionError("Ray was started before the config was checked")

    monkeypatch.setattr(rc, "ensure_ray", no_ray)
    monkeypatch.setattr(rc, "start_local", no_ray)
    with pytest.raises(ValueError) as e:
        run(compose(*overrides), tmp_path / "run")
    assert message in str(e.value)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_users_rule_plugs_in_by_target(compose, tmp_path, monkeypatch):
    """A rule class in the user's own module and a config file naming it, in the user's own
    config folder: no change to the package."""
    (tmp_path / "my_rules.py").write_text(textwrap.dedent("""
        import robustagg as ra

        class FirstRow(ra.Rule):
            bound = (4, 1)          # needs n >= 4f + 1
            def aggregate(self, x):
                return x[0]
    """))
    (tmp_path / "conf" / "rule").mkdir(parents=True)
    (tmp_path / "conf" / "rule" / "first_row.yaml").write_text(
        "_target_: my_rules.FirstRow\nf: ${byzantine}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    search = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    tc = train_config(task_config(compose("rule=first_row", "pre=[clip]", "byzantine=2", search)))
    rule = tc.build_rule()
    assert type(rule.rule).__name__ == "FirstRow" and rule.f == 2 and isinstance(rule.pre[0], ra.Clip)
    x = ra.functional.clip(__import__("torch").arange(20.0).reshape(10, 2), 1.0)
    assert rule(__import__("torch").arange(20.0).reshape(10, 2)).tolist() == x[0].tolist()
    with pytest.raises(ValueError, match="n=8, f=2"):
        train_config(task_config(compose("rule=first_row", "workers=8", "byzantine=2", search)))


def test_attack_by_target_is_built_and_passed_as_an_object(compose):
    import attacks

    cfg = task_config(compose())
    cfg["attack"] = {"_target_": "attacks.Gaussian", "std": 1.0}
    tc = train_config(cfg)
    atk = tc.build_attack()
    assert isinstance(atk, attacks.Gaussian) and atk.std == 1.0


def test_a_users_model_plugs_in_by_target(compose, tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        from torch import nn

        def tiny(input_shape, num_classes, hidden=4):
            return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))
    """))
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "tiny.yaml").write_text("_target_: my_models.tiny\nhidden: 8\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose("model=tiny", "model.hidden=3", f"hydra.searchpath=[file://{tmp_path / 'conf'}]")
    tc = train_config(task_config(cfg))
    assert tc.model.__name__ == "tiny" and tc.model_kwargs == {"hidden": 3}
    from robustagg.run.models import build_model

    net = build_model(tc.model, (64,), 10, **tc.model_kwargs)
    assert sum(p.numel() for p in net.parameters()) == 64 * 3 + 3 + 3 * 10 + 10
