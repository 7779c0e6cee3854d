"""The agent's configuration, read from its container environment (pure).

Every variable is documented in docs/serving.md; a wrong value stops the agent at start with
a message that names the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from kubetune.api.constants import SUPPORTED_LORA_RANKS
from kubetune.api.contract import DESIRED_ADAPTERS_CONFIGMAP_PREFIX

EngineKind = Literal["vllm", "kubetune"]
# vLLM's own default --max-lora-rank is 16; the reference engine's is 64.
DEFAULT_MAX_LORA_RANK: Final[dict[str, int]] = {"vllm": 16, "kubetune": 64}


class ConfigError(ValueError):
    """A missing or malformed environment variable; the message names it."""


@dataclass(frozen=True)
class AgentConfig:
    pod_name: str
    namespace: str
    deployment: str
    engine_url: str
    listen_host: str
    listen_port: int
    adapter_dir: Path
    engine_adapter_dir: Path  # the same volume as the engine sees it
    engine: EngineKind
    base_model_name: str | None
    max_lora_rank: int
    engine_poll_seconds: float = 1.0
    retry_seconds: float = 5.0
    retry_max_seconds: float = 300.0

    @property
    def configmap_name(self) -> str:
        return f"{DESIRED_ADAPTERS_CONFIGMAP_PREFIX}{self.deployment}"


def load_config(env: Mapping[str, str]) -> AgentConfig:
    engine = env.get("KUBETUNE_ENGINE", "vllm")
    if engine not in ("vllm", "kubetune"):
        raise ConfigError(f"KUBETUNE_ENGINE must be vllm or kubetune, got {engine!r}")
    max_rank = _int(env, "KUBETUNE_MAX_LORA_RANK", DEFAULT_MAX_LORA_RANK[engine], low=1)
    if engine == "vllm" and max_rank not in SUPPORTED_LORA_RANKS:
        raise ConfigError(
            f"KUBETUNE_MAX_LORA_RANK={max_rank} is not a value vLLM's --max-lora-rank accepts "
            f"({', '.join(map(str, SUPPORTED_LORA_RANKS))}); set it to the engine's flag"
        )
    host, _, port = env.get("KUBETUNE_LISTEN", "0.0.0.0:8000").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"KUBETUNE_LISTEN must be HOST:PORT, got {env.get('KUBETUNE_LISTEN')!r}")
    engine_url = env.get("KUBETUNE_ENGINE_URL", "http://127.0.0.1:8001").rstrip("/")
    if not engine_url.startswith(("http://", "https://")):
        raise ConfigError(f"KUBETUNE_ENGINE_URL must be an http(s) URL, got {engine_url!r}")
    adapter_dir = Path(env.get("KUBETUNE_ADAPTER_DIR", "/var/lib/kubetune/adapters"))
    return AgentConfig(
        pod_name=_required(env, "POD_NAME"),
        namespace=_required(env, "POD_NAMESPACE"),
        deployment=_required(env, "KUBETUNE_DEPLOYMENT"),
        engine_url=engine_url,
        listen_host=host,
        listen_port=int(port),
        adapter_dir=adapter_dir,
        engine_adapter_dir=Path(env.get("KUBETUNE_ENGINE_ADAPTER_DIR") or adapter_dir),
        engine=engine,  # type: ignore[arg-type]
        base_model_name=env.get("KUBETUNE_BASE_MODEL_NAME") or None,
        max_lora_rank=max_rank,
        engine_poll_seconds=_float(env, "KUBETUNE_ENGINE_POLL_SECONDS", 1.0),
        retry_seconds=_float(env, "KUBETUNE_RETRY_SECONDS", 5.0),
        retry_max_seconds=_float(env, "KUBETUNE_RETRY_MAX_SECONDS", 300.0),
    )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ConfigError(f"{name} must be set (use the downward API for POD_NAME/POD_NAMESPACE)")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, low: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return value
