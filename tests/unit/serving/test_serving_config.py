"""The agent's environment configuration (``kubetune.serving.agent.config``).

Covers: a minimal pod environment with its defaults (vLLM engine, rank 16, listen 0.0.0.0:8000,
engine at 127.0.0.1:8001, engine-side adapter folder defaulting to the agent's); the reference
engine's default rank; every malformed or missing variable refused with its name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.serving.agent.config import ConfigError, load_config

POD = {"POD_NAME": "serving-0", "POD_NAMESPACE": "ml", "KUBETUNE_DEPLOYMENT": "llama3-serving"}


def test_defaults() -> None:
    config = load_config(POD)
    assert config.configmap_name == "kubetune-adapters-llama3-serving"
    assert (config.engine, config.max_lora_rank) == ("vllm", 16)
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 8000)
    assert config.engine_url == "http://127.0.0.1:8001"
    assert config.engine_adapter_dir == config.adapter_dir
    assert config.base_model_name is None


def test_overrides() -> None:
    config = load_config(
        {
            **POD,
            "KUBETUNE_ENGINE": "kubetune",
            "KUBETUNE_LISTEN": "127.0.0.1:9000",
            "KUBETUNE_ENGINE_URL": "http://127.0.0.1:8001/",
            "KUBETUNE_ADAPTER_DIR": "/a",
            "KUBETUNE_ENGINE_ADAPTER_DIR": "/b",
            "KUBETUNE_BASE_MODEL_NAME": "tiny",
        }
    )
    assert config.max_lora_rank == 64
    assert config.listen_port == 9000 and config.engine_url == "http://127.0.0.1:8001"
    assert (config.adapter_dir, config.engine_adapter_dir) == (Path("/a"), Path("/b"))
    assert config.base_model_name == "tiny"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"POD_NAMESPACE": "ml", "KUBETUNE_DEPLOYMENT": "d"}, "POD_NAME"),
        ({**POD, "KUBETUNE_ENGINE": "tgi"}, "KUBETUNE_ENGINE"),
        ({**POD, "KUBETUNE_MAX_LORA_RANK": "12"}, "KUBETUNE_MAX_LORA_RANK=12 is not a value vLLM"),
        ({**POD, "KUBETUNE_MAX_LORA_RANK": "x"}, "KUBETUNE_MAX_LORA_RANK must be an integer"),
        ({**POD, "KUBETUNE_LISTEN": "8000"}, "KUBETUNE_LISTEN"),
        ({**POD, "KUBETUNE_ENGINE_URL": "127.0.0.1:8001"}, "KUBETUNE_ENGINE_URL"),
        ({**POD, "KUBETUNE_ENGINE_POLL_SECONDS": "0"}, "KUBETUNE_ENGINE_POLL_SECONDS"),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config(env)
