"""Operator settings, read once from the environment (the Helm chart sets every one).

KUBETUNE_WATCH_NAMESPACES
    Comma-separated namespaces to watch; empty: all namespaces.
KUBETUNE_TRAINER_IMAGE, KUBETUNE_SERVING_IMAGE, KUBETUNE_IMAGE_PULL_POLICY
    Images of trainer pods and of the adapter-agent sidecar, and their pull policy.
KUBETUNE_S3_ENDPOINT, KUBETUNE_S3_REGION
    Default object store for specs without storage.endpoint / storage.region.
KUBETUNE_S3_SECRET_NAME
    Default Secret (in the job's namespace) with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for
    trainer and agent pods, when a spec has no storage.secretRef. The operator never reads it.
KUBETUNE_TRAINER_EGRESS
    JSON list of NetworkPolicy egress rules (besides DNS) allowed to trainer pods, i.e. the
    object store; rendered into each namespace that runs a trainer.
KUBETUNE_PROGRESS_INTERVAL
    Seconds between reconciles of each object (progress reads of running runs); default 10.
KUBETUNE_METRICS_PORT, KUBETUNE_HEALTH_PORT
    Prometheus metrics (default 8080) and liveness /healthz (default 8081) ports.
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
    The operator's own READ access to run folders (progress, manifests).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class SettingsError(ValueError):
    """An environment variable has an invalid value; the message names it."""


@dataclass(frozen=True)
class Settings:
    watch_namespaces: tuple[str, ...] = ()
    trainer_image: str = "kubetune/trainer:latest"
    serving_image: str = "kubetune/serving:latest"
    image_pull_policy: str = "IfNotPresent"
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_secret_name: str = "kubetune-s3"  # noqa: S105 - a Secret name, not a secret
    trainer_egress: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    progress_interval: float = 10.0
    workers: int = 32
    """FineTuneJob reconciles that run at once (each a work-queue worker)."""
    metrics_port: int = 8080
    health_port: int = 8081

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        def number(name: str, default: str) -> float:
            raw = get(name, default)
            try:
                return float(raw)
            except ValueError as err:
                raise SettingsError(f"{name}={raw!r} is not a number") from err

        egress_raw = get("KUBETUNE_TRAINER_EGRESS", "[]")
        try:
            egress = json.loads(egress_raw)
        except json.JSONDecodeError as err:
            raise SettingsError(f"KUBETUNE_TRAINER_EGRESS is not JSON: {err}") from err
        if not isinstance(egress, list) or not all(isinstance(r, dict) for r in egress):
            raise SettingsError("KUBETUNE_TRAINER_EGRESS must be a JSON list of egress rules")
        namespaces = tuple(
            ns.strip() for ns in get("KUBETUNE_WATCH_NAMESPACES", "").split(",") if ns.strip()
        )
        return cls(
            watch_namespaces=namespaces,
            trainer_image=get("KUBETUNE_TRAINER_IMAGE", cls.trainer_image),
            serving_image=get("KUBETUNE_SERVING_IMAGE", cls.serving_image),
            image_pull_policy=get("KUBETUNE_IMAGE_PULL_POLICY", cls.image_pull_policy),
            s3_endpoint=get("KUBETUNE_S3_ENDPOINT", ""),
            s3_region=get("KUBETUNE_S3_REGION", cls.s3_region),
            s3_secret_name=get("KUBETUNE_S3_SECRET_NAME", cls.s3_secret_name),
            trainer_egress=tuple(egress),
            progress_interval=number("KUBETUNE_PROGRESS_INTERVAL", "10"),
            workers=max(1, int(number("KUBETUNE_WORKERS", "32"))),
            metrics_port=int(number("KUBETUNE_METRICS_PORT", "8080")),
            health_port=int(number("KUBETUNE_HEALTH_PORT", "8081")),
        )
