"""NNM, bucketing, clipping and ARC, and their composition with a rule."""
import math

import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from . import reference as ref
from .reference import KINDS, make_inputs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,f", [(1, 0), (3, 1), (5, 2), (8, 3), (9, 0)])
def test_nnm_matches_reference(kind, n, f):
    for seed in range(3):
        x = make_inputs(kind, n, 5, seed)
        torch.testing.assert_close(F.nnm(x, f).double(), ref.nnm(x, f), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,f", [(1, 0), (3, 1), (5, 2), (8, 3), (10, 1)])
def test_arc_matches_reference(kind, n, f):
    for seed in range(3):
        x = make_inputs(kind, n, 5, seed) * torch.arange(1, n + 1)[:, None]
        torch.testing.assert_close(F.arc(x, f).double(), ref.arc(x, f), rtol=1e-6, atol=1e-6)


def test_clip():
    x = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    out = ra.Clip(tau=1.0)(x)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]]))


@pytest.mark.parametrize("n,s", [(10, 2), (7, 3), (5, 1), (4, 4)])
def test_bucketing_means_of_a_seeded_permutation(n, s):
    x = make_inputs("normal", n, 3, 0)
    out = F.bucketing(x, s, torch.Generator().manual_seed(5))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(5))
    expected = torch.stack([x[perm[i:i + s]].mean(0) for i in range(0, n, s)])
    assert out.shape == (math.ceil(n / s), 3)
    torch.testing.assert_close(out, expected)


def test_bucketing_module_is_reproducible():
    x = make_inputs("normal", 9, 3, 0)
    a, b = ra.Bucketing(s=2, seed=3), ra.Bucketing(s=2, seed=3)
    assert torch.equal(a(x), b(x)) and torch.equal(a(x), b(x))
    first = ra.Bucketing(s=2, seed=3)(x)
    a.reset()
    assert torch.equal(a(x), first)


def test_pipeline_checks_each_stage_at_its_own_n():
    p = ra.Pipeline(pre=[ra.Bucketing(s=2)], rule=ra.Krum(f=1))
    assert p.min_n == 9  # ceil(9 / 2) = 5 = 2f + 3
    with pytest.raises(ValueError, match=r"Krum needs n >= 2f \+ 3 workers, got n=4, f=1"):
        p.check(8)
    p = ra.Pipeline(pre=[ra.NNM(f=2)], rule=ra.Krum(f=2))
    x = make_inputs("normal", 9, 4, 0)
    out = p(x)
    mixed = F.nnm(x, 2)
    assert torch.equal(out, F.krum(mixed, 2))
    assert p.selected.tolist() == F.krum(mixed, 2, return_selected=True)[1].tolist()


def test_pipeline_rejects_wrong_stages():
    with pytest.raises(TypeError, match="rule must be an aggregation rule"):
        ra.Pipeline(pre=[], rule=ra.NNM(f=1))
    with pytest.raises(TypeError, match="pre must hold pre-aggregations"):
        ra.Pipeline(pre=[ra.Krum(f=1)], rule=ra.Mean())
