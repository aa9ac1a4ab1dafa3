"""Bulyan against the loop reference (El Mhamdi et al., ICML 2018)."""
import pytest
import torch

import robustagg as ra

from . import reference as ref
from .reference import KINDS, make_inputs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,f", [(3, 0), (6, 0), (7, 1), (8, 1), (11, 2), (12, 2)])
def test_bulyan_matches_reference(kind, n, f):
    for seed in range(3):
        x = make_inputs(kind, n, 6, seed)
        rule = ra.Bulyan(f=f)
        out = rule(x)
        expected, chosen = ref.bulyan(x, f)
        assert rule.selected.tolist() == chosen
        torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


def test_bulyan_f0_is_the_mean():
    x = make_inputs("normal", 5, 8, 0)
    torch.testing.assert_close(ra.Bulyan(f=0)(x), x.mean(0))


def test_bulyan_bound():
    with pytest.raises(ValueError, match=r"Bulyan needs n >= 4f \+ 3 workers, got n=10, f=2"):
        ra.Bulyan(f=2)(torch.randn(10, 3))
