"""The cost model against hand-computed cases, its limits, monotonicity and calibration."""
import json
import math

import pytest

from experiments import cost as cost_cli
from robustagg import costmodel as cm

# no latency, no cold start, infinite bandwidth: only the hand-computed terms remain
BARE = cm.Prices(lambda_invoke_s=0.0, lambda_cold_start_s=0.0, lambda_bandwidth=math.inf,
                 instances={**cm.Prices().instances, "inf": cm.Instance(0.0, 8, math.inf)})


def test_gb_seconds_hand_case():
    # 10 workers x 3008 MB x 60 s = 10 * 2.9375 GB * 60 s = 1,762.5 GB-s
    assert cm.gb_seconds(10, 3008, 60) == 1762.5
    w = cm.Workload(d=1, n=10, rounds=1, compute_s=60.0)
    b, viol = cm.estimate_lambda(w, cm.LambdaSetup(memory_mb=3008, server_instance="inf",
                                                   store_instance="inf"), BARE)
    assert b.extra["gb_s_total"] == 1762.5
    assert b.cost["lambda_compute"] == pytest.approx(1762.5 * 0.0000166667, rel=1e-12)
    assert b.cost["lambda_compute"] == pytest.approx(0.029375, rel=1e-5)  # $0.0000166667 ~ 1/60000
    assert b.cost["lambda_requests"] == pytest.approx(10 * 0.20 / 1e6)
    assert viol == []


def test_billed_duration_rounds_up_to_ms():
    assert cm.billed_seconds(0.0101) == 0.011
    assert cm.billed_seconds(0.010) == 0.010
    assert cm.billed_seconds(60.0) == 60.0


def test_memory_below_one_vcpu_slows_compute():
    w = cm.Workload(d=1, n=1, rounds=1, compute_s=1.0)
    half = cm.LambdaSetup(memory_mb=int(cm.LAMBDA_MB_PER_VCPU / 2), runtime_mb=0,
                          server_instance="inf", store_instance="inf")
    b, _ = cm.estimate_lambda(w, half, BARE)
    assert b.round_s["workers"] == pytest.approx(2.0, rel=1e-3)
    full, _ = cm.estimate_lambda(w, cm.LambdaSetup(memory_mb=3008, server_instance="inf",
                                                   store_instance="inf"), BARE)
    assert full.round_s["workers"] == pytest.approx(1.0)


def test_transport_hand_case():
    # d = 1M float32 = 4,000,000 bytes; function bandwidth 4e6 B/s -> 1 s up, 1 s down
    p = cm.Prices(lambda_invoke_s=0.0, lambda_cold_start_s=0.0, lambda_bandwidth=4e6,
                  instances={"srv": cm.Instance(3.6, 8, 8e6), "kv": cm.Instance(0.0, 2, 4e6)})
    w = cm.Workload(d=1_000_000, n=4, rounds=10, compute_s=0.5)
    b, _ = cm.estimate_lambda(w, cm.LambdaSetup(server_instance="srv", store_instance="kv"), p)
    assert b.round_s["workers"] == pytest.approx(2.5)
    assert b.round_s["publish"] == pytest.approx(1.0)  # min(server 8e6, redis 4e6)
    assert b.round_s["collect"] == pytest.approx(4.0)
    assert b.time_s == pytest.approx(10 * 7.5)
    assert b.cost["server_instance"] == pytest.approx(3.6 * 75 / 3600)


def test_s3_requests_hand_case():
    w = cm.Workload(d=10, n=5, rounds=100, compute_s=0.1)
    b, _ = cm.estimate_lambda(w, cm.LambdaSetup(store="s3"), cm.Prices())
    # per round 1 + 5 PUTs, 10 GETs
    assert b.cost["store_s3_requests"] == pytest.approx(100 * (6 * 0.005 / 1000 + 10 * 0.0004 / 1000))


def test_ray_hand_case():
    # 16 workers on one 8-vCPU node: 2 gradients per vCPU per round
    p = cm.Prices(instances={"node": cm.Instance(0.36, 8, math.inf)})
    w = cm.Workload(d=1, n=16, rounds=100, compute_s=0.5, aggregation_s=0.1)
    b = cm.estimate_ray(w, cm.RaySetup(instances=(("node", 1),), startup_s=100.0), p)
    assert b.round_s["workers"] == 1.0
    assert b.time_s == pytest.approx(100 + 100 * 1.1)
    assert b.total == pytest.approx(0.36 * 210 / 3600)
    short = cm.estimate_ray(cm.Workload(d=1, n=1, rounds=1, compute_s=0.1),
                            cm.RaySetup(instances=(("node", 2),), startup_s=0.0), p)
    assert short.total == pytest.approx(2 * 0.36 * 60 / 3600)  # per-second billing, 60 s minimum


