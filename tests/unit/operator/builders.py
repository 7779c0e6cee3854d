"""Builders of FineTuneJob, Job and Pod objects for the operator's table tests."""

from __future__ import annotations

import copy
from typing import Any

NOW = "2026-11-28T12:00:00Z"


def ftj(generation: int = 1, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    base_spec: dict[str, Any] = {
        "baseModel": {"uri": "s3://models/tiny/", "trustRemoteCode": False},
        "dataset": {
            "train": "s3://datasets/t/train.jsonl",
            "validationSplit": 0.1,
            "format": "auto",
        },
        "method": "lora",
        "lora": {"rank": 16, "alpha": 32, "dropout": 0.05, "targetModules": ["all-linear"]},
        "hyperparameters": {"epochs": 1, "batchSize": 4, "maxSeqLength": 256},
        "resources": {"gpus": 0, "nodes": 1, "cpu": "2", "memory": "4Gi"},
        "output": {"uri": "s3://adapters/support/"},
        "suspend": False,
        "queueName": "",
        "retrain": {"onDatasetChange": False},
    }
    for key, value in spec.items():
        base_spec[key] = value
    body: dict[str, Any] = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {
            "name": "support",
            "namespace": "ml",
            "uid": "uid-1",
            "generation": generation,
        },
        "spec": base_spec,
    }
    if status is not None:
        body["status"] = copy.deepcopy(status)
    return body


def job(
    run: str,
    *,
    active: int = 0,
    ready: int = 0,
    suspend: bool = False,
    conditions: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": run, "labels": {"kubetune.io/run": run}}
    if deleting:
        meta["deletionTimestamp"] = NOW
    return {
        "metadata": meta,
        "spec": {"suspend": suspend},
        "status": {
            "active": active,
            "ready": ready,
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m} for t, r, m in conditions
            ],
        },
    }


def pod(
    run: str,
    name: str,
    *,
    phase: str = "Running",
    disrupted: str = "",
    exit_code: int | None = None,
    message: str = "",
    created: str = NOW,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": []}
    if disrupted:
        status["conditions"].append(
            {"type": "DisruptionTarget", "status": "True", "reason": disrupted}
        )
    if exit_code is not None:
        status["containerStatuses"] = [
            {
                "name": "trainer",
                "state": {"terminated": {"exitCode": exit_code, "message": message}},
            }
        ]
    return {
        "metadata": {
            "name": name,
            "labels": {"kubetune.io/run": run},
            "creationTimestamp": created,
        },
        "status": status,
    }
