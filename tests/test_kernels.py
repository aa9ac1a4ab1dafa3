"""robustagg.kernels: the native kernels (and the torch path) against float64 references written
here, the accuracy contract, non-finite inputs, and the CUDA sources compiling. The CPU kernel
tests run once per instruction-set level this CPU runs (``cpu_level`` in tests/conftest.py).

CPU tests run everywhere (they test the torch path too when the extension is missing); tests
marked ``gpu`` need CUDA and the native CUDA kernels.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from robustagg import kernels

ROOT = Path(__file__).resolve().parents[1]
INF, NAN = float("inf"), float("nan")
HAS_CUDA = torch.cuda.is_available() and kernels.backend("cuda") == "cuda"
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])


# ------------------------------------------------------------------ references (float64, loops)

def ref_distances(x: torch.Tensor) -> torch.Tensor:
    """sum_k (x_ik - x_jk)^2 in float64 by direct differences (cdist without the Gram shortcut);
    +inf for pairs with a non-finite row, zero diagonal."""
    xd = x.detach().cpu().double()
    finite = torch.isfinite(xd).all(dim=1)
    safe = torch.where(finite[:, None], xd, torch.zeros_like(xd))
    out = torch.cdist(safe, safe, compute_mode="donot_use_mm_for_euclid_dist") ** 2
    out[~finite] = INF
    out[:, ~finite] = INF
    out.fill_diagonal_(0.0)
    return out


def ref_order_mean(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Per column, the float64 mean of the sorted values lo..hi (NaN sorted as +inf), rounded
    to x's dtype."""
    xd = x.detach().cpu().double()
    xd = torch.where(torch.isnan(xd), torch.full_like(xd, INF), xd)
    s = xd.sort(dim=0).values
    return s[lo:hi + 1].sum(dim=0).div(hi - lo + 1).to(x.dtype)


def ref_krum_index(x: torch.Tensor, f: int):
    """(index, best, second best) of the float64 Krum scores (n - f - 2 nearest)."""
    d = ref_distances(x)
    n = x.shape[0]
    d.fill_diagonal_(INF)
    scores = d.sort(dim=1).values[:, :n - f - 2].sum(dim=1)
    top = scores.sort(stable=True)
    return int(top.indices[0]), float(top.values[0]), float(top.values[1])


def assert_same(a: torch.Tensor, b: torch.Tensor):
    """Bit-identical, NaN equal to NaN."""
    torch.testing.assert_close(a.cpu(), b.cpu(), rtol=0, atol=0, equal_nan=True)


def poison(x: torch.Tensor, rows, values=(NAN, INF, -INF)) -> torch.Tensor:
    x = x.clone()
    for r, v in zip(rows, values):
        x[r, (r * 7919) % x.shape[1]] = v  # in a later column block when d is large
    return x


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ backend

def test_backend_is_native_after_install():
    assert kernels.backend(torch.device("cpu")) == "cpp", \
        "robustagg._C did not load: rebuild with pip install --no-build-isolation -e ."
    assert kernels.backend("cpu") in ("cpp", "torch")


# ------------------------------------------------------------------ pairwise distances

# d values hit empty input, the vector tails of every SIMD width and several column blocks.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,d", [(1, 5), (2, 0), (2, 1), (3, 17), (5, 33), (9, 1000),
                                 (10, 4099), (17, 70), (33, 5000), (101, 300),
                                 # every tile-edge size (n mod 4) over several column blocks
                                 # and float32 runs: blocks of 16384 columns at small n
                                 (4, 20011), (6, 40000), (8, 33333), (11, 16385), (12, 17)])
@pytest.mark.usefixtures("cpu_level")
def test_pairwise_matches_float64_reference(n, d, dtype):
    x = torch.randn(n, d, generator=gen(n * 1000 + d), dtype=dtype)
    for impl in (kernels.pairwise_sq_distances, kernels.pairwise_sq_distances_torch):
        got = impl(x)
        assert got.dtype == torch.float64 and got.shape == (n, n)
        torch.testing.assert_close(got, ref_distances(x), rtol=1e-5 if dtype == torch.float32
                                   else 1e-10, atol=1e-9)
        assert torch.equal(got, got.T) and (got.diagonal() == 0).all()


