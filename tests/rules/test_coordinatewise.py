"""Mean, coordinate-wise median and trimmed mean against the loop references."""
import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from . import reference as ref
from .reference import KINDS, make_inputs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10])
def test_median_matches_reference(kind, n):
    for seed in range(5):
        x = make_inputs(kind, n, 13, seed)
        expected = ref.median(x).float()  # float64 reference rounded to float32
        assert torch.equal(F.coordinate_median(x), expected)


def test_median_even_n_is_mean_of_middle_values():
    x = torch.tensor([[1.0], [2.0], [10.0], [0.0]])
    assert F.coordinate_median(x).item() == 1.5  # torch.median would give 1.0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,f", [(1, 0), (3, 1), (5, 2), (6, 2), (10, 3), (9, 0)])
def test_trimmed_mean_matches_reference(kind, n, f):
    for seed in range(5):
        x = make_inputs(kind, n, 11, seed)
        torch.testing.assert_close(F.trimmed_mean(x, f).double(), ref.trimmed_mean(x, f),
                                   rtol=1e-6, atol=1e-6)


def test_trimmed_mean_drops_f_each_side():
    x = torch.tensor([[100.0], [1.0], [2.0], [3.0], [-100.0]])
    assert F.trimmed_mean(x, 1).item() == 2.0
    assert ra.TrimmedMean(f=2)(x).item() == 2.0


def test_mean_matches_reference():
    x = make_inputs("normal", 6, 9, 0)
    torch.testing.assert_close(ra.Mean()(x).double(), x.double().mean(0), rtol=1e-6, atol=1e-7)


def test_trimmed_mean_bound():
    with pytest.raises(ValueError, match=r"TrimmedMean needs n >= 2f \+ 1 workers, got n=4, f=2"):
        ra.TrimmedMean(f=2)(torch.randn(4, 3))
