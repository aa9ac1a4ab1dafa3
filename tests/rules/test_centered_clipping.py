"""Centered clipping (Karimireddy, He, Jaggi, ICML 2021) against the loop reference."""
import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from . import reference as ref
from .reference import make_inputs


@pytest.mark.parametrize("tau,n_iter", [(0.5, 1), (2.0, 3), (100.0, 1)])
def test_centered_clipping_matches_reference(tau, n_iter):
    for seed in range(5):
        x = make_inputs("normal", 7, 5, seed)
        center = torch.randn(5, generator=torch.Generator().manual_seed(seed + 100))
        out = F.centered_clipping(x, tau, n_iter, center)
        torch.testing.assert_close(out.double(), ref.centered_clipping(x, tau, n_iter, center),
                                   rtol=1e-5, atol=1e-6)


def test_large_tau_is_the_mean():
    x = make_inputs("normal", 6, 4, 0)
    torch.testing.assert_close(F.centered_clipping(x, 1e9), x.mean(0))


def test_module_keeps_previous_output_as_center_and_resets():
    x = make_inputs("normal", 6, 4, 1)
    rule = ra.CenteredClipping(tau=0.1, n_iter=1)
    first = rule(x)
    second = rule(x)
    torch.testing.assert_close(second, F.centered_clipping(x, 0.1, 1, first))
    rule.reset()
    torch.testing.assert_close(rule(x), first)


def test_bad_settings():
    with pytest.raises(ValueError, match="tau must be > 0"):
        ra.CenteredClipping(tau=0)
    with pytest.raises(TypeError, match="n_iter must be an int"):
        ra.CenteredClipping(tau=1.0, n_iter=1.5)
