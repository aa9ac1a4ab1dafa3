"""The three input forms of a rule, and module gradients as one vector.

A rule is called on ``Tensor[n, d]``, on a list of n equal-shaped tensors, or on a list of n
dicts name -> Tensor (per-parameter gradients or state dicts). :func:`flatten` turns any of
them into one ``Tensor[n, d]`` (each dict flattened into one whole vector, so that distances
are taken over the whole model, not parameter by parameter) and gives back the function that
restores the structure of one row.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Callable

import torch
from torch import nn


def _check_tensor(t, where: str, rule: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{rule}: {where} is a {type(t).__name__}, not a Tensor")
    if not t.dtype.is_floating_point:
        raise TypeError(f"{rule}: {where} has dtype {t.dtype}; gradients must be floating-point")
    return t


def flatten(grads, rule: str = "rule") -> tuple[torch.Tensor, Callable[[torch.Tensor], object]]:
    """Turn ``grads`` into ``(x: Tensor[n, d], unflatten)``; ``unflatten(Tensor[d])`` returns one
    item of the input's form (a tensor of the items' shape, or a dict with the same keys, shapes
    and dtypes). A ``Tensor[n, d]`` passes through unchanged (validated by the rule itself)."""
    if isinstance(grads, torch.Tensor):
        return grads, lambda out: out
    if not isinstance(grads, Sequence) or isinstance(grads, (str, bytes)):
        raise TypeError(f"{rule} expects a Tensor[n, d], a list of tensors or a list of dicts, "
                        f"got {type(grads).__name__}")
    if len(grads) == 0:
        raise ValueError(f"{rule} got empty input: n=0 vectors")
    if isinstance(grads[0], Mapping):
        return _flatten_dicts(grads, rule)
    first = _check_tensor(grads[0], "item 0", rule)
    for i, g in enumerate(grads):
        _check_tensor(g, f"item {i}", rule)
        if g.shape != first.shape:
            raise ValueError(f"{rule}: item {i} has shape {tuple(g.shape)}, item 0 has "
                             f"{tuple(first.shape)}")
        if g.device != first.device:
            raise ValueError(f"{rule}: item {i} is on {g.device}, item 0 on {first.device}")
    shape = first.shape
    x = torch.stack([g.reshape(-1) for g in grads])
    return x, lambda out: out.reshape(shape)


def _flatten_dicts(grads: Sequence[Mapping], rule: str):
    keys = list(grads[0].keys())
    if not keys:
        raise ValueError(f"{rule}: item 0 is an empty dict")
    ref = {k: _check_tensor(grads[0][k], f"item 0, key {k!r}", rule) for k in keys}
    for i, g in enumerate(grads):
        if not isinstance(g, Mapping):
            raise TypeError(f"{rule}: item {i} is a {type(g).__name__}, item 0 is a dict")
        if set(g.keys()) != set(keys):
            missing = sorted(set(keys) - set(g.keys()), key=str)
            extra = sorted(set(g.keys()) - set(keys), key=str)
            raise ValueError(f"{rule}: item {i} has different keys than item 0 "
                             f"(missing {missing}, unexpected {extra})")
        for k in keys:
            t = _check_tensor(g[k], f"item {i}, key {k!r}", rule)
            if t.shape != ref[k].shape:
                raise ValueError(f"{rule}: item {i}, key {k!r} has shape {tuple(t.shape)}, "
                                 f"item 0 has {tuple(ref[k].shape)}")
    dtype = ref[keys[0]].dtype
    for k in keys:
        dtype = torch.promote_types(dtype, ref[k].dtype)
    x = torch.stack([torch.cat([g[k].reshape(-1).to(dtype) for k in keys]) for g in grads])
    sizes = [ref[k].numel() for k in keys]

    def unflatten(out: torch.Tensor) -> dict:
        parts = out.split(sizes)
        return {k: p.reshape(ref[k].shape).to(ref[k].dtype) for k, p in zip(keys, parts)}

    return x, unflatten


def _params(params, where: str) -> list:
    out = list(params.parameters()) if isinstance(params, nn.Module) else list(params)
    if not out:
        name = type(params).__name__ if isinstance(params, nn.Module) else "params"
        raise ValueError(f"{where}: {name} has no parameters")
    return out


def flatten_grads(params, grads=None, out: torch.Tensor | None = None) -> torch.Tensor:
    """The gradients of ``params`` (an ``nn.Module``'s parameters, or a sequence of tensors) as
    one vector ``Tensor[d]``, ``d = Σ numel``: ``grads`` (one per parameter, None allowed) or by
    default each parameter's ``.grad``, flattened in order, zeros where None, in the promoted
    floating dtype of the parameters. Written into ``out`` when given (a ``Tensor[d]``, e.g. a
    row of a preallocated ``[n, d]`` buffer), so that no intermediate vector is made."""
    params = _params(params, "flatten_grads")
    grads = [p.grad for p in params] if grads is None else list(grads)
    d = sum(p.numel() for p in params)
    if out is None:
        dtype = params[0].dtype
        for p in params[1:]:
            dtype = torch.promote_types(dtype, p.dtype)
        out = torch.empty(d, dtype=dtype, device=params[0].device)
    elif out.shape != (d,):
        raise ValueError(f"flatten_grads: out must have shape [{d}], got {tuple(out.shape)}")
    offset = 0
    for p, g in zip(params, grads):
        part = out[offset:offset + p.numel()]
        if g is None:
            part.zero_()
        else:
            part.copy_(g.reshape(-1))
        offset += p.numel()
    return out


def assign_grads(params, vec: torch.Tensor, present=None) -> None:
    """Write ``vec: Tensor[d]`` into the ``.grad`` of ``params`` (an ``nn.Module``'s parameters,
    or a sequence of tensors; the inverse of :func:`flatten_grads`), creating gradients where
    they are None; a parameter whose entry of ``present`` (bools, one per parameter) is False
    gets ``.grad = None`` instead."""
    params = _params(params, "assign_grads")
    total = sum(p.numel() for p in params)
    if vec.ndim != 1 or vec.numel() != total:
        name = type(params).__name__ if isinstance(params, nn.Module) else "params"
        raise ValueError(f"assign_grads: vec must have shape [{total}] for {name}, "
                         f"got {tuple(vec.shape)}")
    offset = 0
    for k, p in enumerate(params):
        chunk = vec[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
        if present is not None and not present[k]:
            p.grad = None
        elif p.grad is None:
            p.grad = chunk.to(p.dtype, copy=True)
        else:
            p.grad.copy_(chunk)
