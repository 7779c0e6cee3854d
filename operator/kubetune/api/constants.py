"""Names shared by the operator, the trainer contract and the serving agent: one place each.

API group and kinds, label and annotation keys, finalizer, condition types and reasons.
"""

from __future__ import annotations

GROUP = "kubetune.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

FINETUNEJOB_KIND = "FineTuneJob"
FINETUNEJOB_PLURAL = "finetunejobs"
ADAPTERDEPLOYMENT_KIND = "AdapterDeployment"
ADAPTERDEPLOYMENT_PLURAL = "adapterdeployments"
CATEGORY = "kubetune"

# vLLM's --max-lora-rank accepts exactly these values; an adapter of any other rank cannot be
# served by it, so the API refuses it at admission rather than after hours of training.
SUPPORTED_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

# ---------------------------------------------------------------- labels and annotations
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubetune"
LABEL_COMPONENT = "kubetune.io/component"
COMPONENT_TRAINER = "trainer"
LABEL_FINETUNEJOB = "kubetune.io/finetunejob"
LABEL_RUN = "kubetune.io/run"
LABEL_SERVING_AGENT = "kubetune.io/serving-agent"
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
FIELD_MANAGER = "kubetune-operator"

# ---------------------------------------------------------------- conditions and reasons
COND_VALIDATED = "Validated"
COND_RUNNING = "Running"
COND_SUCCEEDED = "Succeeded"
COND_FAILED = "Failed"
COND_SUSPENDED = "Suspended"

REASON_VALID = "Valid"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_INVALID_DATASET = "InvalidDataset"
REASON_INVALID_CONFIG = "InvalidConfig"
REASON_INVALID_MODEL = "InvalidModel"
REASON_JOB_CREATED = "JobCreated"
REASON_PENDING = "Pending"
REASON_TRAINING = "Training"
REASON_PREEMPTED = "Preempted"
REASON_QUEUED = "Queued"
REASON_SUSPENDED_BY_USER = "SuspendedByUser"
REASON_RESUMED = "Resumed"
REASON_ADAPTER_PUBLISHED = "AdapterPublished"
REASON_MISSING_MANIFEST = "MissingManifest"
REASON_BACKOFF_LIMIT = "BackoffLimitExceeded"
REASON_DEADLINE = "DeadlineExceeded"
REASON_TRAINER_FAILED = "TrainerFailed"
REASON_SUPERSEDED = "Superseded"
REASON_DATASET_CHANGED = "DatasetChanged"
REASON_NOT_STARTED = "NotStarted"
