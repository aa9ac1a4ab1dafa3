"""robustagg.streaming: the rules' ``device``/``chunk_columns`` path, x streamed through a device
in column chunks.

CPU tests stream with ``device="cpu"`` and small chunks (the chunk logic, the sums over chunks,
the non-finite contract, the settings' checks) against the unstreamed rules and float64
references written here. Tests marked ``gpu`` stream a host tensor through CUDA (pinned and
unpinned, several chunks) against the same rule on the device tensor.
"""
import contextlib
import types

import pytest
import torch

import robustagg as ra
from robustagg import functional as F
from robustagg import kernels, streaming

INF, NAN = float("inf"), float("nan")
CPU = torch.device("cpu")
HAS_CUDA = torch.cuda.is_available()
D = 1003  # a prime: no chunk width below divides it
WIDTHS = [1, 7, 64, D, D + 5]  # chunk = 1, d not a multiple, one chunk, chunk > d


def sample(n, d=D, seed=0, dtype=torch.float64):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def ref_distances(x):
    """float64 sum_k (x_ik - x_jk)^2 by direct differences; +inf for pairs with a non-finite
    row; zero diagonal."""
    xd = x.double()
    finite = torch.isfinite(xd).all(dim=1)
    safe = torch.where(finite[:, None], xd, torch.zeros_like(xd))
    out = ((safe[:, None, :] - safe[None, :, :]) ** 2).sum(dim=2)
    out[~finite] = INF
    out[:, ~finite] = INF
    return out.fill_diagonal_(0.0)


def assert_same(a, b):
    """Bit-identical, NaN equal to NaN, same dtype and device."""
    assert a.dtype == b.dtype and a.device == b.device
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def assert_distances(got, want, rtol):
    """Same +inf pattern exactly, exact zero diagonal, finite entries within rtol."""
    assert got.dtype == torch.float64 and got.shape == want.shape
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    assert torch.equal(got.diagonal(), torch.zeros(got.shape[0], dtype=torch.float64))
    assert torch.equal(got, got.T)
    fin = torch.isfinite(want)
    assert torch.isfinite(got[fin]).all()
    rel = (got[fin] - want[fin]).abs() / want[fin].clamp_min(1e-300)
    assert rel.max() <= rtol, rel.max()


# ------------------------------------------------------------------ the chunks themselves

@pytest.mark.parametrize("w", WIDTHS)
def test_column_chunks_cover_x_in_order(w):
    x = sample(5)
    pieces = list(streaming.column_chunks(x, CPU, w))
    assert [c0 for c0, _, _ in pieces] == list(range(0, D, w))
    assert all(c1 - c0 == min(w, D - c0) for c0, c1, _ in pieces)
    assert all(chunk.is_contiguous() for _, _, chunk in pieces)
    assert_same(torch.cat([chunk for _, _, chunk in pieces], dim=1), x)


def test_default_chunk_width_on_cpu():
    assert streaming.default_chunk_columns(64, 10**9, 4, CPU) == streaming.MAX_CHUNK_BYTES // 256
    assert streaming.default_chunk_columns(4, 10, 8, CPU) == 10     # never more than d
    assert streaming.default_chunk_columns(10**9, 10, 8, CPU) == 1  # never less than one column
    x = sample(3)  # default width on a CPU target: one chunk here
    assert len(list(streaming.column_chunks(x, CPU))) == 1


# ------------------------------------------------------------------ distances

@pytest.mark.parametrize("w", WIDTHS)
def test_streamed_distances_float64_equal_unchunked(w):
    x = sample(9, seed=w)
    got = streaming.pairwise_sq_distances(x, CPU, w)
    assert_distances(got, kernels.pairwise_sq_distances(x), 1e-12)
    assert_distances(got, ref_distances(x), 1e-12)


