"""The S3 store (boto3; any S3-compatible endpoint).

Write-once puts use S3's conditional write (``If-None-Match: *``, answered 412 when the key
exists). Credentials come from boto3's chain as configured (``profile``, the Lambda role, or the
environment), never from code.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .base import Store, check_key


class S3Store(Store):
    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None, profile: str | None = None, max_workers: int = 16):
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(profile_name=profile, region_name=region)
        self._s3 = session.client("s3", endpoint_url=endpoint_url,
                                  config=Config(max_pool_connections=max_workers,
                                                retries={"max_attempts": 3, "mode": "standard"}))
        self._bucket = bucket
        self._prefix = prefix and check_key(prefix)
        self._pool = ThreadPoolExecutor(max_workers=max_workers)

    def _code(self, err) -> str:
        return err.response.get("Error", {}).get("Code", "")

    def put(self, key, data, if_absent=True):
        from botocore.exceptions import ClientError

        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self._s3.put_object(Bucket=self._bucket, Key=self._prefix + check_key(key),
                                Body=bytes(data), **extra)
        except ClientError as e:
            if if_absent and self._code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def get(self, key):
        from botocore.exceptions import ClientError

        try:
            return self._s3.get_object(Bucket=self._bucket,
                                       Key=self._prefix + check_key(key))["Body"].read()
        except ClientError as e:
            if self._code(e) in ("NoSuchKey", "404"):
                return None
            raise

    def get_many(self, keys):
        got = dict(zip(keys, self._pool.map(self.get, keys)))
        return {k: v for k, v in got.items() if v is not None}

    def delete_prefix(self, prefix):
        check_key(prefix)
        n = 0
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._prefix + prefix)
        for page in pages:
            objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objs:  # a listing page holds at most 1000 keys, delete_objects' limit
                self._s3.delete_objects(Bucket=self._bucket, Delete={"Objects": objs, "Quiet": True})
                n += len(objs)
        return n

    def close(self):
        self._pool.shutdown(wait=False)
