"""The experiment config's schema, generated from :class:`robustagg.run.config.TrainConfig`, and
the way back from a composed config to a ``TrainConfig``.

Nothing here declares a setting: every field of the experiment config, its type and default come
from ``TrainConfig`` (each field says where the config holds it, see
:func:`robustagg.run.config.experiment_paths`), and the settings of a rule, pre-aggregation,
attack, dataset or model from the constructor (or factory) registered under its name
(:func:`signature_schema`). So a typo or a wrong type fails when Hydra composes the config, with
Hydra's message, before anything runs; and ``make run`` and ``train(TrainConfig())`` differ only
where ``conf/config.yaml`` says so.

Each option file of a group extends the schema of what it names
(``defaults: [/schema/<group>/<name>@_here_]``), which makes it closed: ``rule.F=3`` or
``byzantine=two`` is refused at start. A user's own option without a schema (a file with
``_target_`` and its arguments) stays open, since only its own constructor knows its arguments.

``f`` and ``seed`` fields default to ``${byzantine}`` and ``${seed}``: a rule or pre-aggregation
assumes as many Byzantine workers as the experiment has, unless the config says otherwise.
"""
import collections.abc
import dataclasses
import inspect
import types
import typing
from dataclasses import field, make_dataclass
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.utils import get_method, instantiate
from omegaconf import II, MISSING, OmegaConf

# Arguments that are not settings (objects a config cannot hold, or given by the run).
_SKIP = {"generator", "input_shape", "num_classes"}
# Defaults that follow the experiment rather than the class.
_FOLLOW = {"f": II("byzantine"), "seed": II("seed")}
_PLAIN = (int, float, bool, str)


def _field_type(hint):
    """``hint`` as a type OmegaConf checks (``int | None`` becomes ``Optional[int]``, a sequence
    of ints ``List[int]``, a dict ``Dict[str, Any]``), or None when it is not a plain setting."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if hint in _PLAIN:
        return hint
    if hint is dict:
        return Dict[str, Any]
    if origin in (typing.Union, types.UnionType) and len(args) == 1 and args[0] in _PLAIN:
        return Optional[args[0]]
    if origin in (list, tuple, collections.abc.Sequence) and args and args[0] in _PLAIN \
            and (len(args) == 1 or args[1] is Ellipsis):
        return List[args[0]]
    return None


def _default(value):
    if isinstance(value, (list, tuple)):
        return field(default_factory=lambda: list(value))
    if isinstance(value, dict):
        return field(default_factory=lambda: dict(value))
    return field(default=value)


def signature_schema(name: str, target, base=()) -> type:
    """A dataclass with ``name`` plus one typed field per setting of ``target`` (a class's
    constructor or a factory function): its default, or ``${byzantine}`` for ``f`` and
    ``${seed}`` for ``seed``."""
    hints = typing.get_type_hints(target.__init__ if isinstance(target, type) else target)
    fields = []
    for p in inspect.signature(target).parameters.values():
        kind = _field_type(hints.get(p.name))
        if p.name in _SKIP or kind is None or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = _FOLLOW.get(p.name, MISSING if p.default is p.empty else p.default)
        fields.append((p.name, kind, _default(default)))
    label = getattr(target, "__name__", name)
    return make_dataclass(f"{label}Config", [("name", str, field(default=name))] + fields,
                          bases=base)


def _registered():
    """``(group, name, target)`` of every registered rule, pre-aggregation, attack, dataset,
    model and compressor."""
    from attacks.registry import ATTACKS
    from robustagg.compression import compressor_classes
    from robustagg.rules.registry import pre_aggregator_classes, rule_classes
    from robustagg.run.data import DATASETS
    from robustagg.run.models import MODELS

    for group, table in (("rule", rule_classes()), ("pre", pre_aggregator_classes()),
                         ("attack", ATTACKS), ("dataset", DATASETS), ("model", MODELS),
                         ("compression", compressor_classes())):
        for name, target in table.items():
            yield group, name, target


# --- the parts generated from TrainConfig ----------------------------------------------------------
def _train_fields():
    """``(name, where, type, default field)`` of every TrainConfig field the config holds."""
    from robustagg.run.config import TrainConfig, experiment_paths
    from robustagg.run.data import PARTITIONS

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        where = experiment_paths().get(f.name)
        if where is None:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kind = _field_type(hints[f.name])
        if f.name == "partition":  # closed: one of the partitions
            kind = Enum("Partition", {p: p for p in PARTITIONS})
            default = kind(default)
        yield f.name, where, kind, _default(default)


def group_schema(group: str) -> type:
    """The base schema of ``group``: ``name`` and the group's own TrainConfig fields (e.g.
    ``optimizer``: ``lr``, ``momentum``, ...); its options add their own settings."""
    fields = [(where.split(".", 1)[1], kind, dflt) for _, where, kind, dflt in _train_fields()
              if where.startswith(group + ".") and where.split(".", 1)[1] not in ("name", "*")]
    return make_dataclass(f"{group.capitalize()}Schema", [("name", str, field(default=MISSING))]
                          + fields)


def experiment_schema() -> type:
    """The top level: TrainConfig's top-level fields, ``pre`` (named pre-aggregations), and one
    ``Any`` node per group, so that a user's ``_target_`` option composes too (the built-in
    options are closed by the schemas they extend)."""
    nodes, top = [], []
    for name, where, kind, dflt in _train_fields():
        group = where.split(".")[0]
        if "." not in where and name != "pre":
            top.append((name, kind, dflt))
        elif group not in [n for n, _, _ in nodes]:  # in the order TrainConfig names them
            nodes.append((group, Dict[str, Any], field(default_factory=dict)) if group == "pre"
                         else (group, Any, field(default=MISSING)))
    return make_dataclass("Experiment", nodes + top)


def register() -> None:
    """Put the schemas into Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="experiment_schema", node=experiment_schema())
    bases = {g: group_schema(g) for g in ("dataset", "optimizer", "backend", "model")}
    for g in ("optimizer", "backend"):
        cs.store(group=f"schema/{g}", name="base", node=bases[g])
    for group, name, target in _registered():
        base = (bases[group],) if group in ("dataset", "model") else ()
        cs.store(group=f"schema/{group}", name=name, node=signature_schema(name, target, base))
    cs.store(group="schema/attack", name="none", node=make_dataclass(
        "NoAttack", [("name", str, field(default="none"))]))


