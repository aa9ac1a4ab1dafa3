"""Names for rules and pre-aggregations, so that configs can name them."""
from __future__ import annotations

_RULES: dict[str, type] = {}
_PRE: dict[str, type] = {}


def _register(table: dict, names):
    def deco(cls):
        for name in names:
            if name in table and table[name] is not cls:
                raise ValueError(f"{name!r} is already registered to {table[name].__name__}")
            table[name] = cls
        cls.name = names[0]
        return cls
    return deco


def register_rule(*names: str):
    """Class decorator: make a :class:`~robustagg.rules.base.Rule` available as ``names``."""
    return _register(_RULES, names)


def register_pre_aggregator(*names: str):
    """Class decorator: make a pre-aggregation available as ``names``."""
    return _register(_PRE, names)


def _make(table: dict, kind: str, name: str, kwargs: dict):
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; available: {', '.join(sorted(table))}")
    return table[name](**kwargs)


def aggregator(name: str, **kwargs):
    """The rule registered as ``name``, built with ``kwargs`` (``aggregator("krum", f=2)``)."""
    return _make(_RULES, "rule", name, kwargs)


def pre_aggregator(name: str, **kwargs):
    """The pre-aggregation registered as ``name`` (``pre_aggregator("nnm", f=2)``)."""
    return _make(_PRE, "pre-aggregator", name, kwargs)


def available_rules() -> list[str]:
    """Names accepted by :func:`aggregator` (aliases included). The pre-aggregations, which go
    in front of a rule, are listed by :func:`available_pre_aggregators`."""
    return sorted(_RULES)


def available_pre_aggregators() -> list[str]:
    """Names accepted by :func:`pre_aggregator`."""
    return sorted(_PRE)


def rule_classes() -> dict[str, type]:
    """``name -> class`` of every registered rule (aliases included)."""
    return dict(_RULES)


def pre_aggregator_classes() -> dict[str, type]:
    """``name -> class`` of every registered pre-aggregation."""
    return dict(_PRE)