@pytest.mark.parametrize("kw,needle", [
    (dict(memory_mb=20000), "outside Lambda's"),
    (dict(memory_mb=64), "outside Lambda's"),
    (dict(concurrency=5), "concurrency quota"),
    (dict(event_bytes=7 * 1024 * 1024), "6 MB RequestResponse payload"),
    (dict(event_bytes=2 * 1024 * 1024, invocation="Event"), "1 MB Event payload"),
])
def test_limit_violations(kw, needle):
    _, viol = cm.estimate_lambda(cm.Workload(d=10, n=10, rounds=1, compute_s=1.0),
                                 cm.LambdaSetup(**kw))
    assert any(needle in v for v in viol), viol


def test_timeout_and_memory_violations():
    _, viol = cm.estimate_lambda(cm.Workload(d=10, n=1, rounds=1, compute_s=1000.0))
    assert any("900 s" in v for v in viol)
    _, viol = cm.estimate_lambda(cm.Workload(d=500_000_000, n=1, rounds=1, compute_s=1.0))
    assert any("worker needs" in v for v in viol)


@pytest.mark.parametrize("field,values", [("rounds", [1, 10, 100, 1000]),
                                          ("d", [10, 10_000, 1_000_000, 50_000_000])])
def test_monotone_in_rounds_and_d(field, values):
    est = [cm.estimate(cm.Workload(**{"d": 1000, "n": 10, "rounds": 10, "compute_s": 0.2,
                                      field: v})) for v in values]
    for a, b in zip(est, est[1:]):
        assert b.lam.time_s > a.lam.time_s and b.lam.total >= a.lam.total
        assert b.ray.time_s > a.ray.time_s and b.ray.total >= a.ray.total
    assert est[-1].lam.total > est[0].lam.total and est[-1].ray.total > est[0].ray.total


def test_bad_arguments():
    with pytest.raises(ValueError, match="Workload.n must be >= 1, got 0"):
        cm.Workload(d=1, n=0, rounds=1, compute_s=1)
    with pytest.raises(ValueError, match="unknown instance type 'x9'"):
        cm.estimate_ray(cm.Workload(d=1, n=1, rounds=1, compute_s=1), cm.RaySetup((("x9", 1),)))
    with pytest.raises(ValueError, match="store must be"):
        cm.estimate_lambda(cm.Workload(d=1, n=1, rounds=1, compute_s=1), cm.LambdaSetup(store="ftp"))


def test_prices_from_json(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"date": "2030-01", "lambda_gb_s": 1.0,
                             "instances": {"big": {"hourly": 9.0, "vcpus": 96, "bandwidth": 1e10}}}))
    p = cm.Prices.from_json(f)
    assert p.date == "2030-01" and p.lambda_gb_s == 1.0
    assert p.instances["big"].vcpus == 96 and "c5.2xlarge" in p.instances
    f.write_text(json.dumps({"lambda_gb_sec": 1.0}))
    with pytest.raises(ValueError, match="unknown price fields"):
        cm.Prices.from_json(f)


def test_calibrate_from_metrics(tmp_path):
    rows = [{"round": 0, "compute_s": 9.0, "aggregation_s": 9.0},  # warm-up, skipped
            {"round": 1, "time_compute": 0.2, "time_aggregation": 0.01, "time_step": 0.001},
            {"round": 2, "time_compute": 0.4, "time_aggregation": 0.03, "time_step": 0.001},
            {"round": 3, "time_compute": 0.3, "time_aggregation": 0.02, "time_step": 0.003}]
    f = tmp_path / "metrics.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    w = cm.calibrate(f, d=100, n=10)
    assert (w.compute_s, w.aggregation_s, w.step_s, w.rounds) == (0.3, 0.02, 0.001, 4)
    with pytest.raises(ValueError, match="no round with a compute time"):
        cm.calibrate([{"loss": 1.0}], d=1, n=1)


