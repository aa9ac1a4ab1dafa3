"""Structured configs: the types behind ``experiments/conf``, so a typo or a wrong type fails
when Hydra composes the config, with Hydra's message, before anything runs.

Each option file of a group extends one of these schemas (``defaults: [/schema/<group>/<name>@_here_]``),
which makes it closed: ``rule.F=3`` or ``byzantine=two`` is refused at start. The schemas of
``rule``, ``pre`` and ``attack`` are read from the registered classes' constructors
(:func:`signature_schema`), so they follow the registries; the others are written here. A
user's own option without a schema (a file with ``_target_`` and its arguments) stays open,
since only its own constructor knows its arguments.

``f`` and ``seed`` fields default to ``${byzantine}`` and ``${seed}``: a rule or pre-aggregation
assumes as many Byzantine workers as the experiment has, unless the config says otherwise.
"""
import inspect
import types
import typing
from dataclasses import dataclass, field, make_dataclass
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING


# --- rule, pre, attack: schemas read from the registered classes' signatures -------------------
@dataclass
class Named:
    name: str = MISSING


# Arguments that are not settings (objects a config cannot hold).
_SKIP = {"generator"}
# Defaults that follow the experiment rather than the class.
_FOLLOW = {"f": II("byzantine"), "seed": II("seed")}


def _field_type(hint):
    """``hint`` as a type OmegaConf checks (``int | None`` becomes ``Optional[int]``), or None
    when the argument is not a plain setting."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint in (int, float, bool, str):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 \
            and args[0] in (int, float, bool, str):
        return Optional[args[0]]
    return None


def signature_schema(name: str, cls) -> type:
    """A dataclass with ``name`` plus one typed field per setting of ``cls.__init__``: its
    default, or ``${byzantine}`` for ``f`` and ``${seed}`` for ``seed``."""
    hints = typing.get_type_hints(cls.__init__)
    fields = []
    for p in inspect.signature(cls).parameters.values():
        kind = _field_type(hints.get(p.name))
        if p.name in _SKIP or kind is None or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = _FOLLOW.get(p.name, MISSING if p.default is p.empty else p.default)
        fields.append((p.name, kind, field(default=default)))
    return make_dataclass(f"{cls.__name__}Config", [("name", str, field(default=name))] + fields)


def _registered():
    """``(group, name, class)`` of every registered rule, pre-aggregation and attack."""
    from attacks.registry import ATTACKS
    from robustagg.rules.registry import _PRE, _RULES

    for group, table in (("rule", _RULES), ("pre", _PRE), ("attack", ATTACKS)):
        for name, cls in table.items():
            yield group, name, cls


# --- dataset: robustagg.training.data, and how it is split among the workers ---------------------
class Partition(Enum):
    iid = "iid"
    dirichlet = "dirichlet"
    shards = "shards"


@dataclass
class Dataset(Named):
    """``partition``/``alpha``/``shards_per_worker`` split the training set among the workers;
    every other field goes to the dataset's loader."""
    partition: Partition = Partition.iid
    alpha: float = 1.0
    shards_per_worker: int = 2


@dataclass
class SplitDataset(Dataset):
    test_fraction: float = 0.2
    split_seed: int = 0


@dataclass
class SyntheticDataset(SplitDataset):
    features: int = 20
    samples: int = 2000
    task: str = "logistic"
    noise: float = 0.1


@dataclass
class FileDataset(Dataset):
    root: Optional[str] = None
    flatten: bool = True


# --- model: robustagg.training.models ------------------------------------------------------------
@dataclass
class MLPModel(Named):
    hidden: List[int] = field(default_factory=lambda: [64])


@dataclass
class CNNModel(Named):
    channels: List[int] = field(default_factory=lambda: [16, 32])


# --- optimizer: the server's optimizer -----------------------------------------------------------
@dataclass
class Optimizer(Named):
    """``momentum``: server-side (SGD); ``worker_momentum``: each worker sends its momentum
    instead of its gradient (Karimireddy et al. 2021), 0 = off."""
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    worker_momentum: float = 0.0


# --- backend: where the workers run ---------------------------------------------------------------
@dataclass
class Backend(Named):
    """``address``: None starts a local Ray (``num_cpus``, ``object_store_mb``), "auto" or
    "host:port" joins a running cluster. ``kwargs`` go to the backend (e.g. Lambda's settings)."""
    address: Optional[str] = None
    num_cpus: int = 2
    object_store_mb: int = 300
    round_timeout_s: float = 60.0
    connect_timeout_s: float = 15.0
    kwargs: Dict[str, Any] = field(default_factory=dict)


# --- the experiment ------------------------------------------------------------------------------
@dataclass
class Experiment:
    """Top level. The groups are ``Any`` so that a user's ``_target_`` option composes too; the
    built-in options are closed by the schemas above, which they extend."""
    rule: Any = MISSING
    pre: Dict[str, Any] = field(default_factory=dict)
    attack: Any = MISSING
    dataset: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    backend: Any = MISSING
    workers: int = 10
    byzantine: int = 2
    rounds: int = 100
    seed: int = 0
    batch_size: int = 32
    eval_every: int = 10
    checkpoint_every: int = 0
    resume: bool = False  # continue from the run folder's last checkpoint (give hydra.run.dir)
    progress: bool = True


def register() -> None:
    """Put the schemas into Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="experiment_schema", node=Experiment)
    for group, kind, node in [
        ("dataset", "split", SplitDataset), ("dataset", "synthetic", SyntheticDataset),
        ("dataset", "files", FileDataset),
        ("model", "plain", Named), ("model", "mlp", MLPModel), ("model", "cnn", CNNModel),
        ("optimizer", "base", Optimizer), ("backend", "base", Backend),
    ]:
        cs.store(group=f"schema/{group}", name=kind, node=node)
    for group, name, cls in _registered():
        cs.store(group=f"schema/{group}", name=name, node=signature_schema(name, cls))
    cs.store(group="schema/attack", name="none", node=Named(name="none"))
