"""The local S3-compatible object store (versitygw) that tests, the local cluster and the
demo use.

Covers: buckets declared up front exist; boto3 (with its default CRC checksums) can write,
list and read; conditional writes (If-None-Match) refuse to overwrite, which is what keeps
published manifests immutable; wrong credentials are refused.
"""

from __future__ import annotations

import boto3
import botocore.exceptions
import pytest

from kubetune.cluster.objectstore import ObjectStore


def client(store: ObjectStore, secret: str | None = None):
    return boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        aws_access_key_id=store.access_key,
        aws_secret_access_key=secret or store.secret_key,
        region_name=store.region,
    )


def test_declared_buckets_exist(object_store: ObjectStore) -> None:
    names = {b["Name"] for b in client(object_store).list_buckets()["Buckets"]}
    assert {"models", "datasets", "adapters"} <= names


def test_write_list_read(object_store: ObjectStore) -> None:
    s3 = client(object_store)
    s3.put_object(Bucket="datasets", Key="t/roundtrip/train.jsonl", Body=b'{"text": "hi"}\n')
    listed = s3.list_objects_v2(Bucket="datasets", Prefix="t/roundtrip/")
    assert [o["Key"] for o in listed["Contents"]] == ["t/roundtrip/train.jsonl"]
    body = s3.get_object(Bucket="datasets", Key="t/roundtrip/train.jsonl")["Body"].read()
    assert body == b'{"text": "hi"}\n'


def test_conditional_write_never_overwrites(object_store: ObjectStore) -> None:
    s3 = client(object_store)
    key = "t/conditional/manifest.json"
    s3.put_object(Bucket="adapters", Key=key, Body=b"first", IfNoneMatch="*")
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.put_object(Bucket="adapters", Key=key, Body=b"second", IfNoneMatch="*")
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket="adapters", Key=key)["Body"].read() == b"first"


def test_wrong_secret_is_refused(object_store: ObjectStore) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as err:
        client(object_store, secret="not-the-secret").list_buckets()
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
