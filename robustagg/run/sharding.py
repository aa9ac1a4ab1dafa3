"""What a sharded parameter server can run: the slices of the parameter vector, and which rules
and attacks decompose over them.

With ``TrainConfig(server_shards=k)`` the flat parameter vector ``[d]`` is cut into k
contiguous slices (:func:`shard_bounds`), each owned by a shard holding that slice of the
parameters, of the optimizer state and of every worker's gradient. A rule runs on the slices
when what it needs from whole rows decomposes over disjoint columns:

- **coordinate-wise** (mean, median, trimmed mean): each shard runs the rule on its slice;
- **selection** (Krum, multi-Krum, Bulyan, NNM): squared distances add over disjoint slices,
  so the coordinator sums the shards' partial ``[n, n]`` matrices, selects, and each shard
  finishes its slice (the mean of the selected rows, Bulyan's coordinate phase, the mixing);
- **norm-based** (geometric median, centered clipping, clip, ARC): norms come from summed
  partial sums of squares; the coordinator computes the weights or scales, each shard
  applies them to its slice.

A model attack runs on the shards when it is coordinate-wise (its forged row is a per-column
function of the honest rows): ALIE (Baruch et al. 2019: μ and σ per coordinate), IPM, sign
flip, NaN and Inf. Data attacks and faults act on the workers and need nothing here.
"""
from __future__ import annotations

from robustagg.kernels import distance_group_width
from robustagg.rules import (ARC, NNM, Bulyan, CenteredClipping, Clip, CoordinateMedian,
                             GeometricMedian, Krum, Mean, MultiKrum, TrimmedMean)

COORDINATE_RULES = (Mean, CoordinateMedian, TrimmedMean)
SELECTION_RULES = (Krum, MultiKrum, Bulyan)
NORM_RULES = (GeometricMedian, CenteredClipping)
PRE_AGGREGATIONS = (NNM, Clip, ARC)
# model attacks whose forged rows are per-coordinate functions of the honest rows
COORDINATE_ATTACKS = ("alie", "ipm", "sign_flip", "nan", "inf")


def shard_bounds(d: int, k: int) -> list[tuple[int, int]]:
    """The k contiguous slices ``[lo, hi)`` of ``range(d)``, cut between the column groups of
    :func:`robustagg.kernels.distance_group_width` (a power of two, at least 256, that depends
    on d only), the groups shared out as evenly as whole groups allow. The cuts make sharded
    rules give the unsharded bits: the distance kernel's group partials add up over the slices
    in the same order as over whole rows, and torch's vectorised reductions over rows (the mean
    of the rows, nearest-neighbour mixing) compute each column of a slice with the same
    arithmetic as that column of the whole matrix, which holds for slices starting at multiples
    of 64 (tests/training/test_sharded.py checks both). So k shards need at least k groups:
    d has 16 to 32 groups (fewer below d = 4096) up to d = 2^20, and ``ceil(d / 65536)`` from
    there on."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"server_shards must be an int >= 1, got server_shards={k!r}")
    width = distance_group_width(d)
    groups = max(-(-d // width), 1)
    if groups < k:
        raise ValueError(f"server_shards={k} needs at least {k} groups of {width} of the model's "
                         f"d={d} parameters, which has {groups} (about d >= {width * k}); "
                         f"use fewer shards")
    cuts = [min(round(s * groups / k) * width, d) for s in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def _names(classes) -> str:
    from robustagg.rules.registry import rule_classes

    by_class = {}
    for n, c in rule_classes().items():  # in order of registration: a rule's own name first
        by_class.setdefault(c, n)
    return ", ".join(sorted(by_class.get(c, c.__name__) for c in classes))


def supported() -> str:
    """The supported rules, pre-aggregations and model attacks, for error messages and docs."""
    return (f"rules: {_names(COORDINATE_RULES + SELECTION_RULES + NORM_RULES)}; "
            f"pre-aggregations: {', '.join(sorted(c.__name__.lower() for c in PRE_AGGREGATIONS))}; "
            f"model attacks: {', '.join(COORDINATE_ATTACKS)}")


def check_sharding(cfg, rule, attack) -> None:
    """Refuse, naming what is supported, a run of ``cfg`` (a ``TrainConfig`` with
    ``server_shards > 1``) whose rule (built: ``rule``), pre-aggregations or model attack
    (``attack``) do not decompose over slices, or that asks for what the shards do not keep."""
    k = cfg.server_shards
    inner = getattr(rule, "rule", rule)
    pre = getattr(rule, "pre", [])
    if not isinstance(inner, COORDINATE_RULES + SELECTION_RULES + NORM_RULES):
        raise ValueError(f"server_shards={k}: the rule {inner!r} does not decompose over slices "
                         f"of the parameter vector; supported {supported()}")
    for p in pre:
        if not isinstance(p, PRE_AGGREGATIONS):
            raise ValueError(f"server_shards={k}: the pre-aggregation {p!r} does not decompose "
                             f"over slices of the parameter vector; supported {supported()}")
    if getattr(inner, "device", None) is not None or getattr(inner, "chunk_columns", None):
        raise ValueError(f"server_shards={k}: {inner!r} streams through a device; a shard "
                         f"computes on its own slice (leave device and chunk_columns unset)")
    if attack is not None and attack.kind == "model" and attack.name not in COORDINATE_ATTACKS:
        raise ValueError(f"server_shards={k}: the model attack {attack.name!r} needs whole "
                         f"rows; supported {supported()}")
    for name, value, why in (
            ("weighted", cfg.weighted, "per-worker weights"),
            ("server_root_samples", cfg.server_root_samples, "a root set"),
            ("compression", cfg.compression != "none", "compressed messages")):
        if value:
            raise ValueError(f"server_shards={k} does not combine with {name}="
                             f"{getattr(cfg, name)!r}: the shards do not take {why}")
