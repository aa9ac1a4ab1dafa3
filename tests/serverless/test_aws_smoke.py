"""Opt-in smoke test against real AWS Lambda (never in CI: it needs credentials and a deployed
function). Run it with

    RA_AWS_SMOKE_FUNCTION=robustagg-worker \\
    RA_AWS_SMOKE_STORE='{"kind": "s3", "bucket": "<the stack's bucket>"}' \\
    .venv/bin/python -m pytest tests/serverless/test_aws_smoke.py -q

(AWS credentials from your profile or environment, as boto3 finds them.)"""
import json
import os

import pytest
import torch

FUNCTION = os.environ.get("RA_AWS_SMOKE_FUNCTION")
STORE = os.environ.get("RA_AWS_SMOKE_STORE")

pytestmark = pytest.mark.skipif(not (FUNCTION and STORE), reason="real-AWS smoke test: set "
                                "RA_AWS_SMOKE_FUNCTION and RA_AWS_SMOKE_STORE to run it")


def test_two_rounds_on_real_lambda(tmp_path):
    from robustagg.training import TrainConfig
    from robustagg.training.loop import train

    kw = dict(workers=5, byzantine=1, rule="median", attack="label_flip", rounds=2, progress=False)
    res = train(TrainConfig(backend="lambda", output_dir=str(tmp_path / "aws"), backend_kwargs={
        "function_name": FUNCTION, "store": json.loads(STORE),
        "region": os.environ.get("AWS_REGION", "us-east-1")}, **kw))
    ref = train(TrainConfig(backend="local", output_dir=str(tmp_path / "ref"), **kw))
    assert [h["arrived"] for h in res.history] == [5, 5]
    assert torch.allclose(res.params, ref.params, atol=1e-6)