@pytest.mark.parametrize("w", [1, 64, D])
def test_streamed_distances_float32_within_contract(w):
    x = sample(8, seed=10 + w, dtype=torch.float32)
    got = streaming.pairwise_sq_distances(x, CPU, w)
    assert_distances(got, ref_distances(x), 1e-4)  # the accuracy contract of issue 3
    assert_distances(got, kernels.pairwise_sq_distances(x), 1e-6)
    base = torch.randn(D, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    near = base + 1e-3 * sample(8, seed=2, dtype=torch.float32)  # near-duplicates
    assert_distances(streaming.pairwise_sq_distances(near, CPU, w), ref_distances(near), 1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("w", [1, 7, D])
def test_streamed_distances_non_finite_rows_are_inf(dtype, w):
    x = sample(10, seed=3, dtype=dtype)
    x[1, 5] = NAN      # in the first chunk only
    x[4, D - 1] = INF  # in the last chunk only
    x[7, 500] = -INF
    x[8] = 1e20        # huge but finite: (1e20)^2 overflows float32, the distance must not
    got = streaming.pairwise_sq_distances(x, CPU, w)
    assert_distances(got, kernels.pairwise_sq_distances(x), 1e-12 if dtype == torch.float64
                     else 1e-6)
    assert_distances(got, ref_distances(x), 1e-4)  # +inf exactly for rows 1, 4, 7; 8 finite
    assert torch.isinf(got[[1, 4, 7]]).sum() == 3 * 9


# ------------------------------------------------------------------ coordinate rules

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 4, 7, 10])
@pytest.mark.parametrize("w", WIDTHS)
def test_streamed_median_and_trimmed_mean_bit_identical(dtype, n, w):
    x = sample(n, seed=100 + n, dtype=dtype)
    x[0, :200] = NAN  # NaN / ±Inf values and ties, as a Byzantine worker sends them
    x[-1, 300:400] = INF
    x[n // 2, 600:700] = -INF
    x[:, 900:950] = 1.0
    assert_same(F.coordinate_median(x, device="cpu", chunk_columns=w), F.coordinate_median(x))
    for f in {0, (n - 1) // 4, (n - 1) // 2}:
        assert_same(F.trimmed_mean(x, f, chunk_columns=w), F.trimmed_mean(x, f))
    if n % 2:  # the median itself, not just agreement: an odd n picks a value of the column
        s = torch.where(torch.isnan(x), INF, x).sort(dim=0).values
        assert_same(F.coordinate_median(x, chunk_columns=w), s[n // 2])


def test_streamed_low_precision_keeps_dtype():
    x = sample(7, dtype=torch.float16)
    assert_same(F.coordinate_median(x, chunk_columns=10), F.coordinate_median(x))
    assert_same(F.trimmed_mean(x, 2, chunk_columns=10), F.trimmed_mean(x, 2))
    assert_same(F.krum(x, 2, chunk_columns=10), F.krum(x, 2))


# ------------------------------------------------------------------ Krum and multi-Krum

@pytest.mark.parametrize("w", [1, 7, D + 5])
def test_streamed_krum_selects_the_same_rows(w):
    for seed in range(5):
        x = sample(12, seed=200 + seed)
        x[seed % 12] *= 3.0  # one outlier, so the selections are not all alike
        x[(seed + 5) % 12, 17] = NAN
        f = 3
        scores = F.krum_scores(x, f, chunk_columns=w)
        torch.testing.assert_close(scores, F.krum_scores(x, f), rtol=1e-12, atol=0)
        for m in (1, None, 12):
            got, sel = F.multi_krum(x, f, m, device="cpu", chunk_columns=w, return_selected=True)
            want, ref_sel = F.multi_krum(x, f, m, return_selected=True)
            assert sel.tolist() == ref_sel.tolist()
            assert (seed + 5) % 12 not in sel.tolist()  # the NaN row is never selected
            assert_same(got, want)
            torch.testing.assert_close(got, x[sel].mean(dim=0), rtol=1e-12, atol=1e-15)
        got, sel = F.krum(x, f, chunk_columns=w, return_selected=True)
        assert sel.tolist() == F.krum(x, f, return_selected=True)[1].tolist()
        assert_same(got, x[int(sel)])


def test_streamed_krum_float32_same_selection():
    for seed in range(5):
        x = sample(10, seed=300 + seed, dtype=torch.float32)
        got, sel = F.krum(x, 2, chunk_columns=64, return_selected=True)
        want, ref_sel = F.krum(x, 2, return_selected=True)
        s = F.krum_scores(x.double(), 2).sort().values
        if (s[1] - s[0]) / s[0] > 1e-4:  # selection well defined at float32 accuracy
            assert sel.tolist() == ref_sel.tolist()
            assert_same(got, want)


# ------------------------------------------------------------------ settings and modules

def test_device_none_or_x_device_does_not_stream(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("streamed although no streaming was asked for")

    for name in ("pairwise_sq_distances", "coordinate_median", "trimmed_mean"):
        monkeypatch.setattr(streaming, name, fail)
    x = sample(7)
    for device in (None, "cpu", CPU):
        assert_same(F.krum(x, 1, device=device), F.krum(x, 1))
        assert_same(F.coordinate_median(x, device=device), kernels.coordinate_median(x))
        assert_same(F.trimmed_mean(x, 1, device=device), kernels.trimmed_mean(x, 1))
    assert streaming.target_device(x, None, None, "Krum") is None
    assert streaming.target_device(x, "cpu", None, "Krum") is None
    assert streaming.target_device(x, None, 5, "Krum") == CPU


@pytest.mark.parametrize("cls,kwargs,fn", [
    (ra.Krum, {"f": 1}, "pairwise_sq_distances"),
    (ra.MultiKrum, {"f": 1, "m": 3}, "pairwise_sq_distances"),
    (ra.CoordinateMedian, {}, "coordinate_median"),
    (ra.TrimmedMean, {"f": 1}, "trimmed_mean"),
])
def test_modules_pass_device_and_chunk_columns_on(monkeypatch, cls, kwargs, fn):
    seen = []
    real = getattr(streaming, fn)

    def spy(*args):
        seen.append((args[-2], args[-1]))  # (device, chunk_columns)
        return real(*args)

    monkeypatch.setattr(streaming, fn, spy)
    x = sample(7, seed=5)
    rule = cls(**kwargs, device="cpu", chunk_columns=11)
    assert "device='cpu', chunk_columns=11" in repr(rule)
    assert "device" not in repr(cls(**kwargs))  # the repr without the settings is unchanged
    got = rule(x)
    assert seen == [(CPU, 11)]
    assert_same(got, cls(**kwargs)(x))
    assert_same(rule([x[i] for i in range(7)]), got)  # the list input form streams too
    assert seen == [(CPU, 11)] * 2


@pytest.mark.parametrize("kwargs,match", [
    ({"device": "gpu"}, "device must be 'cpu', 'cuda'"),
    ({"device": 3.5}, "device must be 'cpu', 'cuda'"),
    ({"device": "meta"}, "device must be a CPU or CUDA device"),
    ({"chunk_columns": 0}, "chunk_columns must be >= 1, got chunk_columns=0"),
    ({"chunk_columns": -3}, "chunk_columns must be >= 1"),
])
def test_bad_settings_raise_naming_the_rule(kwargs, match):
    x = sample(7)
    with pytest.raises(ValueError, match=f"Krum: {match}"):
        ra.Krum(f=1, **kwargs)
    with pytest.raises(ValueError, match=f"MultiKrum: {match}"):
        F.multi_krum(x, 1, **kwargs)
    with pytest.raises(ValueError, match=f"CoordinateMedian: {match}"):
        F.coordinate_median(x, **kwargs)
    with pytest.raises(ValueError, match=f"TrimmedMean: {match}"):
        ra.TrimmedMean(f=1, **kwargs)


def test_bad_chunk_type_and_bound_checked_before_streaming():
    x = sample(6)
    for bad in (2.5, True, "8"):
        with pytest.raises(TypeError, match="Krum: chunk_columns must be an int or None"):
            F.krum(x, 1, chunk_columns=bad)
    with pytest.raises(ValueError, match="Krum needs n >= 2f \\+ 3 workers, got n=6, f=2"):
        F.krum(x, 2, device="cpu", chunk_columns=3)


@pytest.mark.skipif(HAS_CUDA, reason="checks the error where torch sees no CUDA device")
def test_cuda_without_cuda_is_a_clear_error():
    x = sample(7)
    for device in ("cuda", "cuda:1", torch.device("cuda", 0)):
        with pytest.raises(ValueError, match="Krum: device=.* asks for CUDA, but torch sees no"):
            F.krum(x, 1, device=device)
        with pytest.raises(ValueError, match="CoordinateMedian: device=.* asks for CUDA"):
            ra.CoordinateMedian(device=device)


# ------------------------------------------------------------------ GPU: host -> CUDA streaming

def host(x, pinned):
    return x.pin_memory() if pinned else x


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("pinned", [False, True])
def test_cuda_chunks_are_the_slabs_in_two_reused_buffers(pinned):
    x = host(sample(6, d=10_007, seed=7, dtype=torch.float32), pinned)
    ptrs, total = set(), torch.zeros((), dtype=torch.float64, device="cuda")
    for c0, c1, chunk in streaming.column_chunks(x, torch.device("cuda"), 1000):
        assert chunk.is_cuda and chunk.is_contiguous() and chunk.shape == (6, c1 - c0)
        ptrs.add(chunk.data_ptr())
        total += chunk.double().sum()  # asynchronous work queued on each chunk
        torch.testing.assert_close(chunk.cpu(), x[:, c0:c1], rtol=0, atol=0)
    assert len(ptrs) == 2  # 11 chunks, two device buffers
    torch.testing.assert_close(total.cpu(), x.double().sum(), rtol=1e-12, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("pinned", [False, True])
def test_cuda_streamed_rules_equal_the_rules_on_the_device_tensor(pinned):
    x = sample(20, d=50_021, seed=8, dtype=torch.float32)
    x[3, 40_000] = NAN
    x[11, 7] = -INF
    xh, xc = host(x, pinned), x.cuda()
    for w in (4096, None):  # 13 chunks; the default width (one chunk here)
        got = streaming.pairwise_sq_distances(xh, torch.device("cuda"), w)
        assert got.device.type == "cpu"
        assert_distances(got, kernels.pairwise_sq_distances(xc).cpu(), 1e-5)
        assert_same(F.coordinate_median(xh, device="cuda", chunk_columns=w),
                    F.coordinate_median(xc).cpu())
        assert_same(F.trimmed_mean(xh, 4, device="cuda", chunk_columns=w),
                    F.trimmed_mean(xc, 4).cpu())
        scores = F.krum_scores(x.double(), 4).sort().values
        got, sel = F.multi_krum(xh, 4, device="cuda", chunk_columns=w, return_selected=True)
        want, ref = F.multi_krum(xc, 4, return_selected=True)
        assert got.device.type == "cpu" and 3 not in sel.tolist() and 11 not in sel.tolist()
        if (scores[16] - scores[15]) / scores[15] > 1e-4:  # the m-th and next scores apart
            assert sel.tolist() == ref.cpu().tolist()
            torch.testing.assert_close(got, want.cpu(), rtol=1e-6, atol=1e-7)
        rule = ra.Krum(f=4, device="cuda", chunk_columns=w)
        if (scores[1] - scores[0]) / scores[0] > 1e-4:
            assert_same(rule(xh), x[int(F.krum(xc, 4, return_selected=True)[1])])


# ------------------------------------------------------------------ the CUDA path's ordering, on CPU

class _FakeCuda:
    """Stand-in for ``torch.cuda`` in ``streaming``: copies run at once on the CPU while streams
    and events only log what they were asked, so that a test can check the ordering that the
    real streams would obey (no GPU here, and CI has none)."""

    def __init__(self):
        self.log, self.buffers, self.current = [], [], None
        fake = self

        class Event:
            def __init__(self):
                self.at, self.on = None, None

            def record(self, stream):
                self.at, self.on = len(fake.log), stream.name
                fake.log.append(("record", stream.name))

            def synchronize(self):
                fake.log.append(("host_sync", self.on, self.at))

        class Stream:
            def __init__(self, name="side"):
                self.name = name

            def wait_event(self, event):
                fake.log.append(("wait", self.name, event.on, event.at))

        self.Event, self.Stream = Event, Stream
        self.compute = self.current = Stream("compute")

    def current_stream(self):
        return self.compute

    def device(self, device):
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def stream(self, s):
        old, self.current = self.current, s
        try:
            yield
        finally:
            self.current = old

    def empty(self, *args, device=None, pin_memory=False, **kwargs):
        t = torch.empty(*args, **kwargs)
        self.buffers.append(("pinned" if pin_memory else str(device), t))
        return t

    def buffer_of(self, t):
        ptr = t.data_ptr()
        return next(i for i, (_, b) in enumerate(self.buffers)
                    if b.data_ptr() <= ptr < b.data_ptr() + b.numel() * b.element_size())


def _happens_before(log, stream, start, end, waiter, before):
    """Whether ``log`` has a wait by ``waiter`` (a stream, or "host") at a position < ``before``
    on an event recorded on ``stream`` at a position in (``start``, ``end``)."""
    for pos, e in enumerate(log[:before]):
        if waiter == "host" and e[0] == "host_sync" and e[1] == stream and start < e[2] < end:
            return True
        if e[0] == "wait" and e[1] == waiter and e[2] == stream and start < e[3] < end:
            return True
    return False


@pytest.mark.parametrize("pinned", [False, True])
def test_host_to_cuda_double_buffering_orders_copies_and_compute(monkeypatch, pinned):
    fake = _FakeCuda()
    fake_torch = types.SimpleNamespace(**vars(torch))
    fake_torch.cuda, fake_torch.empty = fake, fake.empty
    monkeypatch.setattr(streaming, "torch", fake_torch)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, s: None)
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: pinned)
    real_copy = torch.Tensor.copy_

    def copy_(self, src, non_blocking=False):
        if fake.current.name == "side":
            fake.log.append(("h2d", fake.buffer_of(self),
                             None if pinned else fake.buffer_of(src)))
        else:
            fake.log.append(("stage", fake.buffer_of(self)))
        return real_copy(self, src)

    monkeypatch.setattr(torch.Tensor, "copy_", copy_)
    x = sample(5, dtype=torch.float32)
    for c0, c1, chunk in streaming.column_chunks(x, torch.device("cuda", 0), 100):
        assert chunk.is_contiguous() and torch.equal(chunk, x[:, c0:c1])
        fake.log.append(("use", fake.buffer_of(chunk)))  # the caller's compute on the chunk
    kinds = sorted(kind for kind, _ in fake.buffers)  # allocated once, reused for 11 chunks
    assert kinds == ["cuda:0", "cuda:0"] + ([] if pinned else ["pinned", "pinned"])
    log = fake.log
    assert sum(e[0] == "use" for e in log) == 11
    for pos, e in enumerate(log):
        if e[0] == "use":  # the compute waits for the last copy into its buffer
            last = max(p for p, g in enumerate(log[:pos]) if g[0] == "h2d" and g[1] == e[1])
            assert _happens_before(log, "side", last, pos, "compute", pos)
        if e[0] == "h2d":  # a copy into a buffer waits for the compute that last read it
            uses = [p for p, g in enumerate(log[:pos]) if g[0] == "use" and g[1] == e[1]]
            if uses:
                assert _happens_before(log, "compute", uses[-1], pos, "side", pos)
        if e[0] == "stage":  # refilling a staging buffer waits for its last copy to finish
            reads = [p for p, g in enumerate(log[:pos]) if g[0] == "h2d" and g[2] == e[1]]
            if reads:
                assert _happens_before(log, "side", reads[-1], pos, "host", pos)
