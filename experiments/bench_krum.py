"""The Krum-cost sweep: ``python -m experiments.bench_krum [grid=full] [publish=true]``.

In one process and one run it times, on the same float32 inputs: robustagg's native kernels,
robustagg's pure-torch path, plain baselines (a numpy GEMM Krum, a torch.topk median) and, when
installed, the rules of ByzFL, Flower and Blades 0.0.13 (optional; ``pip install --no-deps
byzfl flwr blades==0.0.13`` is enough, see docs/kernels.md). It also measures the machine's
read bandwidth (a large sum) and float32 GEMM rate right there, and prints, per op, n and d,
the median time of each implementation, its ratio to the native kernel, the native kernel's
ratio to its bound (read bound n*d*4 B / bandwidth; for Krum the larger of that and the
pair-arithmetic bound n(n-1)/2 * 2d flops / GEMM rate), the peak extra memory (beyond the
output) as a share of the input, and whether the result agrees with robustagg's.

Outputs in the run directory (``outputs/bench_krum/<time>``): ``results.json``, ``table.md``,
log-log plots ``<op>_vs_n.png`` and ``<op>_vs_d.png``; ``publish=true`` copies the plots to
``docs/img/``. The config is ``experiments/bench_conf/bench_krum.yaml``.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import statistics
import sys
import time
import types
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from robustagg import functional as F
from robustagg import kernels

ROOT = Path(__file__).resolve().parents[1]
OPS_GROUP = {"krum": "krum", "multi_krum": "krum", "median": "coordinate",
             "trimmed_mean": "coordinate"}
PEERS = ("byzfl", "flwr", "blades")
EVICT_BYTES = 256 * 2**20  # summed before each timed read of an input: larger than any L3 here


# ---------------------------------------------------------------- the machine's bounds

def sum_time(a: torch.Tensor, repeats: int, evict: torch.Tensor | None = None) -> float:
    """Seconds of ``a.sum()`` (median of repeats after a warm-up): the time to read ``a`` from
    memory. ``evict``, a tensor larger than the last-level cache, is summed (untimed) before
    each timed sum so that an ``a`` small enough to stay in cache is still read from memory."""
    a.sum()
    ts = []
    for _ in range(max(repeats, 3)):
        if evict is not None:
            evict.sum()
        t = time.perf_counter()
        a.sum()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def read_bandwidth(mb: int, repeats: int) -> float:
    """Bytes per second of a float32 sum over an ``mb`` MiB array."""
    a = torch.ones(mb * 2**20 // 4)
    return a.numel() * 4 / sum_time(a, repeats)


def gemm_rate(size: int, repeats: int) -> float:
    """float32 flops per second of a square ``size`` GEMM (median of repeats)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
    a @ b
    ts = []
    for _ in range(max(repeats, 3)):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2.0 * size**3 / statistics.median(ts)


# ---------------------------------------------------------------- peak memory

