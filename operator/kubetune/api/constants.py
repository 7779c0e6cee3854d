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
