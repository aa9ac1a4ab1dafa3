"""Fixtures of the serverless tests: a real redis-server and moto's S3 server, both on 127.0.0.1."""
from __future__ import annotations

import os
import shutil

import pytest

from robustagg.backends.serverless.stores.redis_server import LocalRedisServer


N_WORKERS = 5


@pytest.fixture(scope="module")
def digits_world():
    """digits split iid over 5 workers: (data, specs, initial MLP parameters, a started local
    backend to compare the Lambda backend's gradients with)."""
    import torch

    from robustagg.backends.base import WorkerSpec
    from robustagg.backends.local_backend import LocalBackend
    from robustagg.run.data import load_dataset, partition
    from robustagg.run.models import build_model

    data = load_dataset("digits")
    shards = partition(data.y_train, N_WORKERS, "iid", seed=0)
    specs = [WorkerSpec(worker_id=i, workers=N_WORKERS, dataset="digits",
                        indices=shards[i].tolist(), batch_size=16, seed=0) for i in range(N_WORKERS)]
    model = build_model("mlp", data.input_shape, data.num_classes, seed=0)
    params = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    ref = LocalBackend()
    ref.start(specs, data=data)
    return data, specs, params, ref


@pytest.fixture(scope="session")
def redis_server():
    """A password-protected redis-server on 127.0.0.1 and a free port: yields its store config
    (the password reaches clients through the environment variable RA_TEST_REDIS_PASSWORD)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with LocalRedisServer() as srv:
        os.environ["RA_TEST_REDIS_PASSWORD"] = srv.password
        yield srv.config(password_env="RA_TEST_REDIS_PASSWORD")


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 in server mode on 127.0.0.1 with one bucket: yields the store config."""
    pytest.importorskip("moto")
    from moto.server import ThreadedMotoServer

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    import boto3

    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="ra-test")
    yield {"kind": "s3", "bucket": "ra-test", "endpoint_url": url, "region": "us-east-1"}
    server.stop()
