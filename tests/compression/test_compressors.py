"""The compressors against references written here: the entries each keeps, the masks, errors."""
import math

import numpy as np
import pytest
import torch

from robustagg.compression import (ApproxTopK, RandKShared, TopKShared, available_compressors,
                                   compressor, k_of, mask_seed, random_mask)

SIZES = [1, 7, 9, 17, 4097]


def ref_topk_magnitudes(g, k):
    """The k largest |g_j|, by a full sort."""
    return sorted(g.abs().tolist(), reverse=True)[:k]


def check_row(row, g, k):
    idx = row.indices.astype(np.int64)
    assert row.values.dtype == np.float32 and row.values.shape == (k,)
    assert (np.diff(idx) > 0).all() and idx[0] >= 0 and idx[-1] < g.numel()
    assert np.array_equal(row.values, g.numpy()[idx])  # the values are g's own, unscaled


@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.1, 0.001])
@pytest.mark.parametrize("name", ["topk", "approx_topk"])
def test_topk_keeps_the_k_largest_magnitudes(name, d, ratio):
    g = torch.randn(d, generator=torch.Generator().manual_seed(d))
    k = k_of(ratio, d)
    row = compressor(name, ratio=ratio).compress(g)
    check_row(row, g, k)
    assert sorted(np.abs(row.values).tolist(), reverse=True) == pytest.approx(
        ref_topk_magnitudes(g, k), abs=0)


@pytest.mark.parametrize("name", ["topk", "approx_topk"])
def test_ties_and_duplicates(name):
    g = torch.tensor([1.0, -1.0, 1.0, 0.5, -1.0, 0.0, 1.0])  # five entries of magnitude 1
    row = compressor(name, ratio=3 / 7).compress(g)
    assert row.values.shape == (3,) and np.abs(row.values).tolist() == [1.0, 1.0, 1.0]
    z = torch.zeros(9)
    assert compressor(name, ratio=0.5).compress(z).values.tolist() == [0.0] * 4


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ratio", [0.01, 0.001])
def test_approx_topk_on_its_sampled_path_is_exact(seed, ratio):
    """d large enough that the threshold is sampled: the result is still the exact top-k, and
    the candidates above the threshold number k(1 + ε) with ε small."""
    d = 2_000_000  # 4s < d: s = 256d/k samples, a quarter of d or less
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(d, generator=gen) * torch.rand(d, generator=gen) ** 3  # heavy-tailed
    comp = ApproxTopK(ratio=ratio, seed=seed)
    row = comp.compress(g)
    k = comp.k(d)
    assert comp.last_candidates is not None and k <= comp.last_candidates <= 2 * k
    assert np.array_equal(row.indices, compressor("topk", ratio=ratio).compress(g).indices)


def test_approx_topk_falls_back_when_the_sample_misleads():
    """Few large entries that a small sample misses: too few candidates, then the exact path."""
    d = 100_000
    g = torch.zeros(d)
    g[::997] = torch.arange(1, len(g[::997]) + 1, dtype=torch.float32)
    comp = ApproxTopK(ratio=0.001, samples=1000, sigmas=0.0)
    row = comp.compress(g)
    assert np.array_equal(row.indices, compressor("topk", ratio=0.001).compress(g).indices)


def test_nan_counts_as_largest_on_both_paths():
    """As torch.topk does: a NaN in a (forged) row is kept, for the rule to refuse."""
    g = torch.randn(2_000_000, generator=torch.Generator().manual_seed(1))
    g[::100_000] = float("nan")
    comp = ApproxTopK(ratio=0.001)
    row = comp.compress(g)
    assert comp.last_candidates is not None  # the sampled path
    assert np.array_equal(row.indices, compressor("topk", ratio=0.001).compress(g).indices)
    assert np.isnan(row.values).sum() == 20


@pytest.mark.parametrize("d", SIZES)
def test_randk_shared_mask(d):
    comp = RandKShared(ratio=0.3, seed=5)
    k = comp.k(d)
    m0, m0b, m1 = comp.round_mask(0, d), RandKShared(ratio=0.3, seed=5).round_mask(0, d), \
        comp.round_mask(1, d)
    assert torch.equal(m0, m0b)  # the seed, not the process, decides
    assert m0.numel() == k and len(set(m0.tolist())) == k and torch.all(m0[1:] > m0[:-1])
    assert torch.equal(m0, random_mask(mask_seed(5, 0), d, k))
    if d > 9:
        assert not torch.equal(m0, m1)
    g = torch.randn(d)
    row = comp.compress(g, m0)
    assert row.indices is None and torch.equal(torch.from_numpy(row.values), g[m0])
    assert row.nbytes == 4 * k


