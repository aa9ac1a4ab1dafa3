"""Finite inputs at the ends of the floating-point range: every rule's result is finite and
equals the float64 reference taken on the inputs scaled by a power of two (2^-k, exact), then
scaled back. Squared distances, norms and sums overflow there: float32 rows of 1e20 have
infinite norms, float64 rows of 1e154 infinite squared distances, sums near the largest float
overflow in both."""
import math

import pytest
import torch

import robustagg as ra
from robustagg import functional as F

from . import reference as ref
from .reference import make_inputs


def long_weiszfeld(x):
    return ref.weiszfeld(x, 3000, 1e-300)  # the scaled honest rows are ~1e-20 apart


def scaled_reference(fn, x):
    """fn (a float64 reference) on x · 2^-k, times 2^k, with 2^k about the largest entry."""
    k = math.frexp(float(x.abs().max()))[1]
    return fn(x.double() * 2.0 ** -k) * 2.0 ** (k - 1) * 2.0  # 2.0 ** 1024 is no float


N, F_ = 11, 2  # n at or above every rule's bound for f = 2 (Bulyan: 4f + 3 = 11)

# name -> (rule, float64 reference of (x: float64) -> Tensor[d])
CASES = {
    "mean": (lambda: ra.Mean(), lambda x: x.mean(0)),
    "median": (lambda: ra.CoordinateMedian(f=F_), ref.median),
    "trimmed_mean": (lambda: ra.TrimmedMean(f=F_), lambda x: ref.trimmed_mean(x, F_)),
    "krum": (lambda: ra.Krum(f=F_), lambda x: ref.multi_krum(x, F_, 1)[0]),
    "multi_krum": (lambda: ra.MultiKrum(f=F_), lambda x: ref.multi_krum(x, F_, N - F_)[0]),
    "bulyan": (lambda: ra.Bulyan(f=F_), lambda x: ref.bulyan(x, F_)[0]),
    "geometric_median": (lambda: ra.GeometricMedian(f=F_, max_iter=3000, tol=0.0),
                         long_weiszfeld),
    "centered_clipping": (None, None),  # τ follows the data: built in `rule`, `expected`
    "nnm_krum": (lambda: ra.Pipeline(pre=[ra.NNM(f=F_)], rule=ra.Krum(f=F_)),
                 lambda x: ref.multi_krum(ref.nnm(x, F_), F_, 1)[0]),
    "arc_krum": (lambda: ra.Pipeline(pre=[ra.ARC(f=F_)], rule=ra.Krum(f=F_)),
                 lambda x: ref.multi_krum(ref.arc(x, F_), F_, 1)[0]),
    "clip_multi_krum": (lambda: ra.Pipeline(pre=[ra.Clip(tau=1e-3)], rule=ra.MultiKrum(f=F_)),
                        None),
}


def inputs(dtype, magnitude, rows):
    """N rows of d = 5: ``rows="all"``, every entry of magnitude about ``magnitude`` (signs
    mixed); ``rows="two"``, two rows at ``magnitude``, the others standard normal."""
    g = torch.Generator().manual_seed(0)
    if rows == "all":
        x = (torch.rand(N, 5, generator=g, dtype=torch.float64) * 2 - 1) * magnitude
    else:
        x = torch.randn(N, 5, generator=g, dtype=torch.float64)
        x[[3, 7]] = magnitude * (1 + torch.rand(2, 5, generator=g, dtype=torch.float64))
    return x.to(dtype)


SETTINGS = [(torch.float32, 1e20, "two"), (torch.float32, 1e20, "all"),
            (torch.float32, 3e38, "all"), (torch.float64, 1e154, "two"),
            (torch.float64, 1e200, "all"), (torch.float64, 1e300, "all"),
            (torch.float64, 1.7e308, "all")]


def rule(name, magnitude):
    if name == "centered_clipping":
        return ra.CenteredClipping(tau=1e-3 * magnitude, n_iter=3, f=F_)
    return CASES[name][0]()


def expected(name, x, magnitude):
    if name == "centered_clipping":
        return scaled_reference(lambda s: ref.centered_clipping(
            s, 1e-3 * magnitude * float(s[0, 0] / x[0, 0].double()), 3, [0.0] * x.shape[1]), x)
    if name == "clip_multi_krum":  # every row's norm is above τ = 1e-3: all are clipped to it
        xs = x.double() / x.double().abs().max(dim=1, keepdim=True).values
        return ref.multi_krum(1e-3 * xs / xs.norm(dim=1, keepdim=True), F_, N - F_)[0]
    return scaled_reference(CASES[name][1], x)