def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_extra_bytes(fn) -> tuple[object, int | None]:
    """Run ``fn()``; return its result and the peak resident memory it added (Linux: the
    high-water mark is reset through /proc/self/clear_refs), or None where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_kb("VmRSS")
    except OSError:
        return fn(), None
    out = fn()
    return out, max(_status_kb("VmHWM") - before, 0) * 1024


# ---------------------------------------------------------------- peer libraries

def _stub_package(name: str, path: Path | None = None, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    if path is not None:
        mod.__path__ = [str(path)]
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def load_peers() -> tuple[dict, dict]:
    """``({peer: {op: fn(x, f)}}, {peer: why it is missing})``.

    The peers' package ``__init__``s import heavy optional parts (torchvision, ray.train, grpc)
    that a benchmark does not need, so their aggregation modules are imported one by one under
    stub parent packages; the timed code is theirs, unchanged.
    """
    found, missing = {}, {}
    for peer in PEERS:
        spec = importlib.util.find_spec(peer)
        if spec is None or not spec.submodule_search_locations:
            missing[peer] = "not installed"
            continue
        root = Path(list(spec.submodule_search_locations)[0])
        saved = {k: v for k, v in sys.modules.items() if k == peer or k.startswith(peer + ".")}
        try:
            found[peer] = _PEER_LOADERS[peer](root)
        except Exception as e:  # noqa: BLE001 - any import failure just means "not available"
            missing[peer] = f"{type(e).__name__}: {e}"
            for k in [k for k in sys.modules if k == peer or k.startswith(peer + ".")]:
                sys.modules.pop(k)
            sys.modules.update(saved)
    return found, missing


def byzfl_aggregators(root: Path):
    """ByzFL's ``byzfl.aggregators.aggregators`` module, imported under stub parent packages
    (``import byzfl`` pulls torchvision); ``root``: the installed ``byzfl`` package folder."""
    _stub_package("byzfl", root)
    _stub_package("byzfl.utils", root / "utils")
    _stub_package("byzfl.aggregators", root / "aggregators")
    return importlib.import_module("byzfl.aggregators.aggregators")


def _byzfl(root: Path) -> dict:
    agg = byzfl_aggregators(root)
    return {"krum": lambda x, f: agg.Krum(f=f)(x),
            "multi_krum": lambda x, f: agg.MultiKrum(f=f)(x),
            "median": lambda x, f: agg.Median()(x),
            "trimmed_mean": lambda x, f: agg.TrMean(f=f)(x)}


def _flwr(root: Path) -> dict:
    _stub_package("flwr", root)
    _stub_package("flwr.server", root / "server")
    _stub_package("flwr.server.strategy", root / "server" / "strategy")
    _stub_package("flwr.common", None, FitRes=object, NDArray=object, NDArrays=object,
                  parameters_to_ndarrays=None)
    _stub_package("flwr.server.client_proxy", None, ClientProxy=object)
    agg = importlib.import_module("flwr.server.strategy.aggregate")

    def results(x):  # Flower's input: [(list of layer arrays, num_examples)] per client
        return [([row], 1) for row in x.numpy()]

    n_of = lambda x: x.shape[0]  # noqa: E731
    return {"krum": lambda x, f: agg.aggregate_krum(results(x), f, 0)[0],
            "multi_krum": lambda x, f: agg.aggregate_krum(results(x), f, n_of(x) - f)[0],
            "median": lambda x, f: agg.aggregate_median(results(x))[0],
            # int(p * n) rows are cut on each side: ask for f + 1/2 of n so rounding gives f
            "trimmed_mean": lambda x, f: agg.aggregate_trimmed_avg(
                results(x), (f + 0.5) / n_of(x))[0]}


def _blades(root: Path) -> dict:
    _stub_package("blades", root)
    _stub_package("blades.aggregators", root / "aggregators")
    _stub_package("blades.client", None, BladesClient=type("BladesClient", (), {}))
    krum = importlib.import_module("blades.aggregators.krum")
    median = importlib.import_module("blades.aggregators.median")
    trimmed = importlib.import_module("blades.aggregators.trimmedmean")
    return {"krum": lambda x, f: krum.Krum(num_clients=x.shape[0], num_byzantine=f)(list(x)),
            "median": lambda x, f: median.Median()(x),
            "trimmed_mean": lambda x, f: trimmed.Trimmedmean(nb=f)(x)}


_PEER_LOADERS = {"byzfl": _byzfl, "flwr": _flwr, "blades": _blades}


# ---------------------------------------------------------------- robustagg and baselines

def _numpy_gemm_scores(x, f):
    """The plain fast baseline: float32 numpy Gram distances (no centring), correct scores."""
    a = x.numpy()
    n = a.shape[0]
    sq = np.einsum("ij,ij->i", a, a, dtype=np.float64)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (a @ a.T), 0.0)
    np.fill_diagonal(dist, np.inf)
    return np.partition(dist, n - f - 3, axis=1)[:, : n - f - 2].sum(axis=1)


def _numpy_gemm_multi(x, f, m):
    order = np.argsort(_numpy_gemm_scores(x, f), kind="stable")[:m]
    return x.numpy()[order].mean(axis=0)


def _topk_median(x):
    n = x.shape[0]
    v = x.topk(n // 2 + 1, dim=0, largest=False).values  # sorted ascending
    return v[-1] if n % 2 else (v[-1] + v[-2]) / 2


def _torch(fn):
    def run(x, f):
        with kernels.torch_path():
            return fn(x, f)
    return run


OWN = {
    "native": {"krum": lambda x, f: F.krum(x, f),
               "multi_krum": lambda x, f: F.multi_krum(x, f),
               "median": lambda x, f: F.coordinate_median(x),
               "trimmed_mean": lambda x, f: F.trimmed_mean(x, f)},
    "torch_path": {"krum": _torch(lambda x, f: F.krum(x, f)),
                   "multi_krum": _torch(lambda x, f: F.multi_krum(x, f)),
                   "median": _torch(lambda x, f: F.coordinate_median(x)),
                   "trimmed_mean": _torch(lambda x, f: F.trimmed_mean(x, f))},
    "numpy_gemm": {"krum": lambda x, f: _numpy_gemm_multi(x, f, 1),
                   "multi_krum": lambda x, f: _numpy_gemm_multi(x, f, x.shape[0] - f)},
    "torch_topk": {"median": lambda x, f: _topk_median(x)},
}


# ---------------------------------------------------------------- the sweep

def make_input(n: int, d: int, f: int, seed: int) -> torch.Tensor:
    """n float32 rows: a common N(0, 1) mean plus N(0, 1) noise; the last f rows shifted by 3
    (Byzantine-looking), so the rules have a clear answer."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + n * 7919 + d)
    x = torch.randn(n, d, generator=g)
    x += torch.randn(1, d, generator=g)
    x[n - f:] += 3.0
    return x