def test_randk_shared_mask_is_uniform():
    """Each coordinate is in the mask with probability k/d (chi-square over 2000 rounds)."""
    d, comp = 50, RandKShared(ratio=0.2)
    counts = torch.zeros(d)
    for r in range(2000):
        counts[comp.round_mask(r, d)] += 1
    expected = 2000 * comp.k(d) / d
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 90  # 49 degrees of freedom: P(chi2 > 90) < 1e-3


def test_topk_shared_mask_follows_the_aggregates():
    d = 1000
    comp = TopKShared(ratio=0.02, explore=0.5, seed=1)
    m0 = comp.round_mask(0, d)
    assert torch.equal(m0, random_mask(mask_seed(1, 0), d, 20))  # no aggregate yet: random
    agg = torch.zeros(d)
    big = torch.tensor([3, 50, 400, 401, 777, 999, 5, 6, 7, 8])
    agg[big] = torch.arange(10, 20, dtype=torch.float32)
    comp.observe(agg, None)
    m1 = comp.round_mask(1, d)
    assert set(big.tolist()) <= set(m1.tolist()) and m1.numel() == 20 and \
        len(set(m1.tolist())) == 20
    # a sub-matrix aggregate updates the memory on its mask only
    sub = torch.zeros(d)
    sub[m1] = -100.0
    comp.observe(sub, m1)
    assert torch.equal(comp.memory[m1], sub[m1]) and comp.memory[0] == 0
    assert torch.equal(TopKShared(ratio=0.02, explore=0.0).round_mask(0, d), random_mask(
        mask_seed(0, 0), d, 20))


def test_none_sends_everything():
    g = torch.randn(17)
    row = compressor("none").compress(g)
    assert np.array_equal(row.values, g.numpy()) and row.indices.tolist() == list(range(17))


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, float("nan"), True, "0.1"])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        compressor("topk", ratio=ratio)


@pytest.mark.parametrize("name", ["topk", "approx_topk"])
def test_error_feedback_needs_a_shared_mask(name):
    with pytest.raises(ValueError, match="error_feedback needs a shared mask"):
        compressor(name, ratio=0.1, error_feedback=True)


def test_registry_and_inputs():
    assert available_compressors() == ["approx_topk", "none", "randk_shared", "topk",
                                       "topk_shared"]
    with pytest.raises(ValueError, match="unknown compression 'top_k'; available: approx_topk"):
        compressor("top_k")
    with pytest.raises(ValueError, match="1-D float32"):
        compressor("topk").compress(torch.ones(3, 3))
    with pytest.raises(ValueError, match="needs the round's mask"):
        compressor("randk_shared").compress(torch.ones(3))
    assert k_of(0.001, 10) == 1 and k_of(1.0, 7) == 7 and k_of(0.5, 9) == round(4.5)
    assert math.isclose(compressor("topk", ratio=0.25).ratio, 0.25)


@pytest.mark.parametrize("name", ["topk", "approx_topk", "randk_shared", "topk_shared"])
@pytest.mark.parametrize("d", [1, 17, 4097])
def test_residual_sends_the_gradient_plus_what_was_left_out(name, d):
    """With residual the worker sends C(g + e) and keeps e <- g + e - C(g + e): reference
    written here with a second compressor of the same seed, kept and summed in the test."""
    comp = compressor(name, ratio=0.1, residual=True)
    ref = compressor(name, ratio=0.1)
    gen = torch.Generator().manual_seed(d)
    kept, total, sent = torch.zeros(d), torch.zeros(d), torch.zeros(d)
    for t in range(6):
        g = torch.randn(d, generator=gen)
        if t == 3:
            g[: d // 2] = 0.0  # a round whose gradient is zero where the residual is not
        mask = comp.round_mask(t, d)
        row, expect = comp.send(g, mask), ref.compress(g + kept, mask)
        assert np.array_equal(row.values, expect.values)
        assert np.array_equal(row.coordinates(mask).numpy(), expect.coordinates(mask).numpy())
        kept = g + kept - expect.dense(mask)
        total, sent = total + g, sent + row.dense(mask)
    # nothing is lost: what was sent and what is kept add up to every gradient computed
    assert torch.allclose(sent + kept, total, atol=1e-5)


def test_without_residual_send_is_compress_and_keeps_nothing():
    g = torch.randn(50, generator=torch.Generator().manual_seed(0))
    comp = compressor("topk", ratio=0.1)
    assert np.array_equal(comp.send(g).values, comp.compress(g).values)
    assert comp.kept is None and comp.settings()["residual"] is False


def test_residual_settings_are_checked():
    with pytest.raises(ValueError, match="residual must be a bool"):
        compressor("topk", residual=1)
    with pytest.raises(ValueError, match="choose one"):
        compressor("topk_shared", residual=True, error_feedback=True)
    assert compressor("topk_shared", residual=True).settings()["residual"] is True