@pytest.mark.parametrize("dtype,magnitude,rows", SETTINGS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_finite_extreme_inputs_match_the_scaled_reference(name, dtype, magnitude, rows):
    x = inputs(dtype, magnitude, rows)
    assert torch.isfinite(x).all()
    out = rule(name, magnitude)(x)
    assert torch.isfinite(out).all(), f"{name} gave {out}"
    want = expected(name, x, magnitude)
    scale = float(want.abs().max()) or 1.0
    torch.testing.assert_close(out.double(), want.to(dtype).double(), rtol=1e-4,
                               atol=1e-4 * scale)


@pytest.mark.parametrize("dtype,magnitude", [(torch.float32, 1e20), (torch.float64, 1e154),
                                             (torch.float64, 1e300)])
@pytest.mark.parametrize("name", ["median", "trimmed_mean", "krum", "multi_krum", "bulyan",
                                  "geometric_median", "centered_clipping", "nnm_krum",
                                  "arc_krum"])
def test_huge_finite_rows_beside_non_finite_ones_keep_the_guarantee(name, dtype, magnitude):
    """f rows non-finite, the others huge: the result is finite."""
    x = inputs(dtype, magnitude, "all")
    x[1], x[9] = float("nan"), float("inf")
    out = rule(name, magnitude)(x)
    assert torch.isfinite(out).all(), f"{name} gave {out}"


def test_geometric_median_two_huge_rows_of_eleven_stays_with_the_honest_ones():
    """Two Gaussian attackers of std 1e20 among 11: the geometric median is near the honest
    rows' (it used to be NaN: the norms overflowed, every Weiszfeld weight became 0)."""
    x = inputs(torch.float32, 1e20, "two")
    z = F.geometric_median(x)
    assert torch.isfinite(z).all()
    honest = long_weiszfeld(x.double())
    assert float((z.double() - honest).norm()) < 1.0


@pytest.mark.parametrize("dtype,magnitude", [(torch.float32, 3e38), (torch.float64, 1.7e308)])
def test_means_of_rows_near_the_largest_float(dtype, magnitude):
    x = torch.full((6, 4), magnitude, dtype=dtype)
    x[::2, 1] = -magnitude
    for out in (F.mean(x), F.multi_krum(x, 1, 3), F.coordinate_median(x), F.trimmed_mean(x, 1),
                F.bucketing(x, 3, torch.Generator().manual_seed(0))):
        assert torch.isfinite(out).all()
    torch.testing.assert_close(F.mean(x).double(), x.double().mul(2.0 ** -10).mean(0).mul(2.0 ** 10))


def test_krum_selection_is_the_exact_one_when_distances_overflow():
    """Rows near 1e200 in float64: every squared distance overflows; the chosen rows are those
    of exact arithmetic, i.e. of the same rows scaled down."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 6, generator=g, dtype=torch.float64)
    small = F.multi_krum(x, 2, 4, return_selected=True)[1]
    big = F.multi_krum(x * 2.0 ** 660, 2, 4, return_selected=True)[1]
    assert big.tolist() == small.tolist()
    assert F.bulyan(x * 2.0 ** 660, 1, return_selected=True)[1].tolist() == \
        F.bulyan(x, 1, return_selected=True)[1].tolist()


def test_more_than_f_non_finite_rows_still_give_non_finite():
    """Rescaling never turns an answer beyond the bound into a finite one."""
    x = make_inputs("normal", 7, 3, 0).double() * 1e300
    x[:4] = float("nan")  # 3 finite rows: none has the n - f - 2 = 3 finite neighbours
    assert not torch.isfinite(F.krum(x, 2)).all()
    x = torch.full((5, 2), 1e308, dtype=torch.float64)
    x[:3, 0] = float("inf")
    assert F.trimmed_mean(x, 1)[0].item() == float("inf")
    assert torch.isfinite(F.trimmed_mean(x, 1)[1])


@pytest.mark.parametrize("name", ["krum", "multi_krum", "bulyan", "nnm_krum", "median",
                                  "trimmed_mean"])
def test_the_pure_torch_path_too(name):
    """Its Gram-form distances give NaN, not +inf, where a finite pair's distance overflows."""
    x = inputs(torch.float64, 1e200, "all")
    with ra.kernels.torch_path():
        out = rule(name, 1e200)(x)
    torch.testing.assert_close(out, expected(name, x, 1e200), rtol=1e-6, atol=1e194)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype,magnitude,rows", [(torch.float32, 1e20, "two"),
                                                   (torch.float32, 3e38, "all"),
                                                   (torch.float64, 1e200, "all")])
@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_matches_cpu_on_extreme_inputs(name, dtype, magnitude, rows):
    x = inputs(dtype, magnitude, rows)
    out = rule(name, magnitude)(x.cuda())
    assert out.is_cuda and torch.isfinite(out).all()
    want = rule(name, magnitude)(x)
    torch.testing.assert_close(out.cpu(), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
