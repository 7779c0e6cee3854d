"""Fixtures for trainer integration tests: real trainer processes against the real object
store (versitygw, from the top-level ``object_store``/``s3_env`` fixtures).

``assets`` builds the tiny model and the sample data once per session; ``upload`` puts files
into the store; ``run_trainer`` starts ``python -m kubetune.trainer`` exactly as a pod would
(run config file, termination-log path, work dir) and returns its exit code and termination
message. Each test uses its own prefixes, so tests never see each other's objects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from kubetune.api.runconfig import SCHEMA_VERSION
from kubetune.cluster.objectstore import ObjectStore
from kubetune.trainer import samples
from kubetune.trainer.tiny import build_tiny_model

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Assets:
    model: Path
    train: Path
    test: Path


@dataclass
class TrainerRun:
    returncode: int
    termination: dict[str, Any]
    output: str


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    root = tmp_path_factory.mktemp("trainer-assets")
    model = build_tiny_model(root / "tiny")
    paths = samples.write_samples(root / "data", seed=7, train=200, test=8)
    return Assets(model=model, train=paths["train"], test=paths["test"])


@pytest.fixture
def s3(s3_env: ObjectStore) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3_env.endpoint,
        aws_access_key_id=s3_env.access_key,
        aws_secret_access_key=s3_env.secret_key,
        region_name=s3_env.region,
    )


@pytest.fixture
def prefix() -> str:
    """A unique key prefix for this test's objects."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def upload(s3: Any) -> Callable[[Path, str], str]:
    """``upload(local file or folder, "s3://bucket/key[/]")`` -> the URI."""

    def put(local: Path, uri: str) -> str:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if local.is_dir():
            for path in sorted(local.rglob("*")):
                if path.is_file():
                    s3.upload_file(str(path), bucket, key + path.relative_to(local).as_posix())
        else:
            s3.upload_file(str(local), bucket, key)
        return uri

    return put


def objects(s3: Any, uri: str) -> dict[str, bytes]:
    """Every object under an s3:// prefix: relative key -> bytes."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            found[item["Key"][len(key) :]] = body
    return found


def run_config(*, prefix: str, model_uri: str, train_uri: str, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "jobNamespace": "acme-ml",
        "jobName": "support",
        "run": "support-g1",
        "generation": 1,
        "baseModelUri": model_uri,
        "trainUri": train_uri,
        "outputUri": f"s3://adapters/{prefix}/",
        "validationSplit": 0.1,
        "lora": {"rank": 16, "alpha": 32, "dropout": 0.0},
        "hyperparameters": {
            "maxSteps": 20,
            "batchSize": 8,
            "learningRate": 0.01,
            "maxSeqLength": 256,
            "warmupRatio": 0.05,
            "seed": 3,
        },
        "checkpointing": {"everySteps": 10, "everyMinutes": 0, "keep": 1},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return doc


def trainer_env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KUBETUNE_WORK_DIR": str(tmp / "work"),
        "KUBETUNE_TERMINATION_LOG": str(tmp / "termination-log"),
        "KUBETUNE_PROGRESS_SECONDS": "0",
        "OMP_NUM_THREADS": "1",  # the test machine is small and shared
        "PYTHONPATH": os.pathsep.join(
            str(REPO / part) for part in ("operator", "cluster", "trainer", "serving")
        ),
    }


def write_config(tmp: Path, config: dict[str, Any]) -> Path:
    path = tmp / "run-config.json"
    path.write_text(json.dumps(config))
    return path


def start_trainer(tmp: Path, config: dict[str, Any], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubetune.trainer",
            "--config",
            str(write_config(tmp, config)),
            *args,
        ],
        env=trainer_env(tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_termination(tmp: Path) -> dict[str, Any]:
    path = tmp / "termination-log"
    return json.loads(path.read_text()) if path.is_file() else {}


@pytest.fixture
def run_trainer(tmp_path: Path) -> Callable[..., TrainerRun]:
    def run(config: dict[str, Any], *, timeout: float = 300, folder: str = "a") -> TrainerRun:
        tmp = tmp_path / folder
        tmp.mkdir(exist_ok=True)
        (tmp / "termination-log").unlink(missing_ok=True)
        process = start_trainer(tmp, config)
        output, _ = process.communicate(timeout=timeout)
        return TrainerRun(process.returncode, read_termination(tmp), output)

    return run
