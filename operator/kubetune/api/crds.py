"""The CustomResourceDefinitions of kubetune: FineTuneJob and AdapterDeployment.

This module is the single source of truth for the API. ``python -m kubetune.api.crdgen``
writes ``crds/*.yaml`` from it, and ``--check`` fails when the committed files drift.
Field names follow the API sketch in DESIGN.md.
"""

from __future__ import annotations

from typing import Any

from kubetune.api import constants as c
from kubetune.api.schema import (
    DATA_URI,
    DNS_LABEL,
    S3_URI,
    Schema,
    array,
    boolean,
    free_form,
    integer,
    map_of,
    number,
    obj,
    quantity,
    rule,
    string,
    string_map,
)

# ---------------------------------------------------------------- shared pieces


def storage_schema() -> Schema:
    return obj(
        "Object-store connection for s3:// URIs. Every field is optional: the chart's "
        "defaults (operator flags) fill in what is absent.",
        {
            "endpoint": string(
                "S3-compatible endpoint URL, e.g. http://object-store.storage.svc:8333. "
                "Empty means the operator's default.",
                pattern=r"^https?://[^\s/]+(/.*)?$",
                max_length=512,
            ),
            "region": string("Region sent to the object store.", max_length=64),
            "secretRef": obj(
                "Secret in the same namespace with keys AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY. Omit to use the operator's default or workload identity.",
                {"name": string("Name of the Secret.", pattern=DNS_LABEL, max_length=253)},
                required=["name"],
            ),
            "addressingStyle": string(
                "S3 addressing style: path (most on-prem stores) or virtual.",
                enum=["path", "virtual"],
            ),
        },
    )


def condition_schema() -> Schema:
    return obj(
        "A metav1.Condition: one observation of one aspect of the resource.",
        {
            "type": string("Condition type, e.g. Ready or Succeeded.", max_length=316),
            "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": string("CamelCase machine-readable reason.", max_length=1024),
            "message": string("Human-readable details.", max_length=32768),
            "observedGeneration": integer(
                "metadata.generation the condition was computed from.", minimum=0
            ),
            "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When status last changed.",
            },
        },
        required=["type", "status", "lastTransitionTime"],
    )


def conditions_schema() -> Schema:
    return array(
        "Current conditions, keyed by type.",
        condition_schema(),
        max_items=16,
        list_type="map",
        list_map_keys=["type"],
    )


def metrics_schema(description: str) -> Schema:
    return map_of(description, {"type": "number", "description": "Metric value."})


def adapter_ref_schema(description: str) -> Schema:
    return obj(
        description,
        {
            "uri": string("s3:// URI of the adapter folder (holding manifest.json)."),
            "digest": string("sha256 digest of the adapter's manifest.json."),
            "run": string("Run that produced the adapter."),
            "metrics": metrics_schema("Evaluation metrics from the adapter's manifest."),
            "publishedAt": string("When the manifest was written (RFC 3339)."),
        },
    )


# ---------------------------------------------------------------- FineTuneJob