def test_cli_prints_the_estimate(capsys, tmp_path):
    assert cost_cli.main(["--d", "1000", "--n", "10", "--rounds", "5", "--compute-s", "60",
                          "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lambda"]["billed_s_per_invocation"] == pytest.approx(60.0 + 0.001, abs=0.0011)
    assert out["ray"]["total"] > 0 and out["violations"] == []
    assert cost_cli.main(["--n", "0"]) == 2
    assert "Workload.n must be >= 1" in capsys.readouterr().err
    assert cost_cli.main(["--rounds", "3"]) == 0
    assert "Lambda limit violations" in capsys.readouterr().out


def test_rescale_and_price_files(capsys, tmp_path):
    w = cm.rescale(cm.Workload(d=100, n=10, rounds=5, compute_s=0.1, aggregation_s=0.01,
                               step_s=0.001), d=1000, n=20, rounds=50)
    assert (w.d, w.n, w.rounds) == (1000, 20, 50)
    assert w.compute_s == pytest.approx(1.0) and w.step_s == pytest.approx(0.01)
    assert w.aggregation_s == pytest.approx(0.01 * 4 * 10)  # n^2 d
    assert cost_cli.main(["--dump-prices"]) == 0
    f = tmp_path / "p.json"
    f.write_text(capsys.readouterr().out.replace('"date": "2025-01"', '"date": "2099-12"'))
    assert cost_cli.main(["--prices", str(f), "--n", "2", "--rounds", "2"]) == 0
    assert "2099-12" in capsys.readouterr().out


def test_round_floor_hand_case():
    # n = 64, d = 1e7: 4·(64·1e7 + 1e7) = 2.6e9 bytes at 2 GB/s = 1.3 s; plus kernel and compute
    f = cm.round_floor(64, 10**7, 2e9, kernel_s=0.5, compute_s=0.25)
    assert f["transport"] == pytest.approx(1.3, rel=1e-12)
    assert (f["compute"], f["kernel"]) == (0.25, 0.5)
    assert f["total"] == pytest.approx(2.05, rel=1e-12)
    assert cm.round_floor(1, 1, 8.0, 0.0)["total"] == 1.0  # 4 + 4 bytes at 8 B/s
    for bad in ({"n": 0}, {"store_Bps": 0.0}, {"kernel_s": -1.0}):
        args = {"n": 4, "d": 10, "store_Bps": 1.0, "kernel_s": 0.0, **bad}
        with pytest.raises(ValueError, match=next(iter(bad))):
            cm.round_floor(**args)


def test_cluster_projection_hand_case():
    # 4 nodes of 8 cores, 1 GB/s NICs and stores, 2 shards; n = 8, d = 1000, b = 4
    c = cm.Cluster(nodes=4, cores=8, network_Bps=1e9, store_Bps=1e9, shards=2)
    p = cm.project_cluster(8, 1000, c, compute_s=0.5, kernel_s=0.02, kernel_cores=2)
    s = p["split"]
    assert s["compute"] == 0.5                                # 8 gradients on 32 cores: one wave
    assert s["publish"] == pytest.approx(4 * 1000 * 3 / 1e9)  # to the 3 other nodes
    # a shard node receives 4·8·1000/2 bytes, 3/4 of them from other nodes (> a node's upload)
    assert s["network"] == pytest.approx(4 * 8 * 1000 / 2 * 0.75 / 1e9)
    assert s["store"] == pytest.approx(4 * 8 * 1000 / 2 / 1e9)
    assert s["kernel"] == pytest.approx(0.02 / 2 * 2 / 8)   # half the values, 4x the cores
    assert p["round_s"] == pytest.approx(sum(s.values()))
    assert p["memory_per_shard"] == 2 * 4 * 8 * 1000 / 2
    # more workers than cores: waves; one node: nothing crosses the network
    assert cm.project_cluster(65, 1000, c, 1.0, 0.0, 1)["split"]["compute"] == 3.0
    one = cm.project_cluster(8, 1000, cm.Cluster(nodes=1, cores=8, shards=1), 0.0, 0.0, 1)
    assert one["split"]["network"] == 0.0 and one["split"]["publish"] == 0.0


def test_cluster_checks():
    with pytest.raises(ValueError, match="shards=4 > nodes=2"):
        cm.Cluster(nodes=2, shards=4)
    with pytest.raises(ValueError, match="network_Bps"):
        cm.Cluster(network_Bps=0.0)
    with pytest.raises(ValueError, match="kernel_cores"):
        cm.project_cluster(2, 2, cm.Cluster(), 0.0, 0.0, 0)


def test_cluster_cli_from_a_scale_result(tmp_path, capsys):
    from experiments import cluster_projection

    res = {"bandwidth": {"store_GBps": [0.5, 2.0]}, "machine": {"cores": 2},
           "rows": [{"n": 16, "d": 10**6, "k": 1, "actors": 2, "compute_s": 0.1,
                     "floor_kernel_s": 0.01},
                    {"n": 1000, "d": 10**6, "k": 1, "actors": 2, "compute_s": 2.5,
                     "floor_kernel_s": 4.0},
                    {"n": 1000, "d": 10**6, "k": 2, "actors": 2, "compute_s": 9.0,
                     "floor_kernel_s": 9.0}]}
    path = tmp_path / "scale.json"
    path.write_text(json.dumps(res))
    m = cluster_projection.measured(str(path), 500, 10**9)
    assert m["store_Bps"] == 2e9 and m["kernel_cores"] == 2
    assert m["kernel_s"] == pytest.approx(4.0 * 1000 / 4)       # x d/1e6, x (500/1000)^2
    assert m["gradient_s"] == pytest.approx(2.5 * 2 / 1000 * 1000)  # per gradient, x d/1e6
    assert cost_cli.main(["--cluster", "--n", "500", "--d", "1e9", "--nodes", "4",
                          "--scale-json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "k=4 shards" in out and "server memory per shard node" in out