@pytest.mark.usefixtures("cpu_level")
def test_pairwise_duplicates_are_exactly_zero():
    x = torch.randn(4, 3001, generator=gen(1)).repeat(3, 1)
    got = kernels.pairwise_sq_distances(x)
    for i in range(12):
        for j in range(12):
            if i % 4 == j % 4:
                assert got[i, j] == 0.0


@pytest.mark.usefixtures("cpu_level")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [2500, 40_000])  # one column block; several
def test_pairwise_non_finite_rows_are_inf(dtype, d):
    x = poison(torch.randn(9, d, generator=gen(2), dtype=dtype), rows=[1, 4, 8])
    got = kernels.pairwise_sq_distances(x)
    ref = ref_distances(x)
    assert not torch.isnan(got).any()
    for r in (1, 4, 8):
        assert torch.isinf(got[r]).sum() == 8 and got[r, r] == 0.0
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=0)


@pytest.mark.usefixtures("cpu_level")
def test_pairwise_large_finite_values_do_not_overflow():
    # (1e20)^2 overflows float32 but not float64: such rows are finite, so their distances are.
    x = torch.randn(6, 3000, generator=gen(3))
    x[2] *= 1e20
    x[5, 10] = 3e38
    got = kernels.pairwise_sq_distances(x)
    ref = ref_distances(x)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=0)


@pytest.mark.usefixtures("cpu_level")
def test_pairwise_accuracy_contract_gaussian_d1e6():
    # Issue 3: within 1e-4 relative of a float64 reference on N(0, 1) data at d = 1e6.
    x = torch.randn(10, 1_000_000, generator=gen(4))
    ref = ref_distances(x)
    rel = (kernels.pairwise_sq_distances(x) - ref).abs() / ref.clamp_min(1e-300)
    assert rel.max() < 1e-4


def near_duplicates(seed: int):
    """(x, max relative error function): x_i = base + 1e-3 noise at d = 1e6, where the Gram
    identity without centring loses everything."""
    g = gen(seed)
    base = torch.randn(1_000_000, generator=g) * 10
    x = base + 1e-3 * torch.randn(8, 1_000_000, generator=g)
    ref = ref_distances(x)
    off = ~torch.eye(8, dtype=torch.bool)
    return x, lambda got: ((got.cpu() - ref).abs() / ref.clamp_min(1e-300))[off].max()


@pytest.mark.usefixtures("cpu_level")
def test_pairwise_accuracy_contract_near_duplicates():
    x, max_rel = near_duplicates(5)
    for impl in (kernels.pairwise_sq_distances, kernels.pairwise_sq_distances_torch):
        assert max_rel(impl(x)) < 1e-3


@pytest.mark.usefixtures("cpu_level")
def test_pairwise_many_threads_and_blocks_agree():
    # The thread count changes how the work is split, never a bit of the result.
    x = torch.randn(12, 200_003, generator=gen(6))  # enough work for 2 threads
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kernels.pairwise_sq_distances(x)
        torch.set_num_threads(max(old, 2))
        many = kernels.pairwise_sq_distances(x)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, many)
    torch.testing.assert_close(one, ref_distances(x), rtol=1e-5, atol=0)


@pytest.mark.usefixtures("cpu_level")
@pytest.mark.parametrize("n,d", [(1, 9), (2, 1), (7, 17), (12, 4097), (40, 70_001), (700, 2000),
                                 (300, 9000), (520, 2048), (730, 1024)])