def time_cell(fn, x, f, repeats: int, slow_s: float, min_time_s: float = 0.0) -> dict:
    """A warm-up call, then (unless it was slower than ``slow_s``) ``repeats`` timed calls, or
    as many more as fill ``min_time_s`` (at most 10 × repeats: a median of a few millisecond
    calls is at the mercy of one hiccup), the first of which also records the peak extra memory
    (after the warm-up, so one-time set-up such as thread pools does not count)."""
    t = time.perf_counter()
    out = fn(x, f)
    first = time.perf_counter() - t
    if first > slow_s:
        return {"median_s": first, "min_s": first, "runs": 1, "extra_bytes": None, "out": out}
    ts, extra = [], None
    for i in range(min(max(repeats, int(min_time_s / max(first, 1e-9))), 10 * repeats)):
        t = time.perf_counter()
        if i == 0:
            extra = peak_extra_bytes(lambda: fn(x, f))[1]
        else:
            fn(x, f)
        ts.append(time.perf_counter() - t)
    return {"median_s": statistics.median(ts), "min_s": min(ts), "runs": len(ts),
            "extra_bytes": extra, "out": out}


def _as_vector(out) -> torch.Tensor:
    return torch.as_tensor(np.asarray(out) if not isinstance(out, torch.Tensor) else out).double()


def run_sweep(cfg: DictConfig) -> dict:
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    peers, missing = load_peers()
    impls = {}
    for name in cfg.impls:
        table = OWN.get(name) or peers.get(name)
        if table:
            impls[name] = table
    machine = {"threads": cfg.threads, "cpu": _cpu_name(), "load_avg_start": os.getloadavg(),
               "backend": kernels.backend("cpu"), "cpu_level": kernels.cpu_level(),
               "read_bytes_per_s": read_bandwidth(cfg.bandwidth_mb, cfg.repeats),
               "gemm_flops_per_s": gemm_rate(cfg.gemm_size, cfg.repeats),
               "peers_missing": missing}
    grid = cfg.grids[cfg.grid]
    cells = [(op, n, d) for op in cfg.ops if OPS_GROUP[op] in grid
             for n in grid[OPS_GROUP[op]].n for d in grid[OPS_GROUP[op]].d
             if n * d * 4 <= cfg.max_input_gb * 1e9]
    rows = []
    bar = tqdm(total=sum(sum(op in t for t in impls.values()) for op, _, _ in cells),
               desc="bench_krum", unit="run")
    current = None
    evict = torch.ones(EVICT_BYTES // 4)
    for op, n, d in sorted(cells, key=lambda c: (c[2], c[1], c[0])):
        if current != (n, d):
            x = None  # free the previous input first
            x, current = make_input(n, d, int(cfg.f_fraction * n), cfg.seed), (n, d)
            # The read bound of a cell is the time to sum this very input from memory. The
            # bandwidth of a fresh allocation varies by up to 2x on a VM (26-51 GB/s measured
            # here, with the host's backing of its pages), so one number for the whole run
            # mis-states the bound of some cells; the same pages read the same way do not.
            # The cache is evicted first: a 40 MB input summed back to back is partly read
            # from a 32 MB L3 (78 GB/s measured), which is not the memory-read bound.
            read_s = sum_time(x, cfg.repeats, evict)
        f = int(cfg.f_fraction * n)
        arith_s = n * (n - 1) / 2 * 2 * d / machine["gemm_flops_per_s"]
        bound_s = max(read_s, arith_s) if OPS_GROUP[op] == "krum" else read_s
        ref = None
        for name, table in impls.items():
            if op not in table:
                continue
            bar.set_postfix_str(f"{op} n={n} d={d:g} {name}")
            try:
                r = time_cell(table[op], x, f, cfg.repeats, cfg.slow_s, cfg.min_time_s)
            except Exception as e:  # noqa: BLE001 - a peer failing is a result, not a crash
                rows.append({"op": op, "n": n, "d": d, "impl": name, "error": repr(e)[:200]})
                bar.update()
                continue
            out = _as_vector(r.pop("out")).reshape(-1)
            if name == "native":
                ref = out
            agrees = None if ref is None else bool(torch.allclose(out, ref, rtol=1e-4, atol=1e-5))
            extra = r["extra_bytes"]
            rows.append({"op": op, "n": n, "d": d, "f": f, "impl": name, **r, "agrees": agrees,
                         "extra_of_input": None if extra is None else
                         max(extra - d * 4, 0) / (n * d * 4),
                         "read_bound_s": read_s, "arith_bound_s": arith_s, "bound_s": bound_s})
            bar.update()
    bar.close()
    machine["load_avg_end"] = os.getloadavg()
    return {"machine": machine, "config": OmegaConf.to_container(cfg), "rows": rows}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cpus)"
    except OSError:
        pass
    return f"{os.cpu_count()} cpus"