def finetunejob_spec() -> Schema:
    tolerations = array(
        "Tolerations added to the trainer pods (a GPU taint toleration is added "
        "automatically when gpus > 0).",
        obj(
            "A core/v1 Toleration.",
            {
                "key": string("Taint key to tolerate."),
                "operator": string("Exists or Equal.", enum=["Exists", "Equal"]),
                "value": string("Taint value to match (with Equal)."),
                "effect": string(
                    "Taint effect to match; empty matches all.",
                    enum=["", "NoSchedule", "PreferNoSchedule", "NoExecute"],
                ),
                "tolerationSeconds": integer("How long a NoExecute taint is tolerated."),
            },
        ),
        max_items=32,
    )
    return obj(
        "Desired fine-tuning. Each change to the spec (a new generation) starts a new run; "
        "the previous adapter stays the latest good one until the new run succeeds.",
        {
            "baseModel": obj(
                "The base model to adapt, in Hugging Face format (safetensors weights).",
                {
                    "uri": string(
                        "Where the model lives: s3://bucket/prefix/ or pvc://claim/path.",
                        pattern=DATA_URI,
                        max_length=1024,
                    ),
                    "trustRemoteCode": boolean(
                        "Execute Python code shipped with the model. Off by default: enable "
                        "only for models whose code you have reviewed.",
                        default=False,
                    ),
                },
                required=["uri"],
            ),
            "dataset": obj(
                "Training data: JSONL golden examples.",
                {
                    "train": string(
                        "Training file: s3:// or pvc:// URI of a JSONL file.",
                        pattern=DATA_URI,
                        max_length=1024,
                    ),
                    "validation": string(
                        "Optional validation file; when absent, validationSplit of train is "
                        "held out.",
                        pattern=DATA_URI,
                        max_length=1024,
                    ),
                    "validationSplit": number(
                        "Fraction of train held out for validation when validation is absent.",
                        minimum=0,
                        maximum=0.5,
                        default=0.1,
                    ),
                    "format": string(
                        "Record format. auto detects chat (messages), instruction "
                        "(prompt/completion or instruction/input/output) and completion (text).",
                        enum=["auto", "chat", "instruction", "completion"],
                        default="auto",
                    ),
                },
                required=["train"],
            ),
            "method": string(
                "Fine-tuning method: lora, qlora (4-bit base, needs a GPU) or full.",
                enum=["lora", "qlora", "full"],
                default="lora",
            ),
            "lora": obj(
                "LoRA settings, used by lora and qlora.",
                {
                    "rank": integer(
                        "Adapter rank r. Limited to the ranks inference engines (vLLM "
                        "--max-lora-rank) accept.",
                        enum=c.SUPPORTED_LORA_RANKS,
                        default=16,
                    ),
                    "alpha": number(
                        "Scaling alpha (effective scale alpha/rank).",
                        minimum=0,
                        exclusive_minimum=True,
                        default=32,
                    ),
                    "dropout": number(
                        "Dropout on the LoRA input.", minimum=0, maximum=0.9, default=0.05
                    ),
                    "targetModules": array(
                        "Module names to adapt; all-linear adapts every linear layer but the "
                        "output head.",
                        string(
                            "A module name suffix, or all-linear.", min_length=1, max_length=128
                        ),
                        min_items=1,
                        max_items=64,
                        default=["all-linear"],
                    ),
                },
                default={},
            ),
            "hyperparameters": obj(
                "Training hyperparameters.",
                {
                    "epochs": number(
                        "Passes over the training data.",
                        minimum=0,
                        exclusive_minimum=True,
                        maximum=1000,
                        default=3,
                    ),
                    "maxSteps": integer(
                        "Stop after this many optimizer steps (0: from epochs).",
                        minimum=0,
                        default=0,
                    ),
                    "learningRate": number(
                        "Peak learning rate.",
                        minimum=0,
                        exclusive_minimum=True,
                        maximum=1,
                        default=2.0e-4,
                    ),
                    "lrScheduler": string(
                        "Learning-rate schedule after warm-up.",
                        enum=["cosine", "linear", "constant"],
                        default="cosine",
                    ),
                    "warmupRatio": number(
                        "Fraction of steps spent warming up.", minimum=0, maximum=0.5, default=0.03
                    ),
                    "weightDecay": number("AdamW weight decay.", minimum=0, maximum=1, default=0.0),
                    "batchSize": integer(
                        "Sequences (or packed rows) per process in each micro-batch; the "
                        "effective batch is batchSize x gradientAccumulationSteps x processes.",
                        minimum=1,
                        maximum=65536,
                        default=8,
                    ),
                    "gradientAccumulationSteps": integer(
                        "Micro-batches per optimizer step.", minimum=1, maximum=1024, default=1
                    ),
                    "maxSeqLength": integer(
                        "Tokens per sequence; longer examples are truncated "
                        "and counted in the data report.",
                        minimum=16,
                        maximum=1048576,
                        default=2048,
                    ),
                    "packing": boolean(
                        "Pack examples into rows without padding, each example "
                        "attending only to itself.",
                        default=True,
                    ),
                    "gradientCheckpointing": boolean(
                        "Trade compute for activation memory.", default=False
                    ),
                    "precision": string(
                        "Compute precision; auto is bf16 on GPU, fp32 on CPU.",
                        enum=["auto", "bf16", "fp16", "fp32"],
                        default="auto",
                    ),
                    "seed": integer(
                        "Random seed for splits, shuffling and initialisation.",
                        minimum=0,
                        default=42,
                    ),
                },
                default={},
            ),
            "checkpointing": obj(
                "When the trainer writes resumable checkpoints to object storage.",
                {
                    "everySteps": integer(
                        "Checkpoint every N optimizer steps (0: off).", minimum=0, default=100
                    ),
                    "everyMinutes": integer(
                        "Checkpoint at least this often (0: off).", minimum=0, default=15
                    ),
                    "keep": integer(
                        "Complete checkpoints kept per run.", minimum=1, maximum=100, default=2
                    ),
                },
                default={},
            ),
            "resources": obj(
                "Compute for the trainer pods.",
                {
                    "gpus": integer(
                        "GPUs per node; 0 trains on CPU (tiny models, tests).",
                        minimum=0,
                        maximum=16,
                        default=1,
                    ),
                    "nodes": integer(
                        "Nodes; more than 1 runs multi-node torchrun over an Indexed Job.",
                        minimum=1,
                        maximum=256,
                        default=1,
                    ),
                    "gpuResourceName": string(
                        "Extended resource name of the GPU.",
                        default="nvidia.com/gpu",
                        max_length=253,
                        pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$",
                    ),
                    "cpu": quantity("CPU request per pod.", default="4"),
                    "memory": quantity("Memory request and limit per pod.", default="32Gi"),
                    "sharedMemory": quantity("Size of the memory-backed /dev/shm.", default="8Gi"),
                    "nodeSelector": string_map(
                        "Node labels the trainer pods require.", max_properties=32
                    ),
                    "tolerations": tolerations,
                    "affinity": free_form("A core/v1 Affinity for the trainer pods."),
                    "priorityClassName": string(
                        "PriorityClass of the trainer pods.", max_length=253
                    ),
                },
                default={},
            ),
            "runPolicy": obj(
                "Retry and time limits of each run.",
                {
                    "backoffLimit": integer(
                        "Infrastructure failures retried per run (user "
                        "errors fail at once; preemptions never count).",
                        minimum=0,
                        maximum=100,
                        default=3,
                    ),
                    "activeDeadlineSeconds": integer(
                        "Fail a run that runs longer than this.", minimum=1
                    ),
                },
                default={},
            ),
            "evaluation": obj(
                "Evaluation after training.",
                {
                    "testSet": string(
                        "Held-out JSONL pairs for generation metrics.",
                        pattern=DATA_URI,
                        max_length=1024,
                    ),
                    "metrics": array(
                        "Metrics to compute; exactMatch and normalizedMatch need testSet.",
                        string(
                            "A metric name.",
                            enum=["loss", "perplexity", "exactMatch", "normalizedMatch"],
                        ),
                        max_items=8,
                        default=["loss"],
                    ),
                    "maxNewTokens": integer(
                        "Generation budget per test example.", minimum=1, maximum=4096, default=128
                    ),
                },
                rules=[
                    rule(
                        "!has(self.metrics) || "
                        "!self.metrics.exists(m, m == 'exactMatch' || m == 'normalizedMatch')"
                        " || has(self.testSet)",
                        "exactMatch and normalizedMatch need evaluation.testSet",
                        field_path=".testSet",
                    )
                ],
                default={},
            ),
            "output": obj(
                "Where adapters are published; each run lands under <uri>/<run>/.",
                {
                    "uri": string(
                        "s3://bucket/prefix/ for this job's runs.", pattern=S3_URI, max_length=1024
                    )
                },
                required=["uri"],
            ),
            "storage": storage_schema(),
            "retrain": obj(
                "What starts a new run besides a spec change.",
                {
                    "onDatasetChange": boolean(
                        "Start a new run when the train object's ETag changes.", default=False
                    )
                },
                default={},
            ),
            "queueName": string(
                "Kueue LocalQueue: the Job is created suspended and Kueue admits it.",
                max_length=253,
                default="",
            ),
            "suspend": boolean(
                "Suspend the current run, keeping its checkpoints; set back to false to resume.",
                default=False,
            ),
        },
        required=["baseModel", "dataset", "output"],
        rules=[
            rule(
                "self.method != 'qlora' || self.resources.gpus >= 1",
                "method qlora needs resources.gpus >= 1: 4-bit quantization runs on CUDA only",
                field_path=".method",
            ),
            rule(
                "!has(self.dataset.validation) || self.dataset.validation != self.dataset.train",
                "dataset.validation must differ from dataset.train",
                field_path=".dataset.validation",
            ),
            rule(
                "!(self.suspend && self.queueName != '')",
                "suspend is managed by Kueue when queueName is set; "
                "deactivate the Workload instead",
                field_path=".suspend",
            ),
            rule(
                "self.resources.nodes == 1 || self.method != 'qlora'",
                "method qlora runs on one node; use lora or full for multi-node training",
                field_path=".resources.nodes",
            ),
        ],
    )


