"""The coordinator of a sharded parameter server: runs a rule over shards that each hold a
contiguous column slice of the round's rows (:class:`robustagg.training.shard.Shard`).

``shards`` is a group with ``call(method, *args) -> [result of each shard]`` (the same
arguments to every shard, results in shard order) and ``each(method, [args of each shard])``.
What crosses between the coordinator and the shards is small: ``[m, m]`` partial distance
matrices, ``[m]`` partial sums of squares and finite flags, and back the selection, weights or
scales.

- **Distances** are the shards' float64 partials over the model's column groups
  (:func:`robustagg.kernels.pairwise_sq_distance_partials`) added in column order: the same
  additions, in the same order, as the unsharded kernel makes over the whole rows, so the
  same bits (shards are cut at multiples of the group width,
  :func:`robustagg.run.sharding.shard_bounds`).
- **Selections** are the rule's own code: the rule's functional form runs on the summed
  distances with a one-column stand-in for the rows (zero, or NaN where a row is not finite,
  which is all the selection reads of the rows).
- **Norms** are square roots of summed partial sums of squares (float64).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from robustagg import functional as F
from robustagg.functional import _scaling
from robustagg.rules import (ARC, NNM, Bulyan, CenteredClipping, Clip, GeometricMedian, Krum,
                             MultiKrum)
from robustagg.run.sharding import COORDINATE_RULES


def summed(parts: list[torch.Tensor]) -> torch.Tensor:
    """The shards' partial arrays added in shard order (float64)."""
    total = parts[0].clone()
    for p in parts[1:]:
        total += p
    return total


def distances(shards) -> torch.Tensor:
    """float64 ``[m, m]`` squared distances of the shards' current rows, bit for bit the
    unsharded kernel's (module doc); +inf for a pair with a non-finite row."""
    parts = shards.call("distance_partials")
    total = np.zeros(parts[0].shape[1:], dtype=np.float64)
    for group in (g for p in parts for g in p):  # column order, from zero, as the kernel
        total += group
    total[~np.isfinite(total)] = math.inf  # NaN too, as the kernel
    return torch.from_numpy(total)


def finite_rows(shards) -> torch.Tensor:
    """bool ``[m]``: rows finite in every shard."""
    flags = shards.call("finite_rows")
    out = flags[0].clone()
    for f in flags[1:]:
        out &= f
    return out


def norms(shards) -> torch.Tensor:
    """float64 ``[m]`` Euclidean norms of the current rows (NaN or +inf for non-finite rows)."""
    return summed(shards.call("sq_norms")).sqrt()


def stand_in(finite: torch.Tensor) -> torch.Tensor:
    """``[m, 1]`` rows that are zero where the real rows are finite and NaN elsewhere: all a
    selection made from distances reads of the rows."""
    x = torch.zeros(len(finite), 1)
    x[~finite] = float("nan")
    return x


def aggregate(shards, rule, m: int, d: int) -> torch.Tensor | None:
    """Aggregate the shards' m current rows with ``rule`` (a rule of
    :mod:`robustagg.run.sharding`, with its pre-aggregations), leaving each shard its slice of
    the aggregate; returns the selection (indices among the rule's input rows) where the rule
    selects, else None.

    Same result as the unsharded rule:

    - coordinate-wise rules (mean, median, trimmed mean) bit for bit: each column is computed
      by the same code on the same values (slices aligned as
      :func:`robustagg.run.sharding.shard_bounds` cuts them);
    - selection rules (Krum, multi-Krum, Bulyan, NNM) bit for bit: the summed partial
      distances are the unsharded kernel's bits (module doc), so the selection is the same,
      and the mean of the selected rows, Bulyan's coordinate phase and the mixing are
      per-column;
    - norm-based rules (geometric median, centered clipping, clip, ARC) within the accuracy
      contract: norms are float64 sums of partial sums of squares, not one float32 norm.
    """
    inner = getattr(rule, "rule", rule)
    for p in getattr(rule, "pre", []):
        if isinstance(p, NNM):
            _nnm(shards, p.f, m)
        elif isinstance(p, ARC):
            _arc(shards, p.f, m)
        elif isinstance(p, Clip):
            _clip(shards, p.tau, m)
    if isinstance(inner, COORDINATE_RULES):
        shards.call("coordinate")
        return None
    if isinstance(inner, (Krum, MultiKrum, Bulyan)):
        return _select(shards, inner, m, d)
    if isinstance(inner, GeometricMedian):
        _weiszfeld(shards, inner, m)
        return None
    if isinstance(inner, CenteredClipping):
        _centered_clipping(shards, inner, m)
        return None
    raise TypeError(f"no sharded form of {inner!r}")  # refused earlier by check_sharding


