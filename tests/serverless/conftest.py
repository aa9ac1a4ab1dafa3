"""Fixtures of the serverless tests: a real redis-server and moto's S3 server, both on 127.0.0.1."""
from __future__ import annotations

import os
import shutil

import pytest

from robustagg.backends.serverless.stores.redis_server import LocalRedisServer


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
