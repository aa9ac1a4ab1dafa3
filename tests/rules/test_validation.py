"""Bad input gets a clear error naming what is wrong."""
import pytest
import torch

import robustagg as ra
from robustagg import functional as F


def test_wrong_ndim_and_empty():
    with pytest.raises(ValueError, match=r"shape \[n, d\], got shape \(5,\)"):
        F.krum(torch.randn(5), 1)
    with pytest.raises(ValueError, match="empty input: n=0"):
        ra.CoordinateMedian()(torch.empty(0, 3))
    with pytest.raises(ValueError, match="empty input: n=0"):
        ra.Mean()([])
    with pytest.raises(ValueError, match="d=0"):
        ra.Mean()(torch.empty(3, 0))


def test_integer_input_is_a_type_error():
    with pytest.raises(TypeError, match="floating-point"):
        ra.Krum(f=0)(torch.ones(4, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="item 1 has dtype torch.int32"):
        ra.Mean()([torch.ones(3), torch.ones(3, dtype=torch.int32)])


def test_mismatched_shapes_and_keys_name_the_offender():
    with pytest.raises(ValueError, match=r"item 2 has shape \(4,\), item 0 has \(3,\)"):
        ra.Mean()([torch.ones(3), torch.ones(3), torch.ones(4)])
    with pytest.raises(ValueError, match=r"item 1 has different keys.*missing \['b'\]"):
        ra.Mean()([{"a": torch.ones(2), "b": torch.ones(1)}, {"a": torch.ones(2)}])
    with pytest.raises(ValueError, match=r"item 1, key 'a' has shape \(3,\)"):
        ra.Mean()([{"a": torch.ones(2)}, {"a": torch.ones(3)}])
    with pytest.raises(TypeError, match="not a Tensor"):
        ra.Mean()([torch.ones(2), [1.0, 2.0]])


def test_bad_f():
    with pytest.raises(ValueError, match="f must be >= 0, got f=-1"):
        ra.Krum(f=-1)
    with pytest.raises(TypeError, match="f must be an int"):
        ra.TrimmedMean(f=1.5)
    with pytest.raises(ValueError, match=r"Krum needs n >= 2f \+ 3 workers, got n=4, f=1"):
        F.krum(torch.randn(4, 2), 1)


def test_check_before_any_data():
    assert ra.Krum(f=2).min_n == 7 and ra.Bulyan(f=2).min_n == 11
    ra.Krum(f=2).check(7)
    with pytest.raises(ValueError, match=r"Bulyan needs n >= 4f \+ 3 workers, got n=10, f=2"):
        ra.Bulyan(f=2).check(10)


def test_registry():
    assert {"mean", "median", "trimmed_mean", "krum", "multi_krum", "bulyan", "geometric_median",
            "centered_clipping"} <= set(ra.available_rules())
    assert set(ra.available_pre_aggregators()) == {"nnm", "bucketing", "clip", "arc"}
    rule = ra.aggregator("multi_krum", f=2, m=3)
    assert isinstance(rule, ra.MultiKrum) and rule.m == 3
    assert isinstance(ra.pre_aggregator("nnm", f=1), ra.NNM)
    with pytest.raises(ValueError, match="unknown rule 'krumm'; available: .*krum"):
        ra.aggregator("krumm")


def test_module_gradients_roundtrip():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model(torch.randn(4, 3)).sum().backward()
    model[1].bias.grad = None
    vec = ra.inputs.flatten_grads(model)
    assert vec.shape == (3 * 2 + 2 + 2 + 1,) and vec[-1] == 0
    ra.inputs.assign_grads(model, torch.arange(11.0))
    assert model[1].bias.grad.item() == 10.0 and torch.equal(ra.inputs.flatten_grads(model),
                                                            torch.arange(11.0))
    with pytest.raises(ValueError, match=r"vec must have shape \[11\]"):
        ra.inputs.assign_grads(model, torch.zeros(10))
