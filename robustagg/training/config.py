"""``TrainConfig``: every setting of a training run, validated when it is constructed.

Construction checks types and ranges and builds the rule once to check its bound on n
(``rule.check(workers)``), so that ``Krum needs n >= 2f + 3 workers, got n=6, f=2`` appears
before any Ray process starts. The default is the small default experiment: digits, an MLP,
10 workers of which 2 Byzantine, Krum, no attack.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import robustagg as ra

from ..backends.base import from_plain

from .data import PARTITIONS
from .worker import build_named, make_attack

OPTIMIZERS = ("sgd", "adam")


def _pre_entry(entry):
    """A ``pre`` entry as ``(name, kwargs)``: accepts ``"nnm"``, ``("nnm", {...})`` or
    ``{"name": "nnm", ...}``."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) or hasattr(entry, "items"):
        entry = dict(entry)
        if "name" not in entry:
            raise ValueError(f"pre: a dict entry needs a 'name' key, got {entry!r}")
        name = entry.pop("name")
        return name, entry
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        return entry[0], dict(entry[1] or {})
    raise ValueError(f"pre: entries are names, (name, kwargs) or dicts with 'name', got {entry!r}")


@dataclass
class TrainConfig:
    """Settings of one run. Objects (a Rule, an Attack, a dataset, an nn.Module factory) may
    replace the names of ``rule``, ``attack``, ``dataset`` and ``model`` for in-process and Ray
    backends."""

    # data and model
    dataset: object = "digits"
    dataset_kwargs: dict = field(default_factory=dict)
    model: object = "mlp"
    model_kwargs: dict = field(default_factory=dict)
    partition: str = "iid"            # iid | dirichlet | shards
    alpha: float = 1.0                # Dirichlet concentration
    shards_per_worker: int = 2
    # workers and the adversary (workers n-f .. n-1 are the Byzantine ones)
    workers: int = 10
    byzantine: int = 2
    rule: object = "krum"
    rule_kwargs: dict = field(default_factory=dict)
    pre: list = field(default_factory=list)
    attack: object = "none"          # a name of attacks.available_attacks(), or an Attack
    attack_kwargs: dict = field(default_factory=dict)
    # optimization
    rounds: int = 100
    batch_size: int = 32
    lr: float = 0.1
    optimizer: str = "sgd"            # sgd | adam
    momentum: float = 0.9             # server-side (SGD) momentum
    weight_decay: float = 0.0
    worker_momentum: float = 0.0      # beta of worker momentum (Karimireddy et al. 2021); 0 = off
    # evaluation, output, checkpoints
    eval_every: int = 10
    seed: int = 0
    output_dir: str | None = None     # default: runs/<name>
    checkpoint_every: int = 0         # 0 = never
    resume: bool = False
    progress: bool = True
    # where the workers run
    backend: str = "ray"              # ray | local | lambda
    backend_kwargs: dict = field(default_factory=dict)
    address: str | None = None        # None: start a local Ray; "auto" or "host:port": join
    round_timeout_s: float = 60.0
    num_cpus: int = 2                 # local Ray only
    object_store_mb: int = 300        # local Ray only
    connect_timeout_s: float = 15.0

    def __post_init__(self):
        self._check_numbers()
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got optimizer={self.optimizer!r}")
        if self.partition not in PARTITIONS:
            raise ValueError(f"partition must be one of {PARTITIONS}, got partition={self.partition!r}")
        self.pre = [_pre_entry(e) for e in self.pre]
        self.build_rule().check(self.workers)  # the bound, before anything starts
        atk = self.build_attack()
        if atk is not None and self.byzantine == 0:
            raise ValueError(f"attack={self.attack!r} needs byzantine >= 1, got byzantine=0")

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
        need(is_int(self.eval_every) and self.eval_every >= 1, "eval_every", "an int >= 1")
        need(is_int(self.checkpoint_every) and self.checkpoint_every >= 0, "checkpoint_every",
             "an int >= 0")
        need(is_int(self.seed), "seed", "an int")
        need(self.lr > 0, "lr", "> 0")
        need(0 <= self.momentum < 1, "momentum", "in [0, 1)")
        need(0 <= self.worker_momentum < 1, "worker_momentum", "in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        need(self.alpha > 0, "alpha", "> 0")
        need(self.round_timeout_s > 0, "round_timeout_s", "> 0")
        need(is_int(self.num_cpus) and self.num_cpus >= 1, "num_cpus", "an int >= 1")
        need(is_int(self.object_store_mb) and self.object_store_mb >= 80, "object_store_mb",
             "an int >= 80")

    # ---- builders (the server and the CLI use these; each call returns a fresh object) ----
    def build_rule(self):
        """The aggregation rule (a :class:`robustagg.Rule`), with ``pre`` in front if any.
        Rules and pre-aggregations taking ``f`` get ``f = byzantine`` unless given; those taking
        ``seed`` get the run's seed."""
        defaults = {"f": self.byzantine, "seed": self.seed}
        if isinstance(self.rule, ra.Rule):
            rule = self.rule
        else:
            rule = build_named(ra.aggregator, self.rule, self.rule_kwargs, defaults)
        if not self.pre:
            return rule
        pre = [build_named(ra.pre_aggregator, n, kw, defaults) for n, kw in self.pre]
        return ra.Pipeline(pre=pre, rule=rule)

    def build_attack(self):
        """The attack object (``attacks.attack(name, **attack_kwargs)``, or a copy of the
        ``Attack`` given), or None for "none"."""
        return make_attack(self.attack, self.attack_kwargs, self.seed, n=self.workers)

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

    @property
    def run_dir(self) -> str:
        return self.output_dir or os.path.join("runs", self.name)

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
        """Build from a mapping (e.g. a Hydra/OmegaConf config); unknown keys are an error."""
        return from_plain(cls, d)