# ---------------------------------------------------------------- report

def table(result: dict) -> str:
    """Markdown: per cell the native time and its bound, then every implementation's ratio."""
    m = result["machine"]
    lines = [f"machine: {m['cpu']}, CPU kernels at {m.get('cpu_level')}, {m['threads']} threads, read {m['read_bytes_per_s'] / 1e9:.1f}"
             f" GB/s, GEMM {m['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s float32, load average "
             f"{m['load_avg_start'][0]:.1f} -> {m['load_avg_end'][0]:.1f}; peers missing: "
             f"{m['peers_missing'] or 'none'}", "",
             "| op | n | d | impl | median ms | min ms | × native | native ÷ bound | extra mem "
             "| agrees |", "|---|---|---|---|---|---|---|---|---|---|"]
    cells = {}
    for r in result["rows"]:
        cells.setdefault((r["op"], r["n"], r["d"]), []).append(r)
    for (op, n, d), rs in cells.items():
        nat = next((r for r in rs if r["impl"] == "native" and "error" not in r), None)
        for r in rs:
            if "error" in r:
                lines.append(f"| {op} | {n} | {d:.0e} | {r['impl']} | error: {r['error'][:60]} "
                             "| | | | | |")
                continue
            ratio = r["median_s"] / nat["median_s"] if nat else float("nan")
            to_bound = f"{nat['median_s'] / nat['bound_s']:.2f}" if r is nat else ""
            mem = "" if r["extra_of_input"] is None else f"{100 * r['extra_of_input']:.1f}%"
            lines.append(f"| {op} | {n} | {d:.0e} | {r['impl']} | {1e3 * r['median_s']:.2f} | "
                         f"{1e3 * r['min_s']:.2f} | {ratio:.2f} | {to_bound} | {mem} | "
                         f"{'' if r['agrees'] is None else ('yes' if r['agrees'] else 'NO')} |")
    return "\n".join(lines)


