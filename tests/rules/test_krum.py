"""Krum and multi-Krum against the loop reference (Blanchard et al., NeurIPS 2017)."""
import pytest
import torch

import robustagg as ra
from robustagg import functional as F
from robustagg import kernels

from . import reference as ref
from .reference import KINDS, make_inputs

CASES = [(3, 0), (5, 1), (7, 2), (8, 2), (10, 3), (12, 0), (11, 4)]  # n = 2f + 3 included


# The accuracy contract (docs/kernels.md): float32 distances within 1e-4 relative of the float64
# definition, float64 ones within 1e-12, and Krum selects the reference's vector whenever its two
# best scores differ by more than 1e-4 relative (otherwise one of those within 1e-4 of the best).
RTOL = {torch.float32: 1e-4, torch.float64: 1e-12}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,f", CASES)
@pytest.mark.parametrize("d", [1, 9, 17, 4097])
def test_krum_scores_and_selection(kind, n, f, d, dtype):
    for seed in range(4 if d < 100 else 1):  # the reference is a Python loop
        x = make_inputs(kind, n, d, seed).to(dtype)
        expected = torch.tensor(ref.krum_scores(x, f), dtype=torch.float64)
        torch.testing.assert_close(F.krum_scores(x, f), expected, rtol=RTOL[dtype], atol=0)
        rule = ra.Krum(f=f)
        out = rule(x)
        (idx,) = rule.selected.tolist()
        best = float(expected.min())
        assert float(expected[idx]) <= best + RTOL[dtype] * best
        if sorted(expected.tolist())[1] > best + RTOL[dtype] * best:  # a clear winner
            assert [idx] == ref.lowest(expected.tolist(), 1)
        assert torch.equal(out, x[idx])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,f", CASES)
@pytest.mark.parametrize("m", [None, 1, "n"])
def test_multi_krum(kind, n, f, m):
    m = n if m == "n" else m
    for seed in range(3):
        x = make_inputs(kind, n, 7, seed)
        rule = ra.MultiKrum(f=f, m=m)
        out = rule(x)
        expected, sel = ref.multi_krum(x, f, n - f if m is None else m)
        assert rule.selected.tolist() == sel
        torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


def test_ties_go_to_lowest_index():
    x = torch.zeros(5, 3)  # all scores equal
    rule = ra.Krum(f=1)
    rule(x)
    assert rule.selected.tolist() == [0]


def test_squared_distances_and_n_minus_f_minus_2_neighbours():
    # 1-d points 0, 1, 3, 10, 11 with f=1: n-f-2 = 2 nearest neighbours, squared distances
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0], [11.0]])
    assert F.krum_scores(x, 1).tolist() == [1 + 9, 1 + 4, 4 + 9, 1 + 49, 1 + 64]
    assert ra.Krum(f=1)(x).item() == 1.0


def test_shared_distances_give_same_result():
    x = make_inputs("normal", 9, 20, 1)
    dist = kernels.pairwise_sq_distances(x)
    assert torch.equal(F.krum(x, 2, distances=dist), F.krum(x, 2))
    assert torch.equal(F.multi_krum(x, 2, 4, distances=dist), F.multi_krum(x, 2, 4))


def test_native_and_torch_paths_select_the_same(monkeypatch):
    for seed in range(10):
        x = make_inputs("normal", 11, 300, seed)
        native = F.multi_krum(x, 3, 5, return_selected=True)[1]
        monkeypatch.setattr(kernels, "backend", lambda device="cpu": "torch")
        torch_path = F.multi_krum(x, 3, 5, return_selected=True)[1]
        monkeypatch.undo()
        assert native.tolist() == torch_path.tolist()


def test_bounds_and_m_range():
    with pytest.raises(ValueError, match=r"Krum needs n >= 2f \+ 3 workers, got n=6, f=2"):
        ra.Krum(f=2)(torch.randn(6, 4))
    with pytest.raises(ValueError, match="m <= n"):
        ra.MultiKrum(f=1, m=6)(torch.randn(5, 4))
    with pytest.raises(ValueError, match="m >= 1"):
        ra.MultiKrum(f=1, m=0)
    with pytest.raises(ValueError, match="1 <= m <= n"):
        F.multi_krum(torch.randn(5, 4), 1, 9)
    with pytest.raises(ValueError, match=r"distances must have shape \[5, 5\]"):
        F.krum(torch.randn(5, 4), 1, distances=torch.zeros(4, 4))