def test_pairwise_partials_sum_to_the_distances(n, d):
    # Contract: one float64 [n, n] per group of `width` columns; added in group order to zero
    # they give the distances bit for bit, for the whole matrix and for column slices cut at
    # multiples of the width (each slice's own groups, in order). n = 700 takes several waves
    # of accumulators, n = 730 one group at a time; n = 300 has blocks of 512 columns; rows of
    # 2048 and 1024 float32 (4 KiB strides) from 512 rows on are copied to a padded buffer
    # first; 1 and 2 threads split the work differently.
    x = torch.randn(n, d, generator=gen(8)) * torch.rand(n, 1, generator=gen(9)) * 4
    if n > 3:
        x[1] = x[0]
        x[-1, d // 2] = NAN
    width = kernels.distance_group_width(d)
    assert width >= 256 and width & (width - 1) == 0
    old = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            whole = kernels.pairwise_sq_distances(x)
            for cuts in ([0, d], [0, width, d], [0, width * (-(-d // width) // 2), d]):
                if any(a >= b for a, b in zip(cuts, cuts[1:])):
                    continue
                groups = [g for lo, hi in zip(cuts, cuts[1:])
                          for g in kernels.pairwise_sq_distance_partials(x[:, lo:hi].contiguous(),
                                                                         width)]
                assert len(groups) == max(-(-d // width), 1)
                total = torch.zeros(n, n, dtype=torch.float64)
                for g in groups:
                    assert_same(g, g.T)  # symmetric, NaN where a row is not finite
                    assert torch.equal(g.diagonal(), torch.zeros(n, dtype=torch.float64))
                    total += g
                assert torch.equal(total.masked_fill(~torch.isfinite(total), INF), whole)
    finally:
        torch.set_num_threads(old)
    lo = width  # a group on its own: the distances over its columns
    if d > lo:
        part = kernels.pairwise_sq_distance_partials(x, width)[1]
        torch.testing.assert_close(part.masked_fill(~torch.isfinite(part), INF),
                                   ref_distances(x[:, lo:lo + width]), rtol=1e-5, atol=0)
    torch.testing.assert_close(whole, ref_distances(x), rtol=1e-5, atol=0)


# ------------------------------------------------------------------ Krum selection contract

@pytest.mark.usefixtures("cpu_level")
def test_krum_selection_matches_float64_reference():
    # Krum's choice equals the float64 reference's whenever the reference's two best
    # scores differ by more than 1e-4 relative.
    from robustagg import functional as F

    checked = 0
    for seed in range(40):
        g = gen(100 + seed)
        n, f = 7 + seed % 9, 1 + seed % 2
        x = torch.randn(1, 20_000, generator=g) + 0.3 * torch.randn(n, 20_000, generator=g)
        x[-f:] += torch.randn(f, 20_000, generator=g) * (seed % 3)
        idx, best, second = ref_krum_index(x, f)
        if (second - best) / best <= 1e-4:
            continue
        _, sel = F.krum(x, f, return_selected=True)
        assert int(sel[0]) == idx, f"seed {seed}"
        checked += 1
    assert checked >= 30


# ------------------------------------------------------------------ median and trimmed mean

def sample(n: int, d: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """Gaussian columns with ties (rounded block), duplicates and non-finite values."""
    g = gen(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    x[:, : d // 3] = torch.round(x[:, : d // 3] * 2) / 2   # many ties
    if n > 2:
        x[n - 1, d // 3: d // 2] = x[0, d // 3: d // 2]      # duplicates
    k = max(1, d // 50)
    cols = torch.randint(0, d, (3, k), generator=g)
    rows = torch.randint(0, n, (3, k), generator=g)
    for v, r, c in zip((NAN, INF, -INF), rows, cols):
        x[r, c] = v
    return x


@pytest.mark.usefixtures("cpu_level")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 10, 11, 16, 32, 33, 64, 100])
def test_coordinate_median_bit_identical(n, dtype):
    x = sample(n, 1037, seed=n, dtype=dtype)
    ref = ref_order_mean(x, (n - 1) // 2, n // 2)
    assert_same(kernels.coordinate_median(x), ref)
    assert_same(kernels.coordinate_median_torch(x), ref)


@pytest.mark.usefixtures("cpu_level")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 3, 4, 7, 10, 13, 32, 50])
def test_trimmed_mean_bit_identical_every_f(n, dtype):
    x = sample(n, 517, seed=100 + n, dtype=dtype)
    for f in range(0, (n - 1) // 2 + 1):
        got, ref = kernels.trimmed_mean(x, f), ref_order_mean(x, f, n - f - 1)
        if dtype == torch.float32:
            assert_same(got, ref)
        else:  # float64 sums round in summation order: equal to a few ulps, not bitwise
            torch.testing.assert_close(got, ref, rtol=1e-13, atol=1e-14, equal_nan=True)


@pytest.mark.usefixtures("cpu_level")
def test_order_statistics_at_d1e6():
    x = sample(10, 1_000_000, seed=7)
    assert_same(kernels.coordinate_median(x), ref_order_mean(x, 4, 5))
    assert_same(kernels.trimmed_mean(x, 3), ref_order_mean(x, 3, 6))


@pytest.mark.usefixtures("cpu_level")
def test_median_even_n_is_mean_of_middle_values_without_overflow():
    x = torch.tensor([[3e38, 1.0], [3e38, 2.0], [-1.0, 4.0], [3.0, 8.0]])
    assert_same(kernels.coordinate_median(x), torch.tensor([1.5e38, 3.0]))


@pytest.mark.usefixtures("cpu_level")
def test_order_statistics_large_n_uses_torch_path():
    x = sample(300, 64, seed=8)
    assert_same(kernels.coordinate_median(x), ref_order_mean(x, 149, 150))
    assert_same(kernels.trimmed_mean(x, 20), ref_order_mean(x, 20, 279))


# ------------------------------------------------------------------ rows_mean

@pytest.mark.usefixtures("cpu_level")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_mean_matches_reference(dtype):
    x = torch.randn(9, 5003, generator=gen(9), dtype=dtype)
    for idx in ([4], [0, 8], [3, 1, 3, 7], [8, 0, 2, 2, 5, 6, 1]):
        t = torch.tensor(idx)
        ref = x.double()[t].sum(dim=0).div(len(idx)).to(dtype)
        exact = dtype == torch.float32  # float32 rows sum exactly in float64; float64 rows round
        torch.testing.assert_close(kernels.rows_mean(x, t), ref, rtol=0 if exact else 1e-15,
                                   atol=0 if exact else 1e-15)
        torch.testing.assert_close(kernels.rows_mean_torch(x, t), ref)


@pytest.mark.usefixtures("cpu_level")
@pytest.mark.skipif(kernels.backend("cpu") != "cpp", reason="native extension not built")
def test_large_outputs_reuse_freed_buffers_only():
    # Outputs of >= 1 MiB come from a pool of freed buffers (csrc/output_pool.cpp): a freed
    # output's memory is handed out again, a live one never is, and reuse leaves no stale values.
    x = torch.randn(5, 400_000, generator=gen(10))
    first = kernels.rows_mean(x, torch.tensor([0]))
    ptr = first.data_ptr()
    del first
    again = kernels.rows_mean(x, torch.tensor([1]))
    assert again.data_ptr() == ptr and torch.equal(again, x[1])
    kept = [kernels.rows_mean(x, torch.tensor([i])) for i in range(5)]
    kept.append(kernels.coordinate_median(x))
    assert len({t.data_ptr() for t in kept} | {again.data_ptr()}) == 7
    for i in range(5):
        assert torch.equal(kept[i], x[i])
    assert torch.equal(kept[5], x.median(dim=0).values)
    kept[0].resize_(400_000).add_(1)  # an ordinary tensor otherwise
    assert torch.equal(kept[0], x[0] + 1)


# ------------------------------------------------------------------ CUDA

CU_FILES = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_cuda_sources_compile_with_nvcc(cu, tmp_path):
    # CI has nvcc but no GPU (and a CPU torch): the .cu files are torch-free, so they compile,
    # here for Hopper (sm_90) and Ampere (sm_80) in one nvcc call.
    obj = tmp_path / (cu.stem + ".o")
    cmd = ["nvcc", "-c", "-O3", "-std=c++17", "--threads", "2",
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
           str(cu), "-o", str(obj)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TMPDIR": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert obj.stat().st_size > 0


def _cuda_include() -> Path | None:
    from torch.utils.cpp_extension import CUDA_HOME
    homes = ([Path(CUDA_HOME)] if CUDA_HOME else []) + sorted(Path("/usr/local").glob("cuda*"))
    return next((h / "include" for h in homes if (h / "include" / "cuda_runtime_api.h").exists()),
                None)


@pytest.mark.slow
@pytest.mark.skipif(_cuda_include() is None, reason="CUDA headers not installed")
def test_cuda_bindings_compile(tmp_path):
    # The tensor adapters need torch's CUDA headers; a CPU torch lacks one generated header
    # (an empty stand-in is enough to check the adapters against the kernels' declarations).
    import sysconfig

    import torch.utils.cpp_extension as ext
    stub = tmp_path / "c10" / "cuda" / "impl"
    stub.mkdir(parents=True)
    (stub / "cuda_cmake_macros.h").write_text("")
    cmd = (["g++", "-std=c++17", "-fsyntax-only", "-DTORCH_EXTENSION_NAME=_C", f"-I{tmp_path}",
            f"-I{_cuda_include()}", f"-I{sysconfig.get_paths()['include']}"]
           + [f"-I{p}" for p in ext.include_paths()]
           + [str(ROOT / "csrc" / "cuda" / "bindings_cuda.cpp")])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def test_cuda_sources_exist():
    assert {p.name for p in CU_FILES} >= {"pairwise_cuda.cu", "selection_cuda.cu"}


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA and robustagg built with CUDA")
@pytest.mark.parametrize("n,d", [(2, 1), (10, 4099), (33, 100_003), (64, 1000)])
def test_cuda_pairwise_matches_reference(n, d):
    x = torch.randn(n, d, generator=gen(n + d))
    got = kernels.pairwise_sq_distances(x.cuda())
    assert got.is_cuda and got.dtype == torch.float64
    torch.testing.assert_close(got.cpu(), ref_distances(x), rtol=1e-5, atol=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA and robustagg built with CUDA")
def test_cuda_pairwise_contract_non_finite_and_near_duplicates():
    x, max_rel = near_duplicates(11)
    assert max_rel(kernels.pairwise_sq_distances(x.cuda())) < 1e-3
    x = poison(torch.randn(9, 2500, generator=gen(11)), rows=[1, 4, 8])
    torch.testing.assert_close(kernels.pairwise_sq_distances(x.cuda()).cpu(), ref_distances(x),
                               rtol=1e-5, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA and robustagg built with CUDA")
@pytest.mark.parametrize("n", [1, 4, 10, 11, 32, 64])
def test_cuda_order_statistics_bit_identical(n):
    x = sample(n, 4099, seed=200 + n)
    assert_same(kernels.coordinate_median(x.cuda()), ref_order_mean(x, (n - 1) // 2, n // 2))
    for f in {0, (n - 1) // 4, (n - 1) // 2}:
        assert_same(kernels.trimmed_mean(x.cuda(), f), ref_order_mean(x, f, n - f - 1))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA and robustagg built with CUDA")
def test_cuda_rows_mean_and_krum_selection():
    from robustagg import functional as F

    x = torch.randn(12, 30_011, generator=gen(12))
    t = torch.tensor([1, 5, 5, 11])
    torch.testing.assert_close(kernels.rows_mean(x.cuda(), t.cuda()).cpu(),
                               x.double()[t].mean(dim=0).float(), rtol=0, atol=0)
    for seed in range(10):
        x = torch.randn(16, 5000, generator=gen(300 + seed))
        idx, best, second = ref_krum_index(x, 3)
        if (second - best) / best > 1e-4:
            assert int(F.krum(x.cuda(), 3, return_selected=True)[1][0]) == idx


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA and robustagg built with CUDA")
@pytest.mark.parametrize("n,d", [(2, 2049), (10, 300_007), (70, 20_011)])
def test_cuda_pairwise_same_bits_every_run(n, d):
    x = torch.randn(n, d, generator=gen(14)).cuda()
    first = kernels.pairwise_sq_distances(x)
    for _ in range(5):
        assert torch.equal(kernels.pairwise_sq_distances(x), first)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA and robustagg built with CUDA")
@pytest.mark.parametrize("scale", [1e-25, 1e-30, 1e-40, 1e38])
def test_cuda_pairwise_accuracy_at_every_magnitude(scale):
    xd = torch.randn(9, 5000, generator=gen(15), dtype=torch.float64) * scale
    x = xd.clamp(-torch.finfo(torch.float32).max, torch.finfo(torch.float32).max).float()
    ref = ref_distances(x)
    got = kernels.pairwise_sq_distances(x.cuda()).cpu()
    off = ~torch.eye(9, dtype=torch.bool)
    assert torch.isfinite(got).all()
    assert ((got - ref).abs() / ref)[off].max() < 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA and robustagg built with CUDA")
def test_cuda_nan_row_gives_inf_and_duplicates_zero():
    x = torch.randn(12, 50_000, generator=gen(16))
    x[3] = NAN
    x[7] = x[5]
    got = kernels.pairwise_sq_distances(x.cuda()).cpu()
    assert torch.isinf(got[3]).sum() == 11 and got[3, 3] == 0
    assert got[5, 7] == 0
    torch.testing.assert_close(got, ref_distances(x), rtol=1e-5, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA and robustagg built with CUDA")
def test_cuda_rows_mean_checks_its_indices():
    x = torch.randn(4, 10).cuda()
    with pytest.raises(RuntimeError, match="out of"):
        kernels.rows_mean(x, torch.tensor([0, 4]).cuda())
    with pytest.raises(RuntimeError, match="empty"):
        kernels.rows_mean(x, torch.tensor([], dtype=torch.int64).cuda())
