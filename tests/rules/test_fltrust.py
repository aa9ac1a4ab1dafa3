"""FLTrust against a loop over the workers (Cao et al., NDSS 2021)."""
import math

import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from .reference import KINDS, make_inputs, norm, rows


def reference(x, g0):
    r = rows(x)
    g = [float(v) for v in g0.double()]
    gn = norm(g)
    ts, scaled = [], []
    for v in r:
        vn = norm(v) if all(math.isfinite(u) for u in v) else 0.0
        cos = sum(a * b for a, b in zip(v, g)) / (vn * gn) if vn > 0 else 0.0
        ts.append(max(cos, 0.0))
        scaled.append([u * gn / vn for u in v] if vn > 0 else [0.0] * len(v))
    total = sum(ts)
    if total == 0:
        return torch.zeros(len(g), dtype=torch.float64)
    return torch.tensor([sum(t * s[k] for t, s in zip(ts, scaled)) / total
                         for k in range(len(g))], dtype=torch.float64)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 5, 9])
@pytest.mark.parametrize("d", [1, 7, 9, 17, 4097])
def test_matches_reference(kind, n, d):
    x = make_inputs(kind, n, d, n * d)
    g0 = make_inputs("normal", 1, d, d)[0] + x.mean(0)
    rule = ra.FLTrust()
    rule.server_grad = g0
    torch.testing.assert_close(rule(x).double(), reference(x, g0), rtol=1e-5, atol=1e-6)


def test_scale_and_direction():
    g0 = torch.tensor([2.0, 0.0])
    x = torch.tensor([[100.0, 0.0], [-5.0, 0.0], [0.0, 3.0], [float("nan"), 1.0]])
    out, w = F.fltrust(x, g0, return_weights=True)
    assert out.tolist() == [2.0, 0.0]  # only the aligned vector counts, rescaled to |g0| = 2
    assert w.tolist() == [0.02, 0.0, 0.0, 0.0]
    assert F.fltrust(x[1:3], g0).tolist() == [0.0, 0.0]  # no trust at all: no step


def test_server_grad_consumed_and_forms():
    rule = ra.FLTrust()
    with pytest.raises(ValueError, match="set rule.server_grad"):
        rule(torch.randn(3, 4))
    dicts = [{"w": torch.randn(2, 2), "b": torch.randn(2)} for _ in range(3)]
    rule.server_grad = {"w": torch.ones(2, 2), "b": torch.ones(2)}
    out = rule(dicts)
    assert set(out) == {"w", "b"} and rule.server_grad is None
    with pytest.raises(ValueError, match="set rule.server_grad"):
        rule(dicts)
    with pytest.raises(ValueError, match=r"server_grad must be a Tensor\[4\]"):
        F.fltrust(torch.randn(3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="finite and non-zero"):
        F.fltrust(torch.randn(3, 4), torch.zeros(4))
