"""The one declaration of a run: :class:`TrainConfig`, and :class:`WorkerSpec` derived from it.

``TrainConfig`` holds every setting of a training run and its default, and is validated when it
is constructed: types and ranges, and the rule is built once to check its bound on n
(``rule.check(workers)``), so that ``Krum needs n >= 2f + 3 workers, got n=6, f=2`` appears
before any process starts. The defaults are the small default run: digits, an MLP, 10 workers
of which 2 Byzantine, Krum, no attack, SGD with server momentum 0.9.

Everything else that names a run's settings is derived from this class: the Hydra schema of
``python -m experiments.train`` (each field's ``at`` says where the experiment config holds it,
see :func:`experiment_paths`), the arguments of ``python -m robustagg.training``, and the
:class:`WorkerSpec` a worker rebuilds itself from.
"""
from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field

from robustagg.rules.registry import rule_classes

from .build import build_attack, build_compressor, build_rule, pre_entry
from .data import PARTITIONS
from .sharding import check_sharding

OPTIMIZERS = ("sgd", "adam")
# Settings a resumed run may change: they do not change what is computed (how long the run is,
# how often it evaluates, where its files go, how it reports, where and how the workers run;
# round_timeout_s decides which late answers count, as the machines' speed does).
RESUME_FREE = frozenset({"rounds", "eval_every", "output_dir", "checkpoint_every", "resume",
                         "progress", "backend", "address", "round_timeout_s", "num_cpus",
                         "object_store_mb", "connect_timeout_s", "backend_kwargs"})


def setting(default=dataclasses.MISSING, *, factory=dataclasses.MISSING, at: str | None):
    """A field of :class:`TrainConfig` that the experiment config holds in a group: ``at`` is
    ``"<group>.<key>"`` (a key of the group's node), ``"<group>.name"`` (the chosen option's
    name), ``"<group>.*"`` (the option's other keys) or ``None`` (not in the experiment config).
    Fields declared without ``setting`` sit at the top level under their own name."""
    return field(default=default, default_factory=factory, metadata={"at": at})


def experiment_paths() -> dict[str, str]:
    """``field name -> where the experiment config holds it`` (a top-level key, or
    ``group.key``, ``group.name``, ``group.*``), for every field the experiment config has."""
    out = {}
    for f in dataclasses.fields(TrainConfig):
        at = f.metadata.get("at", f.name)
        if at is not None:
            out[f.name] = at
    return out


