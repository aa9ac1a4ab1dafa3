"""The state of a rule or an attack as plain data: tensors, numbers, strings and containers,
which ``torch.load(weights_only=True)`` reads back without running code.

``snapshot(obj)`` walks the object's attributes; ``restore(obj, tree)`` writes them back into a
freshly built object of the same class (the one the run's settings build). What a snapshot
keeps: tensors, numpy arrays, ``torch.Generator`` states, ``None``/bools/ints/floats/strings,
lists, tuples and dicts of these, and nested objects (a pipeline's pre-aggregations, an
attack's rule) attribute by attribute. Anything else (functions, classes, modules) is part of
how the object was built, not of its state, and is left as the fresh object has it.

A tree node is a tensor, a scalar, or a dict tagged by ``"$"``: ``gen`` (a generator's state),
``ndarray``, ``list``, ``tuple``, ``dict`` (``items``: ``[key, node]`` pairs) or ``obj``
(``type``: the class's qualified name, ``attrs``: name -> node).
"""
from __future__ import annotations

import types

import numpy as np
import torch

_SCALARS = (type(None), bool, int, float, str)
_SKIP = object()  # an attribute that is not state
_NOT_STATE = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
              types.ModuleType)


def _type_name(obj) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _node(v):
    if isinstance(v, _SCALARS):
        return v
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, torch.Generator):
        return {"$": "gen", "state": v.get_state()}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return {"$": "ndarray", "data": torch.from_numpy(np.array(v))}
    if isinstance(v, (list, tuple)):
        items = [_node(x) for x in v]
        if any(x is _SKIP for x in items):
            return _SKIP
        return {"$": "list" if isinstance(v, list) else "tuple", "items": items}
    if isinstance(v, dict):
        if not all(isinstance(k, (int, str)) for k in v):
            return _SKIP
        items = [[k, _node(x)] for k, x in v.items()]
        if any(x is _SKIP for _, x in items):
            return _SKIP
        return {"$": "dict", "items": items}
    if hasattr(v, "__dict__") and not isinstance(v, _NOT_STATE):
        return snapshot(v)  # an object (a rule, an attack), not a function, class or module
    return _SKIP


def snapshot(obj) -> dict:
    """``obj``'s state as a tree of plain data (see the module's docstring)."""
    attrs = {}
    for name, v in vars(obj).items():
        node = _node(v)
        if node is not _SKIP:
            attrs[name] = node
    return {"$": "obj", "type": _type_name(obj), "attrs": attrs}


class StateError(ValueError):
    """A snapshot that does not fit the object it is restored into."""


def _value(node, fresh, where: str):
    """The value ``node`` stands for, restored into ``fresh`` (the built object's current
    value) where it is an object or a generator."""
    if isinstance(node, _SCALARS):
        return node
    if isinstance(node, torch.Tensor):
        return node.clone()
    if not isinstance(node, dict) or "$" not in node:
        raise StateError(f"{where}: not a state node: {type(node).__name__}")
    kind = node["$"]
    if kind == "gen":
        if not isinstance(fresh, torch.Generator):
            raise StateError(f"{where}: a generator in the checkpoint, {type(fresh).__name__} "
                             f"in the run")
        fresh.set_state(node["state"])
        return fresh
    if kind == "ndarray":
        return node["data"].numpy().copy()
    if kind in ("list", "tuple"):
        same = isinstance(fresh, (list, tuple)) and len(fresh) == len(node["items"])
        items = [_value(x, fresh[k] if same else None, f"{where}[{k}]")
                 for k, x in enumerate(node["items"])]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        old = fresh if isinstance(fresh, dict) else {}
        return {k: _value(x, old.get(k), f"{where}[{k!r}]") for k, x in node["items"]}
    if kind == "obj":
        if fresh is None or _type_name(fresh) != node["type"]:
            raise StateError(f"{where}: a {node['type']} in the checkpoint, "
                             f"{'nothing' if fresh is None else _type_name(fresh)} in the run")
        restore(fresh, node, where)
        return fresh
    raise StateError(f"{where}: unknown state node kind {kind!r}")


def restore(obj, tree: dict, where: str | None = None) -> None:
    """Write the state ``tree`` (from :func:`snapshot` of an object of the same class) into
    ``obj``; raises :class:`StateError` naming the attribute where they do not fit."""
    where = where or type(obj).__name__
    if not isinstance(tree, dict) or tree.get("$") != "obj":
        raise StateError(f"{where}: expected an object's state, got {type(tree).__name__}")
    if tree["type"] != _type_name(obj):
        raise StateError(f"{where}: the checkpoint holds a {tree['type']}, the run builds a "
                         f"{_type_name(obj)}")
    for name, node in tree["attrs"].items():
        setattr(obj, name, _value(node, getattr(obj, name, None), f"{where}.{name}"))
