#!/usr/bin/env bash
# GPU check of robustagg's CUDA kernels (issue 3), for a machine with an NVIDIA GPU, nvcc and a
# CUDA build of torch. Builds robustagg._C with the CUDA kernels, runs the GPU tests, then times
# Krum at n = 64, d = 2.5e7 (and the coordinate kernels) against the HBM read time and the
# float32 arithmetic time measured in the same run, and prints one table; then times Krum on an
# input in host memory streamed through the GPU (robustagg.streaming) against the host-to-device
# copy of the same bytes. About 4-7 minutes.
#
#   bash experiments/gpu_check.sh            # PYTHON=... to pick the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
"$PY" - <<'EOF'
import torch, sys
assert torch.cuda.is_available(), "no CUDA device visible to torch"
assert torch.version.cuda, "torch is a CPU build: install a CUDA torch first"
print("torch", torch.__version__, "CUDA", torch.version.cuda, "on", torch.cuda.get_device_name())
EOF

echo "== build (CUDA kernels included when torch has CUDA and nvcc is found)"
MAX_JOBS="${MAX_JOBS:-8}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" \
  "$PY" setup.py -q build_ext --inplace 2>&1 | tail -n 20
"$PY" -c "import torch, robustagg.kernels as k; b = k.backend('cuda'); print('backend(cuda):', b); assert b == 'cuda'"

echo "== GPU tests"
"$PY" -m pytest tests/test_kernels.py tests/test_streaming.py -q -m gpu -p no:cacheprovider \
  --timeout=300

echo "== GPU benchmark"
"$PY" - <<'EOF'
import statistics, time
import torch
from robustagg import functional as F, kernels

torch.backends.cuda.matmul.allow_tf32 = False  # float32 arithmetic, as the bound assumes
torch.backends.cudnn.allow_tf32 = False
dev = torch.device("cuda")

def timed(fn, repeats=7):
    fn(); torch.cuda.synchronize()
    ts = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    return statistics.median(ts)

big = torch.ones(2**30, device=dev)                        # 4 GiB
read_bw = big.numel() * 4 / timed(lambda: big.sum())
del big
m = torch.randn(8192, 8192, device=dev)
flops = 2 * 8192**3 / timed(lambda: m @ m)
del m
print(f"HBM read {read_bw / 1e12:.2f} TB/s, float32 GEMM (no TF32) {flops / 1e12:.1f} TFLOP/s")

rows = []
def cell(op, n, d, impls, bound_kind):
    f = max(1, n // 5)
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(n, d, device=dev, generator=g)
    read = n * d * 4 / read_bw
    arith = n * (n - 1) / 2 * 2 * d / flops
    bound = max(read, arith) if bound_kind == "krum" else read
    base = None
    for name, fn in impls.items():
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        t = timed(lambda: fn(x, f))
        extra = (torch.cuda.max_memory_allocated() - before) / (n * d * 4)
        base = base or t
        rows.append((op, n, d, name, t, t / base, t / bound, extra))
    del x
    torch.cuda.empty_cache()

def torch_path(fn):
    def run(x, f):
        with kernels.torch_path():
            return fn(x, f)
    return run

krum = {"native": lambda x, f: F.krum(x, f), "torch_path": torch_path(lambda x, f: F.krum(x, f)),
        "cdist": lambda x, f: F.krum(x, f, distances=torch.cdist(x, x).double() ** 2)}
cell("krum", 64, 25_000_000, krum, "krum")
cell("multi_krum", 64, 25_000_000, {"native": lambda x, f: F.multi_krum(x, f),
     "torch_path": torch_path(lambda x, f: F.multi_krum(x, f))}, "krum")
for n in (10, 32):
    cell("median", n, 10_000_000, {"native": lambda x, f: F.coordinate_median(x),
         "torch_path": torch_path(lambda x, f: F.coordinate_median(x))}, "read")
    cell("trimmed_mean", n, 10_000_000, {"native": lambda x, f: F.trimmed_mean(x, f),
         "torch_path": torch_path(lambda x, f: F.trimmed_mean(x, f))}, "read")

print("| op | n | d | impl | median ms | × native | ÷ bound | extra mem / input |")
print("|---|---|---|---|---|---|---|---|")
for op, n, d, name, t, r, b, e in rows:
    print(f"| {op} | {n} | {d:.1e} | {name} | {1e3 * t:.2f} | {r:.2f} | {b:.2f} | {100 * e:.1f}% |")
k = next(r for r in rows if r[0] == "krum" and r[3] == "native")
print(f"goal: Krum n=64 d=2.5e7 within 1.5x of max(HBM read, float32 arithmetic): "
      f"{k[6]:.2f}x -> {'met' if k[6] <= 1.5 else 'not met'}")
EOF

echo "== Streaming over d: Krum on x in host memory, device='cuda' (robustagg.streaming)"
"$PY" - <<'EOF'
import statistics, time
import torch
from robustagg import functional as F

n, d, f = 64, 25_000_000, 12
dev = torch.device("cuda")

def wall(fn, repeats=3):
    """Median wall time of fn() (one warm-up), the device idle at both ends."""
    fn(); torch.cuda.synchronize()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

xd = torch.randn(n, d, device=dev, generator=torch.Generator(device=dev).manual_seed(0))
ref = int(F.krum(xd, f, return_selected=True)[1][0])      # Krum on the device-resident x
pinned = torch.empty(n, d, pin_memory=True)
pinned.copy_(xd)
t_resident = wall(lambda: F.krum(xd, f))
t_h2d = wall(lambda: xd.copy_(pinned, non_blocking=True))  # the same bytes, one contiguous copy
del xd
torch.cuda.empty_cache()
gb = n * d * 4 / 1e9
print(f"x: n={n}, d={d:.1e}, float32, {gb:.1f} GB in host memory; host-to-device copy of the "
      f"same bytes (pinned) {1e3 * t_h2d:.1f} ms = {gb / t_h2d:.1f} GB/s")
print("| input | call | median ms | ÷ H2D copy | same selection as on-device Krum |")
print("|---|---|---|---|---|")
print(f"| on device | F.krum(x_cuda) | {1e3 * t_resident:.1f} | {t_resident / t_h2d:.2f} | - |")
pageable = torch.empty(n, d)                               # ordinary (pageable) host memory
pageable.copy_(pinned)
assert pinned.is_pinned() and not pageable.is_pinned()
for name, x in (("pinned host", pinned), ("pageable host", pageable)):
    sel = int(F.krum(x, f, device="cuda", return_selected=True)[1][0])
    t = wall(lambda: F.krum(x, f, device="cuda"))
    print(f"| {name} | F.krum(x, device='cuda') | {1e3 * t:.1f} | {t / t_h2d:.2f} | "
          f"{'yes' if sel == ref else f'NO ({sel} vs {ref})'} |")
EOF