def from_plain(cls, d):
    """``cls(**d)`` for a dataclass ``cls``, with unknown keys an error naming them."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}; known: {sorted(names)}")
    return cls(**dict(d))


@dataclass
class TrainConfig:
    """Settings of one run. Objects (a Rule, an Attack, a dataset, an nn.Module factory) may
    replace the names of ``rule``, ``attack``, ``dataset`` and ``model`` for in-process and Ray
    backends."""

    # data and model
    dataset: object = setting("digits", at="dataset.name")
    dataset_kwargs: dict = setting(factory=dict, at="dataset.*")
    partition: str = setting("iid", at="dataset.partition")    # iid | dirichlet | shards
    alpha: float = setting(1.0, at="dataset.alpha")            # Dirichlet concentration
    shards_per_worker: int = setting(2, at="dataset.shards_per_worker")
    model: object = setting("mlp", at="model.name")
    model_kwargs: dict = setting(factory=dict, at="model.*")
    # workers and the adversary (workers n-f .. n-1 are the Byzantine ones)
    workers: int = 10
    byzantine: int = 2
    rule: object = setting("krum", at="rule.name")
    rule_kwargs: dict = setting(factory=dict, at="rule.*")
    pre: list = field(default_factory=list)
    # each worker's shard size as its weight, for rules that take weights (rule.weighted)
    weighted: bool = False
    # training samples the server keeps out of every shard as its root set, and computes a
    # gradient on each round for rules that need one (FLTrust: rule.server_grad); 0 = none
    server_root_samples: int = 0
    attack: object = setting("none", at="attack.name")  # attacks.available_attacks(), or an Attack
    attack_kwargs: dict = setting(factory=dict, at="attack.*")
    # optimization
    rounds: int = 100
    batch_size: int = 32
    optimizer: str = setting("sgd", at="optimizer.name")       # sgd | adam
    lr: float = setting(0.1, at="optimizer.lr")
    momentum: float = setting(0.9, at="optimizer.momentum")    # server-side (SGD) momentum
    weight_decay: float = setting(0.0, at="optimizer.weight_decay")
    # step decay: from round r on, the learning rate is lr * lr_gamma ** (milestones <= r)
    lr_milestones: list[int] = setting(factory=list, at="optimizer.lr_milestones")
    lr_gamma: float = setting(0.1, at="optimizer.lr_gamma")
    # beta of worker momentum (Karimireddy et al. 2021); 0 = off
    worker_momentum: float = setting(0.0, at="optimizer.worker_momentum")
    # what workers send: robustagg.compression.available_compressors(), k/d as ratio
    compression: str = setting("none", at="compression.name")
    compression_kwargs: dict = setting(factory=dict, at="compression.*")
    # the server's state in k contiguous slices of the parameter vector, one shard each
    # (robustagg.training.sharded); 1 = one server holding everything
    server_shards: int = 1
    # evaluation, output, checkpoints
    eval_every: int = 10
    seed: int = 0
    # default outputs/runs/<name>-<time>-<settings hash>; Hydra: its run dir
    output_dir: str | None = setting(None, at=None)
    checkpoint_every: int = 0         # 0 = never
    resume: bool = False
    progress: bool = True
    # where the workers run
    backend: str = setting("ray", at="backend.name")           # ray | local | lambda
    # None: start a local Ray; "auto" or "host:port": join a running cluster
    address: str | None = setting(None, at="backend.address")
    round_timeout_s: float = setting(60.0, at="backend.round_timeout_s")
    num_cpus: int = setting(2, at="backend.num_cpus")          # local Ray only
    object_store_mb: int = setting(300, at="backend.object_store_mb")  # local Ray only
    connect_timeout_s: float = setting(15.0, at="backend.connect_timeout_s")
    backend_kwargs: dict = setting(factory=dict, at="backend.kwargs")

    def __post_init__(self):
        self._check_numbers()
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got optimizer={self.optimizer!r}")
        if self.partition not in PARTITIONS:
            raise ValueError(f"partition must be one of {PARTITIONS}, got partition={self.partition!r}")
        self.pre = [pre_entry(e) for e in self.pre]
        rule = self.build_rule()
        rule.check(self.workers)  # the bound, before anything starts
        self._check_rule_needs(rule)
        comp = self.build_compressor()
        if comp.name != "none" and self.worker_momentum and not comp.shared:
            raise ValueError(f"worker_momentum={self.worker_momentum} does not combine with "
                             f"compression={self.compression!r}: with per-worker masks the "
                             f"momenta would mix coordinates each worker chose for itself; use a "
                             f"shared mask (randk_shared, topk_shared), where the server keeps "
                             f"each worker's momentum of its messages (RoSDHB)")
        atk = self.build_attack()
        if atk is not None and self.byzantine == 0:
            raise ValueError(f"attack={self.attack!r} needs byzantine >= 1, got byzantine=0")
        if self.server_shards > 1:
            check_sharding(self, rule, atk)
            if self.lr_milestones:
                raise ValueError(f"lr_milestones={self.lr_milestones} needs server_shards=1: "
                                 f"a sharded server steps its slices with the constant lr")

    def _check_rule_needs(self, rule):
        """Weights for a rule that takes none, or a rule that needs the server's gradient
        without a root set: refused here, with what to do."""
        inner = getattr(rule, "rule", rule)  # the rule behind pre-aggregations
        if self.weighted and not rule.weighted:
            if inner.weighted:
                why = "its pre-aggregations mix workers (bucketing), which drops their weights"
            else:
                names = sorted(n for n, c in rule_classes().items() if c.weighted)
                why = f"{inner!r} does not take weights (rules that do: {', '.join(names)})"
            raise ValueError(f"weighted=True passes the shard sizes as per-worker weights, "
                             f"but {why}")
        if hasattr(inner, "server_grad") and self.server_root_samples < 1:
            raise ValueError(f"{inner!r} needs the server's gradient on a root set each round: "
                             f"set server_root_samples >= 1 (Cao et al. 2021 use 100)")
        if self.server_root_samples and self.build_compressor().name != "none":
            raise ValueError(f"server_root_samples={self.server_root_samples} does not combine "
                             f"with compression={self.compression!r}: the server's gradient "
                             f"would be dense beside compressed rows")

    def _check_numbers(self):
        def need(ok, name, rule):
            if not ok:
                raise ValueError(f"{name} must be {rule}, got {name}={getattr(self, name)!r}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        need(is_int(self.workers) and self.workers >= 1, "workers", "an int >= 1")
        need(is_int(self.byzantine) and 0 <= self.byzantine < self.workers, "byzantine",
             f"an int in [0, workers={self.workers})")
        need(is_int(self.rounds) and self.rounds >= 1, "rounds", "an int >= 1")
        need(is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an int >= 1")
        need(is_int(self.server_root_samples) and self.server_root_samples >= 0,
             "server_root_samples", "an int >= 0")
        need(isinstance(self.weighted, bool), "weighted", "a bool")
        need(is_int(self.server_shards) and self.server_shards >= 1, "server_shards",
             "an int >= 1")
        need(is_int(self.eval_every) and self.eval_every >= 1, "eval_every", "an int >= 1")
        need(is_int(self.checkpoint_every) and self.checkpoint_every >= 0, "checkpoint_every",
             "an int >= 0")
        need(is_int(self.seed), "seed", "an int")
        need(self.lr > 0, "lr", "> 0")
        need(0 <= self.momentum < 1, "momentum", "in [0, 1)")
        need(0 <= self.worker_momentum < 1, "worker_momentum", "in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        need(all(is_int(m) and m >= 1 for m in self.lr_milestones) and
             list(self.lr_milestones) == sorted(set(self.lr_milestones)), "lr_milestones",
             "increasing rounds >= 1")
        need(0 < self.lr_gamma <= 1, "lr_gamma", "in (0, 1]")
        need(self.alpha > 0, "alpha", "> 0")
        need(self.round_timeout_s > 0, "round_timeout_s", "> 0")
        need(is_int(self.num_cpus) and self.num_cpus >= 1, "num_cpus", "an int >= 1")
        need(is_int(self.object_store_mb) and self.object_store_mb >= 80, "object_store_mb",
             "an int >= 80")

    def lr_at(self, round: int) -> float:  # noqa: A002
        """The learning rate of round ``round`` (from 0): ``lr``, times ``lr_gamma`` for each
        milestone reached."""
        return self.lr * self.lr_gamma ** bisect.bisect_right(self.lr_milestones, round)

    # ---- objects named by the settings (each call returns a fresh object) ----
    def build_rule(self):
        """The aggregation rule (a :class:`robustagg.Rule`), with ``pre`` in front if any.
        Rules and pre-aggregations taking ``f`` get ``f = byzantine`` unless given; those taking
        ``seed`` get the run's seed."""
        return build_rule(self.rule, self.rule_kwargs, self.pre,
                          {"f": self.byzantine, "seed": self.seed})

    def build_attack(self):
        """The attack object (``attacks.attack(name, **attack_kwargs)``, or a copy of the
        ``Attack`` given), or None for "none"."""
        return build_attack(self.attack, self.attack_kwargs, self.seed, n=self.workers)

    def build_compressor(self):
        """The compressor (``robustagg.compression.compressor(compression,
        **compression_kwargs)``, seeded with the run's seed unless given)."""
        return build_compressor(self.compression, self.compression_kwargs, self.seed)

    @property
    def byzantine_ids(self) -> list[int]:
        return list(range(self.workers - self.byzantine, self.workers))

    @property
    def name(self) -> str:
        def label(v):
            return v if isinstance(v, str) else type(v).__name__.lower()

        pre = "+".join(n for n, _ in self.pre)
        rule = f"{pre}+{label(self.rule)}" if pre else label(self.rule)
        return (f"{label(self.dataset)}-{label(self.model)}-{rule}-{label(self.attack)}"
                f"-n{self.workers}f{self.byzantine}-s{self.seed}")

    def result_settings(self) -> dict:
        """The settings that determine the run's result, as plain data (:meth:`to_dict`'s
        entries less :data:`RESUME_FREE`, floats as floats): what a resumed run must share with
        the checkpoint it continues, and what names a run's default folder."""
        hints = {f.name: f.type for f in dataclasses.fields(self)}
        out = {}
        for k, v in self.to_dict().items():
            if k in RESUME_FREE:
                continue
            if hints[k] == "float" and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            out[k] = v
        return out

    def to_dict(self) -> dict:
        """Plain data (objects given for rule/dataset/model appear as their repr)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v if isinstance(v, (str, int, float, bool, dict, list, type(None))) \
                else repr(v)
        out["pre"] = [[n, kw] for n, kw in self.pre]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a mapping; unknown keys are an error."""
        return from_plain(cls, d)