def goals(result: dict) -> str:
    """The kernels' goals per cell: native ÷ bound, and the fastest peer and torch ÷ native."""
    out = ["native ÷ bound: the native kernel's time divided by its cell's bound, the larger of "
           "the time to read the input from memory and (Krum, multi-Krum) the time of its pair "
           "arithmetic at the measured GEMM rate; 1 is the hardware's limit. peer ÷ native and "
           "torch path ÷ native: how many times slower than the native kernel. Ratios of median "
           "times, in brackets of minimum times (the minimum is the better estimate on a loaded "
           "machine).", "",
           "| op | n | d | native ÷ bound | goal | fastest peer ÷ native (goal ≥ 10) | "
           "torch path ÷ native | native extra mem (goal ≤ 10%) |",
           "|---|---|---|---|---|---|---|---|"]
    cells = {}
    for r in result["rows"]:
        if "error" not in r:
            cells.setdefault((r["op"], r["n"], r["d"]), {})[r["impl"]] = r
    for (op, n, d), rs in cells.items():
        nat = rs.get("native")
        if nat is None:
            continue
        goal = 2.0 if OPS_GROUP[op] == "krum" else 3.0
        both = lambda a, b: f"{a['median_s'] / b['median_s']:.2f} [{a['min_s'] / b['min_s']:.2f}]"  # noqa: E731
        b = nat["median_s"] / nat["bound_s"]
        bmin = nat["min_s"] / nat["bound_s"]
        verdict = "met" if b <= goal else ("met on min" if bmin <= goal else "not met")
        peer = [rs[p] for p in PEERS if p in rs]
        fastest = min(peer, key=lambda r: r["median_s"]) if peer else None
        ps = f"{both(fastest, nat)} ({fastest['impl']})" if fastest else "n/a"
        ts = both(rs["torch_path"], nat) if "torch_path" in rs else ""
        mem = "" if nat["extra_of_input"] is None else f"{100 * nat['extra_of_input']:.1f}%"
        out.append(f"| {op} | {n} | {d:.0e} | {b:.2f} [{bmin:.2f}] | ≤ {goal:g}: {verdict} | {ps} "
                   f"| {ts} | {mem} |")
    return "\n".join(out)


def plots(result: dict, out_dir: Path) -> list[Path]:
    """Log-log time against n (at the d measured at the most n) and against d (one line per n
    and impl)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if "error" not in r]
    files = []
    for op in sorted({r["op"] for r in rows}):
        rs = [r for r in rows if r["op"] == op]
        impls = sorted({r["impl"] for r in rs}, key=lambda s: (s != "native", s))
        # the d measured at the most n (then the largest), so the n-plot has the most points
        dmax = max({r["d"] for r in rs}, key=lambda d: (len({r["n"] for r in rs if r["d"] == d}), d))
        color = {name: f"C{i}" for i, name in enumerate(impls)}  # one colour per impl,
        for axis in ("n", "d"):                                   # one marker per n
            fig, ax = plt.subplots(figsize=(6, 4.2))
            for name in impls:
                groups = ([dmax] if axis == "n" else sorted({r["n"] for r in rs}))
                for key, marker in zip(groups, "os^Dv"):
                    pts = sorted((r[axis], r["median_s"]) for r in rs if r["impl"] == name
                                 and r["d" if axis == "n" else "n"] == key)
                    if len(pts) < 2:
                        continue
                    label = name if axis == "n" else f"{name} n={key}"
                    ax.plot(*zip(*pts), marker=marker, color=color[name], label=label,
                            lw=2.5 if name == "native" else 1.2)
            bound = sorted((r[axis], r["bound_s"]) for r in rs if r["impl"] == "native"
                           and (r["d"] == dmax if axis == "n" else r["n"] == max(x["n"] for x in rs)))
            if len(bound) >= 2:
                ax.plot(*zip(*bound), "k--", label="bound (read / arithmetic)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(axis)
            ax.set_ylabel("median time [s]")
            ax.set_title(f"{op}: time vs {axis}" + (f" (d={dmax:.0e})" if axis == "n" else ""))
            ax.legend(fontsize=6, ncol=2)
            ax.grid(True, which="both", alpha=0.3)
            fig.tight_layout()
            path = out_dir / f"{op}_vs_{axis}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            files.append(path)
    return files


@hydra.main(config_path="bench_conf", config_name="bench_krum", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    result = run_sweep(cfg)
    (out_dir / "results.json").write_text(json.dumps(result, indent=1, default=str))
    text = table(result) + "\n\nGoals:\n\n" + goals(result)
    (out_dir / "table.md").write_text(text + "\n")
    files = plots(result, out_dir)
    if cfg.publish:
        img = ROOT / "docs" / "img"
        img.mkdir(parents=True, exist_ok=True)
        for p in files:
            shutil.copy(p, img / p.name)
    print(text)
    print(f"\nresults, table and plots in {out_dir}")


if __name__ == "__main__":
    main()
