"""End to end: train() with backend="lambda" through the boto3 invoker against the local Lambda
runtime (awslambdaric processes) and a real redis-server, against the Ray backend."""
import csv
import json
import os

import pytest
import torch

pytest.importorskip("awslambdaric")

from robustagg.training import TrainConfig  # noqa: E402
from robustagg.training.loop import train  # noqa: E402

KW = dict(workers=5, byzantine=1, rule="trimmed_mean", attack="label_flip", rounds=3,
          eval_every=1, batch_size=16, seed=3, progress=False)


def _csv(path):
    with open(path) as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


@pytest.mark.redis
@pytest.mark.ray
def test_lambda_matches_ray(redis_server, ray_local, tmp_path):
    lam = train(TrainConfig(backend="lambda", output_dir=str(tmp_path / "lambda"),
                            backend_kwargs={"local": True, "store": redis_server, "memory_mb": 1024,
                                            "timeout_s": 60, "concurrency": 2}, **KW))
    ray = train(TrainConfig(backend="ray", output_dir=str(tmp_path / "ray"),
                            backend_kwargs={"workers_per_actor": 5}, **KW))
    # the same seed gives the same model, bit for bit
    assert torch.equal(lam.params, ray.params)
    assert not torch.equal(lam.params, train(TrainConfig(backend="local", rounds=1, **{
        k: v for k, v in KW.items() if k != "rounds"}, output_dir=str(tmp_path / "one"))).params)
    # the same metrics files, with the same columns and the same values where they are not timings
    for name in ("metrics.jsonl", "metrics.csv", "summary.json", "config.json"):
        assert os.path.exists(tmp_path / "lambda" / name)
    lh, lrows = _csv(tmp_path / "lambda" / "metrics.csv")
    rh, rrows = _csv(tmp_path / "ray" / "metrics.csv")
    assert lh == rh and len(lrows) == len(rrows) == KW["rounds"]
    for a, b in zip(lam.history, ray.history):
        for k in ("round", "arrived", "asked", "omitted", "train_loss", "test_acc", "test_loss",
                  "dist_honest_mean", "selected"):
            assert a[k] == b[k], k
    assert lam.history[-1]["arrived"] == KW["workers"]
    # the backend cleaned the store up
    import redis

    r = redis.Redis(host=redis_server["host"], port=redis_server["port"],
                    password=os.environ[redis_server["password_env"]])
    assert list(r.scan_iter(match="ra/*")) == []


@pytest.mark.slow
@pytest.mark.redis
def test_crash_fault_event_invocations_and_private_redis(tmp_path):
    """A crashing worker is an omission (logged in the metrics), the run finishes; Event
    invocations (the server waits on the store) and the backend's own redis-server."""
    kw = {**KW, "rule": "median", "attack": "crash", "attack_kwargs": {"round": 1}}
    res = train(TrainConfig(backend="lambda", output_dir=str(tmp_path / "crash"),
                            backend_kwargs={"local": True, "invocation": "Event", "timeout_s": 30},
                            round_timeout_s=20.0, **kw))
    ref = train(TrainConfig(backend="local", output_dir=str(tmp_path / "ref"), **kw))
    assert [h["arrived"] for h in res.history] == [5, 4, 4]
    assert "4" in res.history[1]["omitted"] and "4" not in res.history[0]["omitted"]
    assert torch.equal(res.params, ref.params)
    rows = [json.loads(line) for line in open(tmp_path / "crash" / "metrics.jsonl")]
    assert rows[2]["omitted"]["4"].startswith("no gradient within")
