"""GPU device assignment for pods on the local cluster's GPU node (pure bookkeeping).

The GPU node advertises ``nvidia.com/gpu`` capacity; a pod whose containers request it gets
device indices, exported the way the NVIDIA container toolkit does (``NVIDIA_VISIBLE_DEVICES``
and ``CUDA_VISIBLE_DEVICES``). Every other pod gets an empty list: a container without the
device plugin sees no GPU, even on a machine that has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"


def gpu_request(pod: Mapping[str, Any], resource: str = GPU_RESOURCE) -> int:
    """GPUs a pod needs: the sum over app containers (limits win, as for extended resources)."""
    total = 0
    for container in pod.get("spec", {}).get("containers", []):
        resources = container.get("resources") or {}
        raw = (resources.get("limits") or {}).get(resource) or (
            resources.get("requests") or {}
        ).get(resource)
        total += int(str(raw)) if raw else 0
    return total


@dataclass
class GpuAllocator:
    count: int
    _assigned: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def assign(self, key: str, wanted: int) -> tuple[int, ...]:
        """Indices for ``key``; fewer than wanted only if the scheduler over-committed."""
        if key in self._assigned:
            return self._assigned[key]
        busy = {i for ids in self._assigned.values() for i in ids}
        free = [i for i in range(self.count) if i not in busy]
        ids = tuple(free[:wanted])
        self._assigned[key] = ids
        return ids

    def release(self, key: str) -> None:
        self._assigned.pop(key, None)


def device_env(ids: tuple[int, ...]) -> dict[str, str]:
    visible = ",".join(str(i) for i in ids)
    return {"NVIDIA_VISIBLE_DEVICES": visible or "void", "CUDA_VISIBLE_DEVICES": visible}
