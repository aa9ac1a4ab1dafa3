"""Names resolved to objects, in one place: a run's rule (with its pre-aggregations) and its
attack, from the registries (:func:`robustagg.aggregator`, :func:`robustagg.pre_aggregator`,
:func:`attacks.attack`). and its compressor (:func:`robustagg.compression.compressor`). Datasets and models are named in their own registries
(:data:`robustagg.run.data.DATASETS`, :data:`robustagg.run.models.MODELS`) and resolved by
:func:`~robustagg.run.data.load_dataset` and :func:`~robustagg.run.models.build_model`.
"""
from __future__ import annotations

import copy
import inspect

import attacks
import robustagg as ra
from robustagg.compression import compressor


def build_named(factory, name, kwargs: dict, defaults: dict):
    """``factory(name, **kwargs)``, adding each of ``defaults`` the built class takes and
    ``kwargs`` lacks (e.g. ``f`` = the number of Byzantine workers, ``seed`` = the run's seed)."""
    obj = factory(name, **kwargs)
    params = inspect.signature(type(obj)).parameters
    extra = {k: v for k, v in defaults.items() if k in params and k not in kwargs}
    return factory(name, **kwargs, **extra) if extra else obj


def pre_entry(entry) -> tuple[str, dict]:
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


def build_rule(rule, kwargs: dict, pre: list, defaults: dict):
    """The aggregation rule (a :class:`robustagg.Rule`): ``rule`` itself when it is one, else the
    rule registered under that name, with the pre-aggregations ``pre`` (``(name, kwargs)``
    pairs) in front if any. Classes taking an argument of ``defaults`` (``f``, ``seed``) get it
    unless the kwargs give it."""
    if not isinstance(rule, ra.Rule):
        rule = build_named(ra.aggregator, rule, kwargs, defaults)
    if not pre:
        return rule
    return ra.Pipeline(pre=[build_named(ra.pre_aggregator, n, kw, defaults) for n, kw in pre],
                       rule=rule)


def build_attack(attack, kwargs: dict, seed: int = 0, n: int | None = None):
    """``attacks.attack(name, **kwargs)`` (seeded with ``seed`` and told the number of workers
    ``n``, for attacks whose formula needs it like ALIE's z, unless kwargs give them), None
    for ``"none"``, or a deep copy of ``attack`` when it is already an attack object (every
    holder gets its own generator state)."""
    if attack is None or (isinstance(attack, str) and attack == "none"):
        return None
    if not isinstance(attack, str):
        if kwargs:
            raise ValueError(f"attack_kwargs={kwargs!r} go with an attack name, not with {attack!r}")
        return copy.deepcopy(attack)
    return build_named(attacks.attack, attack, kwargs,
                       {"seed": seed} if n is None else {"seed": seed, "n": n})


def build_compressor(name: str, kwargs: dict, seed: int = 0):
    """``robustagg.compression.compressor(name, **kwargs)``, seeded with the run's ``seed``
    unless kwargs give one."""
    return build_named(compressor, name, kwargs, {"seed": seed})