def _select(shards, rule, m, d):
    dist = distances(shards)
    x = stand_in(finite_rows(shards))
    f = rule.f
    if isinstance(rule, Bulyan):
        _, selected = F.bulyan(x, f, dist, return_selected=True)
        theta, beta = m - 2 * f, m - 4 * f
        if len(selected) < theta:
            shards.call("nan")
            return selected
        phase = shards.call("bulyan_phase", selected.tolist(), beta, 0)
        if not all(exact for exact, _ in phase):
            # an overflow in some shard: every shard again on the rows scaled by the power of
            # two the unsharded rule takes from all the selected values
            top = max(t for _, t in phase)
            shards.call("bulyan_phase", selected.tolist(), beta, _exponent(top, theta * d))
        return selected
    if isinstance(rule, MultiKrum):
        _, selected = F.multi_krum(x, f, rule.m, dist, return_selected=True)
    else:
        _, selected = F.krum(x, f, dist, return_selected=True)
    if selected.numel() == 0:
        shards.call("nan")
    else:
        shards.call("rows_mean", selected.tolist())
    return selected


def _exponent(top: float, count: int) -> int:
    """:func:`robustagg.functional._scaling.exponent` from the largest finite magnitude
    ``top`` of ``count`` float32 values."""
    if top == 0.0:
        return 0
    return max(0, math.frexp(top)[1] - _scaling.target_exponent(torch.float32, count))


def _nnm(shards, f, m):
    dist = distances(shards)
    dist.fill_diagonal_(-1.0)  # itself first, whatever the duplicates (as F.nnm)
    neighbours = dist.sort(dim=1, stable=True).indices[:, : m - f]
    shards.call("mix", neighbours.tolist())


def _clip(shards, tau, m):
    shards.call("clip_rows", list(range(m)), float(tau), norms(shards).tolist())


def _arc(shards, f, m):
    k = math.floor(2 * f * (m - f) / m)
    if k == 0:
        return
    n2 = norms(shards)
    n2 = torch.where(torch.isnan(n2), torch.full_like(n2, float("inf")), n2)
    order = torch.sort(-n2, stable=True).indices  # largest first, ties to the lowest index
    shards.call("clip_rows", order[:k].tolist(), float(n2[order[k]]), n2[order[:k]].tolist())


def _dists_to_z(shards, rows):
    return summed(shards.call("sq_dists_to_z", rows)).sqrt()


def _weiszfeld(shards, rule, m):
    """Smoothed Weiszfeld (:func:`robustagg.functional.geometric_median`) over the shards:
    the distances ‖x_i − z‖ and the step's norms from partial sums, z kept in slices."""
    rows = finite_rows(shards).nonzero().squeeze(1).tolist()
    if not rows:
        shards.call("nan")
        return
    alpha = torch.full((len(rows),), 1.0 / len(rows), dtype=torch.float64)
    shards.call("start_z", rows, alpha.tolist(), False)
    for _ in range(rule.max_iter):
        # float64 sums of squares of float32 differences: finite for finite rows, so the
        # unsharded rule's rescaling for overflowed float32 norms has no counterpart here
        beta = alpha / _dists_to_z(shards, rows).clamp_min(rule.nu)
        total = beta.sum()
        parts = shards.call("weiszfeld_step", rows, (beta / total).tolist())
        step = math.sqrt(sum(s for s, _ in parts))
        if step <= rule.tol * (1.0 + math.sqrt(sum(z for _, z in parts))):
            break
    shards.call("take_z")


def _centered_clipping(shards, rule, m):
    """Centered clipping (:func:`robustagg.functional.centered_clipping`) over the shards:
    each ‖x_i − v‖ from partial sums, v kept in slices; shares 1/m over the m rows (a
    non-finite row contributes nothing but counts, as unsharded)."""
    rows = finite_rows(shards).nonzero().squeeze(1).tolist()
    shards.call("start_z", rows, [], True)
    for _ in range(rule.n_iter):
        if not rows:
            break
        dist = _dists_to_z(shards, rows)
        scale = (rule.tau / dist.clamp_min(torch.finfo(torch.float32).tiny)).clamp_max(1.0)
        shards.call("clipping_step", rows, (scale / m).tolist())
    shards.call("take_z")