def finetunejob_status() -> Schema:
    run_fields: dict[str, Schema] = {
        "name": string("Run name: <job>-g<generation>[-r<n>]."),
        "generation": integer("Spec generation the run trains."),
        "phase": string("Phase of the run."),
        "startTime": string("When the run's Job was created (RFC 3339)."),
        "completionTime": string("When the run finished (RFC 3339)."),
        "message": string("Last message from the trainer or the operator."),
        "reason": string("Machine-readable reason of the run's phase."),
        "metrics": metrics_schema("Final or latest metrics of the run."),
    }
    progress = obj(
        "Live progress reported by the trainer.",
        {
            "step": integer("Optimizer steps done."),
            "totalSteps": integer("Optimizer steps planned."),
            "epoch": number("Fractional epoch."),
            "percent": integer("step / totalSteps in percent."),
            "etaSeconds": integer("Estimated seconds until training ends."),
            "loss": number("Latest training loss."),
            "evalLoss": number("Latest validation loss."),
            "tokensPerSecond": number("Real (non-padding) tokens per second."),
            "updatedAt": string("When the trainer wrote this progress (RFC 3339)."),
        },
    )
    return obj(
        "Observed state, written by the operator only.",
        {
            "phase": string(
                "Summary: Pending, Running, Succeeded, Failed or Suspended.",
                enum=["Pending", "Running", "Succeeded", "Failed", "Suspended"],
            ),
            "observedGeneration": integer("Last spec generation the operator acted on."),
            "conditions": conditions_schema(),
            "currentRun": obj(
                "The run of the current generation.",
                {
                    **run_fields,
                    "progress": progress,
                    "datasetETag": string("ETag of the train object the run uses."),
                    "preemptedPod": string("Last trainer pod that was preempted."),
                    "specHash": string(
                        "Hash of the training-relevant spec; a change starts a new run "
                        "(suspend toggles do not)."
                    ),
                },
            ),
            "latestAdapter": adapter_ref_schema("Newest adapter with a verifying manifest."),
            "runs": array(
                "Finished runs, newest first (bounded).",
                obj(
                    "A finished run.",
                    {**run_fields, "adapter": adapter_ref_schema("Adapter the run published.")},
                ),
                max_items=20,
            ),
        },
    )


