"""Fixtures of the serverless tests: a real redis-server and moto's S3 server, both on 127.0.0.1."""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A password-protected redis-server on 127.0.0.1 and a free port: yields its store config."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    password = secrets.token_hex(16)
    d = tmp_path_factory.mktemp("redis")
    for _ in range(5):  # the port may be taken between probing and binding
        port = free_port()
        proc = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(port), "--requirepass", password,
             "--save", "", "--appendonly", "no", "--dir", str(d), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        r = redis.Redis(host="127.0.0.1", port=port, password=password)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.exceptions.ConnectionError:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        else:
            proc.kill()
            continue
        if proc.poll() is None:
            break
    else:
        pytest.fail("could not start redis-server")
    os.environ["RA_TEST_REDIS_PASSWORD"] = password
    yield {"kind": "redis", "host": "127.0.0.1", "port": port, "password_env": "RA_TEST_REDIS_PASSWORD"}
    proc.terminate()
    proc.wait(10)


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
