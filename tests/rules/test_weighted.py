"""Weighted mean, median, trimmed mean, geometric median and centered clipping against plain
references (exact fractions), the cap on one worker's share, and the errors."""
from fractions import Fraction

import pytest
import torch

import robustagg as ra
from robustagg import functional as F
from robustagg.functional._weights import cap

from .reference import KINDS, make_inputs


def _key(v):
    return float("inf") if v != v else v


def ref_weighted_median(x, w):
    """Per column: the first sorted value (ties in row order) whose weight at or below reaches
    half the total; at exactly half, its mean with the next value of positive weight."""
    w = [Fraction(v) for v in w]
    total = sum(w)
    out = []
    for col in x.double().t().tolist():
        pairs = sorted(((_key(v), i) for i, v in enumerate(col)), key=lambda p: p[0])
        pairs = [(v, w[i]) for v, i in pairs if w[i] > 0]
        acc = Fraction(0)
        for j, (v, wi) in enumerate(pairs):
            acc += wi
            if 2 * acc >= total:
                out.append(v if 2 * acc > total else (v + pairs[j + 1][0]) / 2)
                break
    return torch.tensor(out, dtype=torch.float64)


def ref_weighted_trimmed_mean(x, w, f):
    """Per column: cut the weight of the f heaviest workers from each end of the weighted
    sorted values, average what is left by weight."""
    w = [Fraction(v) for v in w]
    total, tau = sum(w), sum(sorted(w, reverse=True)[:f])
    out = []
    for col in x.double().t().tolist():
        order = sorted(range(len(col)), key=lambda i: _key(col[i]))
        acc, num = Fraction(0), 0.0
        for i in order:
            lo, hi = acc, acc + w[i]
            acc = hi
            kept = max(Fraction(0), min(hi, total - tau) - max(lo, tau))
            if kept:
                num += float(kept / (total - 2 * tau)) * _key(col[i])
        out.append(num)
    return torch.tensor(out, dtype=torch.float64)


def repeated(x, w):
    """Integer weights as repeated rows."""
    return torch.cat([x[i:i + 1].expand(int(k), -1) for i, k in enumerate(w) if k])


DIMS = [1, 7, 9, 17, 4097]


def seeds(d):
    """Three seeds (the third with zero weights); the loop references are slow at d = 4097."""
    return range(3) if d < 1000 else (2,)


def int_weights(n, seed, zeros=False):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(1 - zeros, 6, (n,), generator=g)
    if int(w.sum()) == 0:
        w[0] = 1
    return w.tolist()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10])