# ---------------------------------------------------------------- AdapterDeployment


def adapterdeployment_spec() -> Schema:
    gate = obj(
        "Threshold on one metric of the adapter's manifest.",
        {
            "min": number("The metric must be at least this."),
            "max": number("The metric must be at most this."),
        },
        rules=[rule("has(self.min) || has(self.max)", "a gate needs min or max")],
    )
    return obj(
        "Desired serving of one adapter on a running inference Deployment.",
        {
            "adapterName": string(
                "Model name clients send (OpenAI `model`).",
                pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$",
            ),
            "source": obj(
                "Which adapter to serve: follow a FineTuneJob or pin a URI.",
                {
                    "fineTuneJobRef": obj(
                        "Follow this FineTuneJob's latest adapter.",
                        {
                            "name": string(
                                "FineTuneJob name in this namespace.",
                                pattern=DNS_LABEL,
                                max_length=253,
                            )
                        },
                        required=["name"],
                    ),
                    "uri": string(
                        "Pin one adapter: s3:// URI of its folder.", pattern=S3_URI, max_length=1024
                    ),
                    "digest": string(
                        "Serve this exact version (sha256 of its manifest.json) among the "
                        "versions the source knows: the FineTuneJob's run history, "
                        "status.activeVersion and status.previousVersion. Rollback is one field "
                        "change: set it to status.previousVersion.digest. Remove it to follow "
                        "the source again.",
                        pattern=r"^sha256:[0-9a-f]{64}$",
                    ),
                },
                rules=[
                    rule(
                        "has(self.fineTuneJobRef) != has(self.uri)",
                        "set exactly one of source.fineTuneJobRef and source.uri",
                    )
                ],
            ),
            "target": obj(
                "The inference Deployment the adapter is rolled into.",
                {
                    "deploymentName": string(
                        "Deployment in this namespace.", pattern=DNS_LABEL, max_length=253
                    ),
                    "engine": string(
                        "Engine in its pods: vllm or kubetune (reference engine).",
                        enum=["vllm", "kubetune"],
                        default="kubetune",
                    ),
                    "enginePort": integer(
                        "Port the engine's HTTP API listens on inside the pod; the agent "
                        "sidecar calls http://127.0.0.1:<enginePort>.",
                        minimum=1,
                        maximum=65535,
                        default=8000,
                    ),
                    "servingPort": integer(
                        "Port the agent sidecar serves the OpenAI API on (stable adapter names "
                        "routed to versions) and its readiness probe /kubetune/ready. Point the "
                        "Service of the Deployment at this port.",
                        minimum=1,
                        maximum=65535,
                        default=8080,
                    ),
                    "engineContainers": array(
                        "Containers that get the shared adapter volume mounted at "
                        "/var/lib/kubetune/adapters (the engine reads adapters from there). "
                        "Empty: every container of the pod template.",
                        string("A container name of the Deployment's pod template.", max_length=63),
                        max_items=16,
                    ),
                    "maxLoraRank": integer(
                        "Largest adapter rank the engine accepts (vLLM: its --max-lora-rank); "
                        "the agent refuses bigger adapters before loading. Empty: the agent's "
                        "default for the engine (16 for vllm, 64 for kubetune).",
                        minimum=1,
                        maximum=512,
                    ),
                    "baseModelName": string(
                        "Name of the base model the engine serves; when set, the agent refuses "
                        "adapters whose manifest names another base model.",
                        max_length=256,
                    ),
                },
                required=["deploymentName"],
                rules=[
                    rule(
                        "self.enginePort != self.servingPort",
                        "target.servingPort must differ from target.enginePort: the agent and "
                        "the engine share the pod's network namespace",
                        field_path=".servingPort",
                    )
                ],
            ),
            "promotion": obj(
                "Conditions a new version must meet before it serves.",
                {
                    "gates": map_of(
                        "Metric thresholds, by manifest metric name.", gate, max_properties=16
                    ),
                    "requireImprovement": boolean(
                        "The new version must beat the active one on evalLoss.", default=False
                    ),
                    "canary": obj(
                        "Roll to a few replicas first.",
                        {
                            "replicas": integer(
                                "Replicas that get the new version first (0: no canary).",
                                minimum=0,
                                default=0,
                            ),
                            "holdSeconds": integer(
                                "Seconds the canary must stay healthy.",
                                minimum=0,
                                maximum=86400,
                                default=60,
                            ),
                        },
                        default={},
                    ),
                },
                default={},
            ),
            "storage": storage_schema(),
        },
        required=["adapterName", "source", "target"],
    )


