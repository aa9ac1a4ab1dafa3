"""The sweep ``python -m experiments.bench_krum`` end to end on a tiny grid (seconds): every op
and implementation runs, results agree with the native kernels, the report and the plots come
out. Peers are not timed here (they are optional and slow)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_krum_tiny_sweep(tmp_path):
    pytest.importorskip("hydra")
    pytest.importorskip("matplotlib")
    from omegaconf import OmegaConf

    from experiments import bench_krum as B

    cfg = OmegaConf.load(ROOT / "experiments" / "bench_conf" / "bench_krum.yaml")
    cfg.pop("hydra")
    cfg.merge_with({"grids": {"default": {"krum": {"n": [5, 12], "d": [300, 3000]},
                                          "coordinate": {"n": [5, 12], "d": [300, 3000]}}},
                    "impls": ["native", "torch_path", "numpy_gemm", "torch_topk"],
                    "repeats": 2, "bandwidth_mb": 8, "gemm_size": 128})
    result = B.run_sweep(cfg)
    rows = result["rows"]
    assert not [r for r in rows if "error" in r]
    cells = {(r["op"], r["n"], r["d"]) for r in rows}
    assert cells == {(op, n, d) for op in cfg.ops for n in (5, 12) for d in (300, 3000)}
    for r in rows:
        assert r["median_s"] > 0 and r["bound_s"] > 0
        if r["impl"] != "native":
            assert r["agrees"], r  # every baseline computes the same rule on these inputs
    assert {r["impl"] for r in rows if r["op"] == "median"} == {"native", "torch_path",
                                                                "torch_topk"}
    text = B.table(result) + B.goals(result)
    assert "| krum | 12 | 3e+03 | native |" in text and "≤ 2:" in text and "≤ 3:" in text
    files = B.plots(result, tmp_path)
    assert {f.name for f in files} == {f"{op}_vs_{a}.png" for op in cfg.ops for a in "nd"}
    assert all(f.stat().st_size > 1000 for f in files)