def test_weighted_median_matches_reference(kind, d, n):
    for seed in seeds(d):
        x = make_inputs(kind, n, d, seed)
        w = int_weights(n, seed, zeros=seed == 2)
        out = F.coordinate_median(x, weights=w)
        assert torch.equal(out, ref_weighted_median(x, w).float())
        # integer weights are repeated rows
        assert torch.equal(out, F.coordinate_median(repeated(x, w)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("n,f", [(1, 0), (3, 1), (5, 2), (6, 2), (10, 3), (9, 0)])
def test_weighted_trimmed_mean_matches_reference(kind, d, n, f):
    for seed in seeds(d):
        x = make_inputs(kind, n, d, seed)
        w = int_weights(n, seed, zeros=seed == 2)
        tau = sum(sorted(w, reverse=True)[:f])
        if 2 * tau >= sum(w):
            with pytest.raises(ValueError, match="heaviest workers hold"):
                F.trimmed_mean(x, f, weights=w)
            continue
        out = F.trimmed_mean(x, f, weights=w)
        torch.testing.assert_close(out.double(), ref_weighted_trimmed_mean(x, w, f),
                                   rtol=1e-6, atol=1e-6)
        # integer weights: the unweighted rule on repeated rows, trimming tau rows each side
        torch.testing.assert_close(out, F.trimmed_mean(repeated(x, w), tau), rtol=1e-6,
                                   atol=1e-6)


@pytest.mark.parametrize("d", DIMS)
def test_weighted_mean_matches_reference(d):
    x = make_inputs("normal", 6, d, 0)
    w = [0.5, 2.0, 0.0, 1.0, 3.0, 0.25]
    expected = sum(wi * x[i].double() for i, wi in enumerate(w)) / sum(w)
    torch.testing.assert_close(F.mean(x, weights=w).double(), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ra.Mean()(x, weights=torch.tensor(w)), F.mean(x, weights=w))


def test_weighted_geometric_median_minimises_the_weighted_sum_of_distances():
    for seed in range(3):
        x = make_inputs("normal", 7, 5, seed).double()
        w = torch.tensor(int_weights(7, seed), dtype=torch.float64)
        z = F.geometric_median(x, weights=w, max_iter=2000, tol=1e-14)

        def objective(p):
            return float((w * (x - p).norm(dim=1)).sum())
        # integer weights are repeated points: the same minimiser
        torch.testing.assert_close(z, F.geometric_median(repeated(x, w.long().tolist()),
                                                         max_iter=2000, tol=1e-14),
                                   rtol=1e-6, atol=1e-6)
        assert all(objective(z) <= objective(xi) + 1e-9 for xi in x)
        for _ in range(20):
            assert objective(z) <= objective(z + 1e-3 * torch.randn(5, dtype=torch.float64))


def test_weighted_centered_clipping_matches_reference():
    x = make_inputs("normal", 6, 9, 0).double() * 3
    w = [1.0, 2.0, 0.0, 4.0, 1.0, 0.5]
    center = torch.randn(9, dtype=torch.float64)
    v = center.clone()
    for _ in range(3):
        diff = x - v
        s = (1.0 / diff.norm(dim=1)).clamp_max(1.0)
        v = v + sum(w[i] / sum(w) * s[i] * diff[i] for i in range(6))
    torch.testing.assert_close(F.centered_clipping(x, 1.0, 3, center, weights=w), v)


EQUAL = [(lambda x, w: F.mean(x, weights=w), lambda x: F.mean(x)),
         (lambda x, w: F.coordinate_median(x, weights=w), lambda x: F.coordinate_median(x)),
         (lambda x, w: F.trimmed_mean(x, 2, weights=w), lambda x: F.trimmed_mean(x, 2)),
         (lambda x, w: F.geometric_median(x, weights=w), lambda x: F.geometric_median(x)),
         (lambda x, w: F.centered_clipping(x, 0.5, 2, weights=w),
          lambda x: F.centered_clipping(x, 0.5, 2))]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("n", [5, 6, 8])
@pytest.mark.parametrize("which", range(len(EQUAL)))
def test_equal_weights_are_the_unweighted_rule_exactly(which, n, d, kind):
    weighted, plain = EQUAL[which]
    x = make_inputs(kind, n, d, n)
    for value in (1, 0.1, 7.5):
        assert torch.equal(weighted(x, [value] * n), plain(x))


@pytest.mark.parametrize("d", DIMS)
def test_zero_weights_leave_the_worker_out(d):
    x = make_inputs("ties", 7, d, 1)
    w = [1, 0, 1, 1, 0, 1, 1]
    keep = [i for i, v in enumerate(w) if v]
    poisoned = x.clone()
    poisoned[1], poisoned[4] = float("nan"), float("inf")  # zero weight: never read as values
    for xx in (x, poisoned):
        assert torch.equal(F.coordinate_median(xx, weights=w), F.coordinate_median(x[keep]))
        torch.testing.assert_close(F.trimmed_mean(xx, 1, weights=w), F.trimmed_mean(x[keep], 1))
        torch.testing.assert_close(F.mean(xx, weights=w), F.mean(x[keep]))
        torch.testing.assert_close(F.geometric_median(xx, weights=w),
                                   F.geometric_median(x[keep]))


def test_weighted_median_exactly_half():
    x = torch.tensor([[1.0], [2.0], [10.0], [20.0]])
    assert F.coordinate_median(x, weights=[1, 2, 1, 2]).item() == 6.0    # W(<= 2) = 3 = half
    assert F.coordinate_median(x, weights=[1, 2, 0, 3]).item() == 11.0   # skips the weightless
    assert F.coordinate_median(x, weights=[1, 3, 1, 1]).item() == 2.0    # crosses at 2
    assert F.coordinate_median(x, weights=[3, 0, 0, 3]).item() == 10.5
    # ties: equal values straddling the half give that value
    x = torch.tensor([[1.0], [5.0], [5.0], [9.0]])
    assert F.coordinate_median(x, weights=[1, 1, 1, 1]).item() == 5.0


def test_cap_water_filling():
    w = torch.tensor([90.0, 6.0, 3.0, 1.0], dtype=torch.float64)
    c = cap(w, 0.4)
    shares = c / c.sum()
    assert abs(float(shares.max()) - 0.4) < 1e-12
    # the uncapped keep their proportions
    assert abs(float(c[1] / c[2]) - 2.0) < 1e-12 and abs(float(c[2] / c[3]) - 3.0) < 1e-12
    assert torch.equal(cap(c, 0.4), c)             # idempotent
    assert torch.equal(cap(w, 0.95), w)            # nothing above the cap: unchanged
    c = cap(torch.tensor([5.0, 4.0, 1.0, 0.0], dtype=torch.float64), 1 / 3)
    assert torch.allclose(c[:3] / c.sum(), torch.full((3,), 1 / 3, dtype=torch.float64))
    assert c[3] == 0


def test_a_liar_is_capped():
    """One Byzantine worker reports weight 1e9 and sends 1e6: without the cap it is the
    weighted median and the weighted trimmed mean; with max_weight_share = 0.2 of 10 workers
    its share is 0.2 and both stay among the honest values."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 4, generator=g)
    x[0] = 1e6
    w = [1e9] + [1.0] * 9
    assert torch.equal(F.coordinate_median(x, weights=w), x[0])
    honest = x[1:]
    for out in (F.coordinate_median(x, weights=w, max_weight_share=0.2),
                F.trimmed_mean(x, 1, weights=w, max_weight_share=0.2),
                ra.CoordinateMedian(f=1, max_weight_share=0.2)(x, weights=w),
                ra.aggregator("trimmed_mean", f=1, max_weight_share=0.2)(x, weights=w),
                ra.GeometricMedian(max_weight_share=0.2)(x, weights=w)):
        assert (out >= honest.min(0).values - 1e-5).all() and \
            (out <= honest.max(0).values + 1e-5).all()
    # the cap bounds the liar's pull on the centered clipping to its share times tau
    out = F.centered_clipping(x, 1.0, 1, weights=w, max_weight_share=0.2)
    assert (out - F.centered_clipping(x[1:], 1.0, 1, weights=[1.0] * 9) * 0.8).norm() <= 0.2 + 1e-5


@pytest.mark.parametrize("bad,match", [
    ([1, 2], r"weights must have shape \[3\]"),
    ([1, -1, 2], r"finite and non-negative, got weights\[1\]=-1.0"),
    ([1, float("nan"), 2], r"finite and non-negative, got weights\[1\]=nan"),
    ([1, float("inf"), 2], r"finite and non-negative"),
    ([0, 0, 0], "weights are all 0"),
])
def test_bad_weights_are_clear_errors(bad, match):
    x = torch.randn(3, 4)
    for fn in (lambda: F.mean(x, weights=bad), lambda: F.coordinate_median(x, weights=bad),
               lambda: F.trimmed_mean(x, 1, weights=bad),
               lambda: F.geometric_median(x, weights=bad),
               lambda: F.centered_clipping(x, 1.0, weights=bad)):
        with pytest.raises(ValueError, match=match):
            fn()


def test_weight_errors():
    x = torch.randn(4, 3)
    with pytest.raises(TypeError, match="weights must be real numbers"):
        F.mean(x, weights=torch.tensor([True, False, True, True]))
    with pytest.raises(TypeError, match="weights must be a Tensor"):
        F.mean(x, weights="heavy")
    with pytest.raises(ValueError, match=r"max_weight_share=0.2 is below 1/n = 1/4"):
        F.mean(x, max_weight_share=0.2)
    with pytest.raises(ValueError, match=r"max_weight_share=0.4 is below 1/2"):
        F.coordinate_median(x, weights=[1, 0, 0, 1], max_weight_share=0.4)
    with pytest.raises(ValueError, match=r"max_weight_share must be in \(0, 1\]"):
        ra.CoordinateMedian(max_weight_share=1.5)
    with pytest.raises(ValueError, match="the f=1 heaviest workers hold 70% of the weight"):
        F.trimmed_mean(torch.randn(3, 2), 1, weights=[7, 2, 1])
    with pytest.raises(TypeError, match=r"Krum\(f=1\) does not take per-worker weights"):
        ra.Krum(f=1)(torch.randn(5, 3), weights=[1] * 5)
    with pytest.raises(TypeError, match="does not take per-worker weights"):
        ra.Pipeline(pre=[ra.Bucketing(s=1)], rule=ra.Mean())(x, weights=[1] * 4)
    with pytest.raises(ValueError, match="weights cannot be combined with streaming"):
        F.coordinate_median(x, chunk_columns=2, weights=[1, 2, 3, 4])


def test_modules_pass_weights_through_every_input_form():
    g = torch.Generator().manual_seed(0)
    dicts = [{"w": torch.randn(2, 2, generator=g), "b": torch.randn(3, generator=g)}
             for _ in range(5)]
    x = torch.stack([torch.cat([d["w"].reshape(-1), d["b"]]) for d in dicts])
    w = [3, 1, 2, 1, 1]
    rule = ra.CoordinateMedian(f=1)
    out = rule(dicts, weights=w)
    assert torch.equal(torch.cat([out["w"].reshape(-1), out["b"]]),
                       F.coordinate_median(x, weights=w))
    p = ra.Pipeline(pre=[ra.Clip(tau=10.0)], rule=ra.TrimmedMean(f=1))
    assert torch.equal(p(x, weights=w), F.trimmed_mean(F.clip(x, 10.0), 1, weights=w))
    assert "max_weight_share=0.5" in repr(ra.Mean(max_weight_share=0.5))
    assert repr(ra.Mean()) == "Mean()"


def test_float16_weighted_keeps_dtype():
    x = make_inputs("normal", 5, 6, 0).half()
    for out in (F.coordinate_median(x, weights=[1, 2, 3, 4, 5]),
                F.trimmed_mean(x, 1, weights=[1, 2, 3, 4, 5]),
                F.mean(x, weights=[1, 2, 3, 4, 5])):
        assert out.dtype == torch.float16
    torch.testing.assert_close(F.coordinate_median(x, weights=[1, 2, 3, 4, 5]).double(),
                               ref_weighted_median(x.float(), [1, 2, 3, 4, 5]).half().double())