def adapterdeployment_status() -> Schema:
    version_fields: dict[str, Schema] = {
        "digest": string("sha256 of the version's manifest."),
        "version": string("First 12 hex digits of the digest: the name agents load it under."),
        "run": string("Run that produced it."),
        "uri": string("Its s3:// folder."),
        "metrics": metrics_schema("Evaluation metrics from its manifest."),
    }
    version = obj(
        "One adapter version.",
        {
            **version_fields,
            "promotedAt": string("When it became the active version (RFC 3339)."),
            "rolledOutAt": string(
                "When every desired replica first reported it Ready (RFC 3339). Until then a "
                "pod that fails to load it rolls back to the previous version."
            ),
        },
    )
    return obj(
        "Observed state, written by the operator only.",
        {
            "phase": string(
                "Pending, Progressing, Ready, Degraded or Blocked.",
                enum=["Pending", "Progressing", "Ready", "Degraded", "Blocked"],
            ),
            "observedGeneration": integer("Last spec generation the operator acted on."),
            "activeVersion": version,
            "previousVersion": version,
            "canary": obj(
                "The candidate version while it runs on a few replicas before promotion.",
                {
                    **version_fields,
                    "pods": array(
                        "Pods that serve the candidate (the first ready pods by name).",
                        string("Pod name."),
                        max_items=512,
                    ),
                    "startedAt": string("When the canary was written to the desired set."),
                    "healthySince": string(
                        "Since when every canary pod reports the candidate Ready; promotion "
                        "follows promotion.canary.holdSeconds later."
                    ),
                },
            ),
            "failedVersion": obj(
                "The last version that failed to load or verify on a pod and was rolled back. "
                "It is not retried until spec.source changes.",
                {
                    **version_fields,
                    "pod": string("Pod that reported the failure."),
                    "message": string("The agent's message."),
                    "failedAt": string("When the operator rolled it back (RFC 3339)."),
                    "sourceHash": string("Hash of spec.source when it failed."),
                },
            ),
            "replicas": obj(
                "Replica counts of the target Deployment.",
                {
                    "desired": integer("Replicas the Deployment wants."),
                    "ready": integer("Pods whose agent reports the active version Ready."),
                    "updated": integer(
                        "Pods whose agent reports Ready the version desired for them (the "
                        "canary on canary pods, else the active version)."
                    ),
                },
            ),
            "pods": array(
                "Per-pod adapter state reported by the agents.",
                obj(
                    "One pod.",
                    {
                        "name": string("Pod name."),
                        "version": string("Version (12 hex) the pod reports for this adapter."),
                        "state": string(
                            "Ready, Loading or Failed as the agent reports it; Unknown before "
                            "its first report."
                        ),
                        "message": string("Agent's last message."),
                    },
                ),
                max_items=512,
            ),
            "conditions": conditions_schema(),
        },
    )


