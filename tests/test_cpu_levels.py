"""The same bits on every CPU: the native kernels' results do not depend on the instruction-set
level (AVX-512 or AVX2) nor on the thread count, and the portable level meets the accuracy
contract (docs/kernels.md, "Same results on every CPU").

Each check computes one function at every (level, thread count) this machine can run and asserts
the results are bit-identical. On an AVX2-only machine the level comparison has one AVX level and
still checks every thread count and the portable level.
"""
import pytest
import torch

from robustagg import functional as F
from robustagg import kernels

pytestmark = pytest.mark.skipif(kernels.backend("cpu") != "cpp", reason="native extension not built")

LEVELS = kernels.cpu_levels()
AVX = [lv for lv in LEVELS if lv != "base"]
THREADS = [1, 2, 3, 4]
SHAPES = [(3, 1), (4, 7), (5, 9), (8, 15), (11, 17), (16, 4095), (17, 4097), (33, 100_003),
          (3, 100_003), (32, 4097), (64, 1000), (100, 333), (130, 2048)]
KINDS = ["normal", "duplicates", "tiny", "huge", "non_finite", "wide_span"]
# Bit-identical on the AVX levels and at every thread count; the order statistics and rows_mean
# on the portable level too.
EVERYWHERE = {"coordinate_median", "trimmed_mean", "trimmed_mean_wide", "rows_mean"}