# --- from a composed config to a TrainConfig -------------------------------------------------------
def task_config(cfg) -> dict:
    """The experiment part of a composed config (no ``hydra`` node), resolved to plain data."""
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return OmegaConf.to_container(task, resolve=True, enum_to_str=True)


def train_config(config: dict, output_dir=None):
    """The :class:`~robustagg.run.config.TrainConfig` of a resolved experiment config (a dict
    as :func:`task_config` returns), read through each field's place in the config. A group
    option with ``_target_`` (a user's own class or factory) becomes that object. Constructing
    the TrainConfig checks every value and the rule's bound, so this is the check that runs
    before any Ray process starts."""
    from robustagg.run.config import TrainConfig, experiment_paths

    nodes = {k: dict(v) for k, v in config.items() if isinstance(v, dict)}
    paths = experiment_paths()
    kwargs = {}
    for name, where in paths.items():
        group, _, key = where.partition(".")
        if not key:
            kwargs[name] = config[group]
        elif key not in ("name", "*"):
            kwargs[name] = nodes[group].pop(key)
    for name, where in paths.items():  # then the options: their name and their other keys
        group, _, key = where.partition(".")
        node = nodes.get(group, {})
        if key == "name":
            kwargs[name] = get_method(node["_target_"]) if "_target_" in node else node["name"]
        elif key == "*":
            kwargs[name] = {k: v for k, v in node.items() if k not in ("name", "_target_")}
    pre = list(kwargs["pre"].values())
    if "_target_" in nodes["rule"] or any("_target_" in p for p in pre):
        # a user's own rule or pre-aggregation: the objects, built here (Hydra's instantiate)
        import robustagg as ra

        def build(node, factory):
            return instantiate(node) if "_target_" in node else factory(**node)

        rule = build(nodes["rule"], ra.aggregator)
        if pre:
            rule = ra.Pipeline(pre=[build(p, ra.pre_aggregator) for p in pre], rule=rule)
        kwargs.update(rule=rule, rule_kwargs={}, pre=[])
    else:
        kwargs["pre"] = [dict(p) for p in pre]
    if "_target_" in nodes["attack"]:  # a user's own attack: the training loop takes the object
        kwargs.update(attack=instantiate(nodes["attack"]), attack_kwargs={})
    return TrainConfig(**kwargs, output_dir=None if output_dir is None else str(output_dir))


def preflight(cfg, where: str = ""):
    """Check a composed config without running it (the sweeper calls this for every cell before
    the first one starts); raises ``ValueError`` naming ``where`` and the problem."""
    try:
        return train_config(task_config(cfg))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where + ': ' if where else ''}{e}") from e