# ---------------------------------------------------------------- CRDs


def _crd(
    *,
    kind: str,
    plural: str,
    short_name: str,
    description: str,
    spec: Schema,
    status: Schema,
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    root = obj(
        description,
        {
            "apiVersion": string("API version of this object."),
            "kind": string("Kind of this object."),
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        required=["spec"],
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{c.GROUP}"},
        "spec": {
            "group": c.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": [c.CATEGORY],
            },
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def finetunejob_crd() -> dict[str, Any]:
    return _crd(
        kind=c.FINETUNEJOB_KIND,
        plural=c.FINETUNEJOB_PLURAL,
        short_name="ftj",
        description="FineTuneJob trains a LoRA, QLoRA or full fine-tune of a base model on "
        "golden examples and publishes the adapter to object storage. Each spec generation "
        "is one run.",
        spec=finetunejob_spec(),
        status=finetunejob_status(),
        columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {
                "name": "Progress",
                "type": "integer",
                "jsonPath": ".status.currentRun.progress.percent",
                "description": "Percent of the current run's steps done.",
            },
            {"name": "Run", "type": "string", "jsonPath": ".status.currentRun.name"},
            {
                "name": "Adapter",
                "type": "string",
                "jsonPath": ".status.latestAdapter.run",
                "description": "Run of the latest good adapter.",
            },
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )


def adapterdeployment_crd() -> dict[str, Any]:
    return _crd(
        kind=c.ADAPTERDEPLOYMENT_KIND,
        plural=c.ADAPTERDEPLOYMENT_PLURAL,
        short_name="adep",
        description="AdapterDeployment serves an adapter from object storage on a running "
        "inference Deployment, hot-swapped, gated on evaluation, with rollback.",
        spec=adapterdeployment_spec(),
        status=adapterdeployment_status(),
        columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Model", "type": "string", "jsonPath": ".spec.adapterName"},
            {
                "name": "Active",
                "type": "string",
                "jsonPath": ".status.activeVersion.run",
                "description": "Run of the version being served.",
            },
            {
                "name": "Version",
                "type": "string",
                "jsonPath": ".status.activeVersion.version",
                "description": "Version (first 12 hex of the digest) being served.",
            },
            {"name": "Ready", "type": "integer", "jsonPath": ".status.replicas.ready"},
            {"name": "Desired", "type": "integer", "jsonPath": ".status.replicas.desired"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )


def all_crds() -> dict[str, dict[str, Any]]:
    """File name in crds/ -> CRD object."""
    return {
        f"{c.GROUP}_{c.FINETUNEJOB_PLURAL}.yaml": finetunejob_crd(),
        f"{c.GROUP}_{c.ADAPTERDEPLOYMENT_PLURAL}.yaml": adapterdeployment_crd(),
    }
