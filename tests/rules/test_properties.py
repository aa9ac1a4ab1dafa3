"""Properties every rule must have: permutation invariance, translation equivariance, the
non-finite guarantee, dtype preservation, and agreement of the three input forms."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import robustagg as ra
from robustagg import functional as F

from .reference import make_inputs

# (name, kwargs, n) with n at or near each rule's minimum for its f
ROBUST = [("median", {"f": 2}, 5), ("trimmed_mean", {"f": 2}, 5), ("krum", {"f": 2}, 7),
          ("multi_krum", {"f": 2}, 8), ("bulyan", {"f": 1}, 7), ("geometric_median", {"f": 2}, 6),
          ("centered_clipping", {"tau": 1.0, "f": 2}, 6)]
ALL = ROBUST + [("mean", {}, 4)]
# With one neighbour (n - f - 2 = 1) the two mutually nearest vectors always tie, and the tie goes
# to the lower index, so the output depends on the order. Bulyan reaches one neighbour on its
# small sets whenever f <= 2; its order-free case needs f >= 3.
INVARIANT = [c for c in ALL if c[0] != "bulyan"] + [("bulyan", {"f": 3}, 15)]
EQUIVARIANT = ["mean", "median", "trimmed_mean", "krum", "multi_krum", "bulyan", "geometric_median"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), which=st.sampled_from(INVARIANT))
def test_permutation_invariance(seed, which):
    name, kw, n = which
    x = make_inputs("normal", n, 6, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(ra.aggregator(name, **kw)(x[perm]), ra.aggregator(name, **kw)(x),
                               rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(EQUIVARIANT))
def test_translation_equivariance(seed, name):
    _, kw, n = next(c for c in ALL if c[0] == name)
    if name == "geometric_median":  # the property is the limit's: Weiszfeld run to convergence
        kw = {**kw, "tol": 1e-12}   # (its default stop, tol·(1 + |z|), moves with the shift)
    x = make_inputs("normal", n, 6, seed)
    shift = torch.randn(6, generator=torch.Generator().manual_seed(seed + 1)) * 10
    torch.testing.assert_close(ra.aggregator(name, **kw)(x + shift),
                               ra.aggregator(name, **kw)(x) + shift, rtol=1e-4, atol=1e-4)


POISON = [float("nan"), float("inf"), float("-inf")]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), which=st.sampled_from(ROBUST),
       whole_rows=st.booleans())
def test_up_to_f_non_finite_rows_give_a_finite_result(seed, which, whole_rows):
    name, kw, n = which
    f = kw["f"]
    g = torch.Generator().manual_seed(seed)
    x = make_inputs("normal", n, 6, seed)
    bad = torch.randperm(n, generator=g)[:f]
    for i in bad.tolist():
        value = POISON[int(torch.randint(0, 3, (1,), generator=g))]
        if whole_rows:
            x[i] = value
        else:
            x[i, int(torch.randint(0, 6, (1,), generator=g))] = value
    rule = ra.aggregator(name, **kw)
    out = rule(x)
    assert torch.isfinite(out).all()
    if rule.selected is not None:
        assert not set(rule.selected.tolist()) & set(bad.tolist())


@pytest.mark.parametrize("pre", [ra.NNM(f=2), ra.ARC(f=2), ra.Clip(tau=1.0),
                                 ra.Bucketing(s=1, seed=0)])
def test_pre_aggregation_keeps_the_guarantee_before_krum(pre):
    x = make_inputs("normal", 9, 5, 0)
    x[1], x[4] = float("nan"), float("inf")
    assert torch.isfinite(ra.Pipeline(pre=[pre], rule=ra.Krum(f=2))(x)).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("which", ALL)
def test_dtype_and_device_preserved(dtype, which):
    name, kw, n = which
    x = make_inputs("normal", n, 5, 0).to(dtype)
    out = ra.aggregator(name, **kw)(x)
    assert out.dtype == dtype and out.device == x.device and out.shape == (5,)


@pytest.mark.parametrize("which", ALL)
def test_input_forms_agree(which):
    name, kw, n = which
    g = torch.Generator().manual_seed(0)
    dicts = [{"w": torch.randn(3, 2, generator=g), "b": torch.randn(4, generator=g)}
             for _ in range(n)]
    x = torch.stack([torch.cat([d["w"].reshape(-1), d["b"]]) for d in dicts])
    from_matrix = ra.aggregator(name, **kw)(x)
    from_list = ra.aggregator(name, **kw)([row.reshape(2, 5) for row in x])
    from_dicts = ra.aggregator(name, **kw)(dicts)
    assert torch.equal(from_list.reshape(-1), from_matrix)
    assert set(from_dicts) == {"w", "b"} and from_dicts["w"].shape == (3, 2)
    assert torch.equal(torch.cat([from_dicts["w"].reshape(-1), from_dicts["b"]]), from_matrix)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("which", ALL)
def test_cuda_matches_cpu(which):
    name, kw, n = which
    x = make_inputs("normal", n, 50, 0)
    torch.testing.assert_close(ra.aggregator(name, **kw)(x.cuda()).cpu(),
                               ra.aggregator(name, **kw)(x), rtol=1e-4, atol=1e-5)


def test_functional_forms_match_modules():
    x = make_inputs("normal", 11, 4, 0)
    assert torch.equal(F.krum(x, 2), ra.Krum(f=2)(x))
    assert torch.equal(F.multi_krum(x, 2, 5), ra.MultiKrum(f=2, m=5)(x))
    assert torch.equal(F.bulyan(x, 2), ra.Bulyan(f=2)(x))
    assert torch.equal(F.trimmed_mean(x, 3), ra.TrimmedMean(f=3)(x))
