"""Render the Kubernetes objects of one FineTuneJob run: run-config ConfigMap, batch/v1 Job,
headless Service (multi-node) and the namespace's trainer NetworkPolicy.

Pure functions from (FineTuneJob object, run name, settings) to manifests. The pods they
describe pass Pod Security "restricted": non-root, no privilege escalation, all capabilities
dropped, RuntimeDefault seccomp, read-only root filesystem with writable emptyDirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetune.api import constants as c
from kubetune.api import contract
from kubetune.api.runconfig import (
    Checkpointing,
    Distributed,
    Evaluation,
    Hyperparameters,
    LoraConfig,
    RunConfig,
    StorageConfig,
)
from kubetune.api.version import __version__
from kubetune.operator import naming
from kubetune.operator.settings import Settings
from kubetune.operator.spec import ObjectRef

Manifest = dict[str, Any]

TRAINER_CONTAINER = "trainer"
RENDEZVOUS_PORT = 29500
WORK_DIR = "/work"
PVC_ROOT = "/mnt/pvc"
# Long enough for the trainer to write a checkpoint after SIGTERM (preemption, drain).
GRACE_SECONDS = 120
UID = 65532


def labels(ref: ObjectRef, run: str) -> dict[str, str]:
    return {
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_COMPONENT: c.COMPONENT_TRAINER,
        c.LABEL_FINETUNEJOB: ref.name,
        c.LABEL_RUN: run,
    }


def owner_reference(ref: ObjectRef) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.FINETUNEJOB_KIND,
        "name": ref.name,
        "uid": ref.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(ref: ObjectRef, run: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": ref.namespace,
        "labels": labels(ref, run),
        "ownerReferences": [owner_reference(ref)],
    }


def _pvc_claims(spec: Mapping[str, Any]) -> list[str]:
    uris = [
        spec["baseModel"]["uri"],
        spec["dataset"]["train"],
        spec["dataset"].get("validation", ""),
        spec.get("evaluation", {}).get("testSet", ""),
    ]
    claims = {u.removeprefix("pvc://").split("/", 1)[0] for u in uris if u.startswith("pvc://")}
    return sorted(claims)


def storage_endpoint(spec: Mapping[str, Any], settings: Settings) -> str:
    return str(spec.get("storage", {}).get("endpoint") or settings.s3_endpoint)


def storage_secret(spec: Mapping[str, Any], settings: Settings) -> str:
    return str(spec.get("storage", {}).get("secretRef", {}).get("name") or settings.s3_secret_name)


def run_config(
    *, ref: ObjectRef, spec: Mapping[str, Any], run: str, settings: Settings
) -> RunConfig:
    hp = spec.get("hyperparameters", {})
    lora = spec.get("lora", {})
    ckpt = spec.get("checkpointing", {})
    evaluation = spec.get("evaluation", {})
    resources = spec.get("resources", {})
    storage = spec.get("storage", {})
    gpus = int(resources.get("gpus", 1))
    return RunConfig(
        job_namespace=ref.namespace,
        job_name=ref.name,
        run=run,
        generation=ref.generation,
        base_model_uri=spec["baseModel"]["uri"],
        trust_remote_code=bool(spec["baseModel"].get("trustRemoteCode", False)),
        train_uri=spec["dataset"]["train"],
        validation_uri=spec["dataset"].get("validation", ""),
        validation_split=float(spec["dataset"].get("validationSplit", 0.1)),
        dataset_format=spec["dataset"].get("format", "auto"),
        output_uri=spec["output"]["uri"],
        method=spec.get("method", "lora"),
        lora=LoraConfig(
            rank=int(lora.get("rank", 16)),
            alpha=float(lora.get("alpha", 32)),
            dropout=float(lora.get("dropout", 0.05)),
            target_modules=tuple(lora.get("targetModules", ["all-linear"])),
        ),
        hyperparameters=Hyperparameters(
            epochs=float(hp.get("epochs", 3)),
            max_steps=int(hp.get("maxSteps", 0)),
            learning_rate=float(hp.get("learningRate", 2e-4)),
            lr_scheduler=hp.get("lrScheduler", "cosine"),
            warmup_ratio=float(hp.get("warmupRatio", 0.03)),
            weight_decay=float(hp.get("weightDecay", 0.0)),
            batch_size=int(hp.get("batchSize", 8)),
            gradient_accumulation_steps=int(hp.get("gradientAccumulationSteps", 1)),
            max_seq_length=int(hp.get("maxSeqLength", 2048)),
            packing=bool(hp.get("packing", True)),
            gradient_checkpointing=bool(hp.get("gradientCheckpointing", False)),
            precision=hp.get("precision", "auto"),
            seed=int(hp.get("seed", 42)),
        ),
        checkpointing=Checkpointing(
            every_steps=int(ckpt.get("everySteps", 100)),
            every_minutes=int(ckpt.get("everyMinutes", 15)),
            keep=int(ckpt.get("keep", 2)),
        ),
        evaluation=Evaluation(
            test_set=evaluation.get("testSet", ""),
            metrics=tuple(evaluation.get("metrics", ["loss"])),
            max_new_tokens=int(evaluation.get("maxNewTokens", 128)),
        ),
        distributed=Distributed(
            nodes=int(resources.get("nodes", 1)), processes_per_node=max(gpus, 1)
        ),
        storage=StorageConfig(
            endpoint=storage_endpoint(spec, settings),
            region=str(storage.get("region") or settings.s3_region),
            addressing_style=str(storage.get("addressingStyle") or "path"),
        ),
        gpus=gpus,
        kubetune_version=__version__,
    )


def render_config_map(
    *, ref: ObjectRef, spec: Mapping[str, Any], run: str, settings: Settings
) -> Manifest:
    config = run_config(ref=ref, spec=spec, run=run, settings=settings)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(ref, run, naming.config_map_name(run)),
        "data": {contract.RUN_CONFIG_KEY: config.to_json()},
    }


def _args() -> list[str]:
    """The trainer container's args: always the image's plain entrypoint.

    For several GPUs or nodes the trainer starts torchrun itself (one process per GPU), so
    its documented exit codes (42: user error, which the podFailurePolicy fails fast on) and
    its termination message survive; torchrun as the container's command would turn every
    worker failure into exit code 1.
    """
    return ["--config", f"{contract.RUN_CONFIG_MOUNT}/{contract.RUN_CONFIG_KEY}"]


def _rendezvous_env(*, run: str, nodes: int) -> list[dict[str, Any]]:
    if nodes <= 1:
        return []
    # Rank 0's stable DNS name in the headless Service; the node rank is the Job's
    # completion index (JOB_COMPLETION_INDEX, set by the Job controller).
    return [
        {"name": "MASTER_ADDR", "value": f"{naming.job_name(run)}-0.{naming.service_name(run)}"},
        {"name": "MASTER_PORT", "value": str(RENDEZVOUS_PORT)},
    ]


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _env(*, spec: Mapping[str, Any], settings: Settings) -> list[dict[str, Any]]:
    secret = storage_secret(spec, settings)
    env: list[dict[str, Any]] = [
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
        {"name": "HF_HOME", "value": f"{WORK_DIR}/hf"},
        {"name": "KUBETUNE_WORK_DIR", "value": WORK_DIR},
        {"name": "KUBETUNE_PVC_ROOT", "value": PVC_ROOT},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    endpoint = storage_endpoint(spec, settings)
    if endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": endpoint})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return env


def render_job(
    *,
    ref: ObjectRef,
    spec: Mapping[str, Any],
    run: str,
    settings: Settings,
    suspend: bool,
) -> Manifest:
    resources = spec.get("resources", {})
    gpus = int(resources.get("gpus", 1))
    nodes = int(resources.get("nodes", 1))
    gpu_name = resources.get("gpuResourceName", "nvidia.com/gpu")
    policy = spec.get("runPolicy", {})

    requests: dict[str, Any] = {
        "cpu": str(resources.get("cpu", "4")),
        "memory": str(resources.get("memory", "32Gi")),
    }
    limits: dict[str, Any] = {"memory": requests["memory"]}
    if gpus > 0:
        requests[gpu_name] = str(gpus)
        limits[gpu_name] = str(gpus)

    container: dict[str, Any] = {
        "name": TRAINER_CONTAINER,
        "image": settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": _args(),
        "env": [*_env(spec=spec, settings=settings), *_rendezvous_env(run=run, nodes=nodes)],
        "resources": {"requests": requests, "limits": limits},
        "securityContext": _security_context(),
        "terminationMessagePath": contract.TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "run-config", "mountPath": contract.RUN_CONFIG_MOUNT, "readOnly": True},
            {"name": "work", "mountPath": WORK_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a pod-private emptyDir
            {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108 - NCCL/dataloader shm
        ],
    }
    if nodes > 1:
        container["ports"] = [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}]

    volumes: list[dict[str, Any]] = [
        {"name": "run-config", "configMap": {"name": naming.config_map_name(run)}},
        {"name": "work", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
        {
            "name": "dshm",
            "emptyDir": {
                "medium": "Memory",
                "sizeLimit": str(resources.get("sharedMemory", "8Gi")),
            },
        },
    ]
    for claim in _pvc_claims(spec):
        volumes.append(
            {
                "name": f"pvc-{claim}",
                "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
            }
        )
        container["volumeMounts"].append(
            {"name": f"pvc-{claim}", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True}
        )

    tolerations = [dict(t) for t in resources.get("tolerations", [])]
    if gpus > 0 and not any(t.get("key") == gpu_name for t in tolerations):
        tolerations.append({"key": gpu_name, "operator": "Exists", "effect": "NoSchedule"})

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # The trainer talks to the object store only: no Kubernetes API credentials.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "containers": [container],
        "volumes": volumes,
    }
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if resources.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(resources["nodeSelector"])
    if resources.get("affinity"):
        pod_spec["affinity"] = resources["affinity"]
    if resources.get("priorityClassName"):
        pod_spec["priorityClassName"] = resources["priorityClassName"]
    if nodes > 1:
        pod_spec["subdomain"] = naming.service_name(run)

    metadata = _metadata(ref, run, naming.job_name(run))
    if spec.get("queueName"):
        metadata["labels"][c.LABEL_KUEUE_QUEUE] = spec["queueName"]

    job_spec: dict[str, Any] = {
        "backoffLimit": int(policy.get("backoffLimit", 3)),
        "completions": nodes,
        "parallelism": nodes,
        "completionMode": "Indexed" if nodes > 1 else "NonIndexed",
        "suspend": suspend,
        # A replacement pod starts only once the old one is fully gone: two trainers must
        # never write the same run's checkpoints at once.
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": {
            "rules": [
                # Preemption, eviction, node drain: not the trainer's fault; retry for free.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                # Bad data or config: retrying cannot help.
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": TRAINER_CONTAINER,
                        "operator": "In",
                        "values": [contract.EXIT_USER_ERROR],
                    },
                },
            ]
        },
        "template": {"metadata": {"labels": labels(ref, run)}, "spec": pod_spec},
    }
    if policy.get("activeDeadlineSeconds"):
        job_spec["activeDeadlineSeconds"] = int(policy["activeDeadlineSeconds"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def render_service(*, ref: ObjectRef, run: str) -> Manifest:
    """Headless Service giving each rank of a multi-node run a stable DNS name."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ref, run, naming.service_name(run)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {c.LABEL_RUN: run},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}],
        },
    }


def render_network_policy(*, namespace: str, settings: Settings) -> Manifest:
    """Trainer pods may reach DNS, the object store and each other; nothing else."""
    trainers = {"matchLabels": {c.LABEL_COMPONENT: c.COMPONENT_TRAINER}}
    dns = {
        "to": [{"namespaceSelector": {}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": naming.TRAINER_NETWORK_POLICY,
            "namespace": namespace,
            "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY},
        },
        "spec": {
            "podSelector": trainers,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": trainers}]}],
            "egress": [dns, {"to": [{"podSelector": trainers}]}, *settings.trainer_egress],
        },
    }