def _like(name: str):
    """A field with :class:`TrainConfig`'s default for the setting ``name``."""
    f = TrainConfig.__dataclass_fields__[name]
    if f.default_factory is not dataclasses.MISSING:
        return field(default_factory=f.default_factory)
    return field(default=f.default)


@dataclass
class WorkerSpec:
    """Everything worker ``worker_id`` (of ``workers``) needs to rebuild itself: the run's
    settings a worker reads, with :class:`TrainConfig`'s names and defaults (:meth:`of` takes
    them from a config), plus its shard and role.

    ``dataset``/``model`` are registry names (or, for in-process and Ray backends only, objects
    as accepted by ``load_dataset``/``build_model``). The shard is given by the partition
    recipe (``partition``, ``workers``, ``alpha``, ``shards_per_worker``, ``seed``) and, when
    the server already computed it, by ``indices`` (then the recipe is not re-run).
    ``is_byzantine`` says whether this worker is one of the Byzantine ones; ``attack`` names
    the data-poisoning or fault attack it carries out ("none" for an honest worker);
    model-poisoning attacks act on the server and never appear here.
    """

    worker_id: int
    workers: int
    dataset: object = _like("dataset")
    dataset_kwargs: dict = _like("dataset_kwargs")
    partition: str = _like("partition")
    alpha: float = _like("alpha")
    shards_per_worker: int = _like("shards_per_worker")
    indices: list | None = None
    model: object = _like("model")
    model_kwargs: dict = _like("model_kwargs")
    batch_size: int = _like("batch_size")
    seed: int = _like("seed")
    is_byzantine: bool = False
    attack: str = "none"
    attack_kwargs: dict = _like("attack_kwargs")
    compression: str = _like("compression")
    compression_kwargs: dict = _like("compression_kwargs")

    @classmethod
    def of(cls, cfg: TrainConfig, worker_id: int, indices: list | None = None,
           worker_attack: bool = False) -> "WorkerSpec":
        """Worker ``worker_id``'s spec in the run ``cfg``. ``worker_attack``: the run's attack is
        a data-poisoning or fault attack, which its Byzantine workers carry out."""
        shared = {name: getattr(cfg, name) for name in _SHARED}
        byz = worker_id in cfg.byzantine_ids
        return cls(worker_id=worker_id, indices=indices, is_byzantine=byz,
                   attack=cfg.attack if worker_attack and byz else "none",
                   dataset_kwargs=dict(cfg.dataset_kwargs), model_kwargs=dict(cfg.model_kwargs),
                   compression_kwargs=dict(cfg.compression_kwargs),
                   attack_kwargs=dict(cfg.attack_kwargs) if worker_attack else {}, **shared)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "WorkerSpec":
        return from_plain(cls, d)


# the settings a worker reads from the run's config, under the config's names
_SHARED = ("workers", "dataset", "partition", "alpha", "shards_per_worker", "model", "batch_size",
           "seed", "compression")