def make(kind: str, n: int, d: int, dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    if kind == "duplicates":
        x[n // 2:] = x[: n - n // 2].clone()
    elif kind == "tiny":  # squares underflow float32
        x *= 1e-25
    elif kind == "huge":  # differences overflow float32
        x = x.sign() * torch.finfo(dtype).max * (0.5 + 0.5 * torch.rand(n, d, generator=g,
                                                                          dtype=torch.float64))
    elif kind == "wide_span":  # magnitudes 2^-60 .. 2^60: no float64 sum of them is exact
        x *= torch.exp2(torch.randint(-60, 61, (n, d), generator=g).to(torch.float64))
    elif kind == "non_finite":
        x[0, d // 2] = float("nan")
        x[-1, 0] = float("inf")
    return x.to(dtype)


def results(x: torch.Tensor) -> dict:
    n = x.shape[0]
    f = (n - 3) // 2  # Krum's bound n >= 2f + 3
    out, sel = F.multi_krum(x, f, return_selected=True)
    return {
        "pairwise_sq_distances": kernels.pairwise_sq_distances(x),
        "krum_scores": F.krum_scores(x, f),
        "multi_krum": (out, sel),
        "coordinate_median": kernels.coordinate_median(x),
        "trimmed_mean": kernels.trimmed_mean(x, f),
        "trimmed_mean_wide": kernels.trimmed_mean(x, n // 5),
        "rows_mean": kernels.rows_mean(x, torch.arange(n - 1, -1, -2)),
    }


def same_bits(a, b) -> bool:
    if isinstance(a, tuple):
        return all(same_bits(u, v) for u, v in zip(a, b))
    return (a.dtype == b.dtype and a.shape == b.shape
            and a.contiguous().numpy().tobytes() == b.contiguous().numpy().tobytes())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,d", SHAPES, ids=[f"n{n}-d{d}" for n, d in SHAPES])
def test_same_bits_on_every_avx_level_and_thread_count(n, d, kind, dtype):
    x = make(kind, n, d, dtype, seed=n * 7919 + d)
    old = torch.get_num_threads()
    runs = {}
    try:
        for level in LEVELS:
            with kernels.use_cpu_level(level):
                for t in THREADS:
                    torch.set_num_threads(t)
                    runs[level, t] = results(x)
    finally:
        torch.set_num_threads(old)
    first = runs[AVX[0] if AVX else "base", 1]
    for (level, t), got in runs.items():
        for name, value in got.items():
            if level in AVX or name in EVERYWHERE:
                assert same_bits(value, first[name]), f"{name} differs at {level}, {t} threads"
            else:  # the portable level's distances: the same at every thread count
                assert same_bits(value, runs["base", 1][name]), f"{name}, base, {t} threads"


def ref_distances(x: torch.Tensor) -> torch.Tensor:
    xd = x.double()
    return ((xd[:, None, :] - xd[None, :, :]) ** 2).sum(-1)


@pytest.mark.usefixtures("cpu_level")
@pytest.mark.parametrize("scale", [1e-25, 1e-30, 1e-38, 1e-42, 1.0, 1e19, 1e38])
def test_float32_distances_keep_their_accuracy_at_every_magnitude(scale):
    # Squares of float32 differences below ~1e-19 underflow and above ~1e19 overflow; the kernel
    # recomputes such runs in float64, so the contract holds for every finite float32 input.
    g = torch.Generator().manual_seed(3)
    xd = torch.randn(9, 5000, generator=g, dtype=torch.float64) * scale
    xd = xd.clamp(-torch.finfo(torch.float32).max, torch.finfo(torch.float32).max)
    x = xd.float()
    ref = ref_distances(x)
    got = kernels.pairwise_sq_distances(x)
    assert torch.isfinite(got).all()
    off = ~torch.eye(9, dtype=torch.bool)
    rel = ((got - ref).abs() / ref)[off]
    assert rel.max() < 1e-4, f"max relative error {rel.max():.3g} at scale {scale:g}"


@pytest.mark.usefixtures("cpu_level")
@pytest.mark.parametrize("scale", [1e-25, 1e-30])
def test_krum_at_tiny_magnitudes_selects_as_the_float64_definition(scale):
    disagreements = 0
    for seed in range(50):
        g = torch.Generator().manual_seed(seed)
        x = (torch.randn(11, 300, generator=g, dtype=torch.float64) * scale).float()
        scores = torch.topk(ref_distances(x) + torch.diag(torch.full((11,), float("inf"),
                            dtype=torch.float64)), 11 - 2 - 2, largest=False).values.sum(1)
        two = scores.sort().values[:2]
        if (two[1] - two[0]) / two[0] <= 1e-4:
            continue
        _, sel = F.krum(x, 2, return_selected=True)
        disagreements += int(sel[0]) != int(scores.argmin())
    assert disagreements == 0


def test_level_is_reported_and_switchable():
    assert kernels.cpu_level() in LEVELS
    assert LEVELS[-1] == "base"
    with kernels.use_cpu_level("base"):
        assert kernels.cpu_level() == "base"
    with pytest.raises(ValueError, match="one of avx512, avx2, base"):
        with kernels.use_cpu_level("sse4"):
            pass
    if "avx512" not in LEVELS:
        with pytest.raises(RuntimeError, match="this CPU cannot run avx512; it runs"):
            with kernels.use_cpu_level("avx512"):
                pass


@pytest.mark.parametrize("value,error", [("avx1024", "must be one of avx512, avx2, base"),
                                         ("base", None)])
def test_environment_variable_is_read_at_import(value, error):
    import subprocess
    import sys
    import os
    env = dict(os.environ, ROBUSTAGG_CPU_LEVEL=value)
    proc = subprocess.run([sys.executable, "-c", "import robustagg; "
                           "print(robustagg.kernels.cpu_level())"],
                          env=env, capture_output=True, text=True, timeout=120)
    if error is None:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == value
    else:
        assert proc.returncode != 0 and error in proc.stderr


def test_kernel_threads_apart_from_torch():
    x = make("normal", 17, 100_003, torch.float32, seed=5)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = results(x)
        for t in (2, 3):
            with kernels.kernel_threads(t):
                assert kernels._C.kernel_threads() == t
                got = results(x)
            assert all(same_bits(got[k], one[k]) for k in one)
        assert kernels._C.kernel_threads() == 1  # back to torch's setting
    finally:
        torch.set_num_threads(old)
    with pytest.raises(ValueError, match="positive int"):
        with kernels.kernel_threads(0):
            pass
