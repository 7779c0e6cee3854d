"""The data contract between the operator, the trainer and the serving agent.

Nothing here runs; these are the names both sides agree on. The operator renders a run config
(``kubetune.api.runconfig``) into a ConfigMap; the trainer reads it, writes the objects below
under ``<output>/<run>/`` and ends with a one-line JSON termination message; the operator
reads progress and results from the object store and the pod status.

Object layout under ``<output.uri>/<run>/``::

    checkpoints/<step>/...          one folder per checkpoint
    checkpoints/<step>/COMPLETE     written last: a checkpoint without it is ignored
    progress.json                   latest ``Progress``, overwritten periodically
    metrics.jsonl                   one JSON object per logged step (append by rewrite)
    data-report.json                validation/cleaning/token statistics of the dataset
    adapter/adapter_config.json     PEFT format
    adapter/adapter_model.safetensors
    adapter/manifest.json           written LAST, never overwritten: SHA-256 per file, base
                                    model identity, dataset digests, hyperparameters,
                                    metrics, evaluation, versions
"""

from __future__ import annotations

from typing import Final

# ---------------------------------------------------------------- exit codes
# The Job's podFailurePolicy fails a run at once on EXIT_USER_ERROR (retrying cannot fix bad
# data or a bad config) and lets every other non-zero code count against backoffLimit.
EXIT_OK: Final = 0
EXIT_USER_ERROR: Final = 42
"""Bad run config, bad dataset, unsupported model or method: fix the spec and re-apply."""
EXIT_INFRA_ERROR: Final = 1
"""Anything else (object store unreachable, OOM, NCCL timeout, preemption): retried."""

# ---------------------------------------------------------------- object names
CHECKPOINTS_DIR: Final = "checkpoints"
CHECKPOINT_COMPLETE_MARKER: Final = "COMPLETE"
PROGRESS_FILE: Final = "progress.json"
"""{step, totalSteps, epoch, loss, evalLoss, tokensPerSecond, etaSeconds, updatedAt,
phase (Training | Evaluating | Published), resumedFromStep}"""
METRICS_FILE: Final = "metrics.jsonl"
"""One JSON object per line: per optimizer step {step, epoch, loss, learningRate, gradNorm,
tokens, stepSeconds, tokensPerSecond, startedAtStep, time}; per evaluation on the validation
set {step, evalLoss, perplexity, time} (no ``loss`` key)."""
DATA_REPORT_FILE: Final = "data-report.json"
ADAPTER_DIR: Final = "adapter"
MANIFEST_FILE: Final = "manifest.json"
MANIFEST_SCHEMA_VERSION: Final = 1

# ---------------------------------------------------------------- pod interface
RUN_CONFIG_KEY: Final = "run-config.json"
"""Key of the run config in its ConfigMap."""
RUN_CONFIG_MOUNT: Final = "/etc/kubetune"
"""Where the ConfigMap is mounted in trainer pods."""
TERMINATION_LOG: Final = "/dev/termination-log"
TERMINATION_MESSAGE_MAX_BYTES: Final = 4096

# Termination message ``reason`` values (also used as condition reasons by the operator).
REASON_SUCCEEDED: Final = "Succeeded"
REASON_INVALID_CONFIG: Final = "InvalidConfig"
REASON_INVALID_DATASET: Final = "InvalidDataset"
REASON_INVALID_MODEL: Final = "InvalidModel"
REASON_INFRA_ERROR: Final = "InfrastructureError"

