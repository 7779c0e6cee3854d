"""Restart decisions for a container that exited (pure; the node agent's container runner).

Kubernetes semantics: ``Always`` restarts every exit, ``OnFailure`` only non-zero exits,
``Never`` none. Restarts back off exponentially (``base``, ``2*base``, ... capped at ``cap``);
the kubelet uses 10 s .. 300 s, the local cluster defaults to shorter delays (see ``agent``),
and a container that ran for ``reset_after`` seconds starts the back-off afresh.
"""

from __future__ import annotations

RESTART_POLICIES = ("Always", "OnFailure", "Never")


def should_restart(policy: str, exit_code: int) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def init_container_policy(pod_policy: str, container_policy: str | None) -> str:
    """Init containers retry failures unless the pod never restarts; sidecars always restart."""
    if container_policy == "Always":
        return "Always"
    return "Never" if pod_policy == "Never" else "OnFailure"


def backoff_seconds(
    failures: int, *, base: float, cap: float, ran_seconds: float = 0.0, reset_after: float = 600.0
) -> tuple[float, int]:
    """Delay before the next start and the new failure streak length.

    ``failures`` counts consecutive restarts so far; a run of ``reset_after`` seconds or more
    forgives the streak.
    """
    streak = 0 if ran_seconds >= reset_after else failures
    return min(cap, base * (2**streak)), streak + 1
