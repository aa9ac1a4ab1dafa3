"""FoolsGold against the reference algorithm written with loops, over several rounds (Fung,
Yoon, Beschastnikh, RAID 2020)."""
import numpy as np
import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from .reference import KINDS, make_inputs


def reference_weights(h, kappa=1.0):
    n = len(h)
    norms = np.linalg.norm(h, axis=1)
    cs = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j and norms[i] > 0 and norms[j] > 0:
                cs[i, j] = min(max(h[i] @ h[j] / (norms[i] * norms[j]), -1.0), 1.0)
    v = cs.max(axis=1)
    for i in range(n):
        for j in range(n):
            if i != j and v[j] > v[i]:
                cs[i, j] *= v[i] / v[j]
    alpha = np.clip(1 - cs.max(axis=1), 0, 1)
    alpha[alpha < 1e-12] = 0.0  # identical histories: cosine 1 up to this loop's rounding
    if alpha.max() <= 0:
        return np.zeros(n)
    alpha = alpha / alpha.max()
    out = np.zeros(n)
    for i, a in enumerate(alpha):
        if a >= 1:
            out[i] = 1.0
        elif a > 0:
            out[i] = min(max(kappa * (np.log(a / (1 - a)) + 0.5), 0.0), 1.0)
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 5, 9])
@pytest.mark.parametrize("d", [1, 7, 17, 4097])
def test_rounds_match_reference(kind, n, d):
    rule = ra.FoolsGold()
    h = np.zeros((n, d))
    for t in range(3):
        x = make_inputs(kind, n, d, 100 * t + n + d).double()
        x[: min(2, n)] = x[0].clone()  # two sybils sending the same update
        h = h + x.numpy()
        alpha = reference_weights(h)
        out = rule(x)
        np.testing.assert_allclose(rule.weights.numpy(), alpha, rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(out, torch.tensor(alpha @ x.numpy()), rtol=1e-7, atol=1e-9)


def test_sybils_get_zero_and_history_is_keyed_by_worker_id():
    g = torch.Generator().manual_seed(0)
    rule, shuffled = ra.FoolsGold(), ra.FoolsGold()
    for _ in range(3):
        x = torch.randn(6, 20, generator=g)
        x[4] = x[5] = torch.randn(20, generator=g)
        rule(x)
        perm = torch.randperm(6, generator=g)
        shuffled.worker_ids = perm.tolist()
        shuffled(x[perm])
        assert rule.weights[4] == rule.weights[5] == 0
        assert torch.equal(shuffled.weights, rule.weights[perm])
    rule.reset()
    assert rule.history == {}
    with pytest.raises(ValueError, match="worker_ids must name each of the n=2 rows once"):
        shuffled.worker_ids = [1, 1]
        shuffled(torch.randn(2, 3))


def test_non_finite_update_gets_no_weight_and_no_history():
    rule = ra.FoolsGold()
    x = torch.randn(4, 5)
    x[2, 0] = float("nan")
    out = rule(x)
    assert torch.isfinite(out).all() and rule.weights[2] == 0 and 2 not in rule.history
    assert F.foolsgold(torch.randn(3, 4), kappa=2.0).shape == (4,)