# ---------------------------------------------------------------- adapter manifest
# ``adapter/manifest.json`` (written last, with If-None-Match so it is never overwritten):
#
#   {
#     "schemaVersion": 1,
#     "kind": "kubetune.io/adapter-manifest",
#     "run": "support-g1",
#     "job": {"namespace": "acme-ml", "name": "support", "generation": 1},
#     "createdAt": "2026-11-28T21:00:00Z",
#     "method": "lora",                                   # lora | qlora | full
#     "baseModel": {"uri": "s3://models/tiny/", "name": "tiny",
#                   "architecture": "LlamaForCausalLM", "configSha256": "<hex>"},
#     "adapter": {"format": "peft", "rank": 16, "alpha": 32.0,   # format "full" for full
#                 "targetModules": ["q_proj", ...], "dtype": "bfloat16"},  # fine-tunes: the
#                                                     # whole model in adapter/
#     "training": {"steps": 144, "resumedFromStep": 0, "tokensPerSecond": ..., ...},
#     "files": {"adapter_config.json": {"sha256": "<hex>", "size": 123}, ...},
#     "datasets": {"train": {"uri": "...", "sha256": "<hex>", "records": 300}, ...},
#     "hyperparameters": {... resolved, camelCase as in the run config ...},
#     "metrics": {"trainLoss": 1.2, "evalLoss": 1.4, "perplexity": 4.1,
#                 "exactMatch": 0.8, "normalizedMatch": 0.9},
#     "evaluation": {... per-metric details, sample outputs ...},
#     "versions": {"kubetune": "0.1.0", "torch": "...", "transformers": "...", "peft": "..."}
#   }
#
# The adapter's digest is "sha256:" + the SHA-256 of the manifest.json bytes. Promotion gates
# name keys of ``metrics``.
MANIFEST_KIND: Final = "kubetune.io/adapter-manifest"
METRIC_TRAIN_LOSS: Final = "trainLoss"
METRIC_EVAL_LOSS: Final = "evalLoss"
METRIC_PERPLEXITY: Final = "perplexity"
METRIC_EXACT_MATCH: Final = "exactMatch"
METRIC_NORMALIZED_MATCH: Final = "normalizedMatch"

# ---------------------------------------------------------------- serving: operator <-> agent
# The operator writes the desired adapter set of one inference Deployment into the ConfigMap
# ``kubetune-adapters-<deployment>`` (label kubetune.io/deployment=<deployment>), key
# ``desired.json``:
#
#   {"schemaVersion": 1,
#    "adapters": [
#      {"name": "support-assistant",                       # the stable name clients send
#       "active": {"version": "3f2a9c1d4e5b", "uri": "s3://.../adapter/",
#                  "digest": "sha256:<hex of manifest.json>"},
#       "canary": null | {"version": ..., "uri": ..., "digest": ..., "pods": ["pod-a"]}}]}
#
# An agent routes ``name`` to ``canary`` when its pod is listed there, else to ``active``.
# Each version is loaded into the engine under its own name ``<name>--<version>`` (never
# reloaded under the same name). ``version`` is the first 12 hex digits of the digest.
#
# The agent reports its state in an annotation on its own pod, ``kubetune.io/adapter-state``:
#
#   {"configResourceVersion": "<resourceVersion of the ConfigMap it acted on>",
#    "adapters": {"support-assistant": {"version": "3f2a9c1d4e5b", "digest": "sha256:...",
#                                       "state": "Ready" | "Loading" | "Failed",
#                                       "servingVersion": "<version answering right now>",
#                                       "message": "..."}},
#    "updatedAt": "<RFC 3339>"}
DESIRED_ADAPTERS_CONFIGMAP_PREFIX: Final = "kubetune-adapters-"
DESIRED_ADAPTERS_KEY: Final = "desired.json"
ADAPTER_STATE_ANNOTATION: Final = "kubetune.io/adapter-state"
DEPLOYMENT_LABEL: Final = "kubetune.io/deployment"
ADAPTER_STATE_READY: Final = "Ready"
ADAPTER_STATE_LOADING: Final = "Loading"
ADAPTER_STATE_FAILED: Final = "Failed"
VERSIONED_NAME_SEPARATOR: Final = "--"

# ---------------------------------------------------------------- images
# images/<name>/Dockerfile builds image repository ``<registry>/kubetune/<name>``; the local
# cluster's node agent maps an image to the ENTRYPOINT/CMD of that Dockerfile's final stage.
IMAGE_OPERATOR: Final = "operator"
IMAGE_TRAINER: Final = "trainer"
IMAGE_SERVING: Final = "serving"
