"""Loading the base model and attaching the method (``kubetune.trainer.model``).

Covers: safetensors only (a folder with pickle weights alone is refused, naming the file);
LoRA target spelling ("all-linear" or names, never both); LoRA on all linear layers trains
only adapter weights of every attention and MLP projection (not the output head); full
fine-tuning trains everything; an unknown target module is a config error naming the field;
QLoRA without a CUDA device fails with a clear user error; precision resolution on CPU.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from kubetune.api.runconfig import SCHEMA_VERSION, RunConfig
from kubetune.trainer.errors import InvalidConfigError, InvalidModelError
from kubetune.trainer.model import attach_method, check_model_dir, load_model, lora_targets
from kubetune.trainer.runtime import compute_dtype

CPU = torch.device("cpu")


def config(**overrides: Any) -> RunConfig:
    doc = {
        "schemaVersion": SCHEMA_VERSION,
        "jobNamespace": "ns",
        "jobName": "j",
        "run": "r",
        "generation": 1,
        "baseModelUri": "/m/",
        "trainUri": "/d/t.jsonl",
        "outputUri": "/o/",
    }
    doc.update(overrides)
    return RunConfig.from_dict(doc)


def test_pickle_only_models_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(InvalidModelError, match=r"no \*.safetensors.*pytorch_model.bin"):
        check_model_dir(folder)
    assert check_model_dir(tiny_model_dir)["model_type"] == "llama"


@pytest.mark.parametrize(
    ("targets", "expected"),
    [(("all-linear",), "all-linear"), (("q_proj", "v_proj"), ["q_proj", "v_proj"])],
)
def test_lora_targets(targets: tuple[str, ...], expected: Any) -> None:
    assert lora_targets(targets) == expected


@pytest.mark.parametrize("targets", [(), ("all-linear", "q_proj")])
def test_bad_lora_targets(targets: tuple[str, ...]) -> None:
    with pytest.raises(InvalidConfigError, match=r"lora\.targetModules"):
        lora_targets(targets)


def test_lora_all_linear_trains_only_adapters(tiny_model: Any) -> None:
    model = attach_method(tiny_model, config=config(lora={"rank": 4}))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any("lm_head" in name for name in trainable)


def test_full_fine_tuning_trains_everything(tiny_model: Any) -> None:
    model = attach_method(tiny_model, config=config(method="full"))
    assert all(p.requires_grad for p in model.parameters())


def test_unknown_target_module_names_the_field(tiny_model: Any) -> None:
    with pytest.raises(InvalidConfigError, match=r"lora\.targetModules"):
        attach_method(tiny_model, config=config(lora={"targetModules": ["no_such_proj"]}))


def test_qlora_without_cuda_is_a_user_error(tiny_model_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal only applies without it")
    qlora = config(method="qlora", gpus=1)
    with pytest.raises(InvalidConfigError, match="qlora needs a CUDA device"):
        load_model(tiny_model_dir, config=qlora, device=CPU, dtype=torch.bfloat16)


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("auto", torch.float32), ("fp32", torch.float32), ("bf16", torch.bfloat16)],
)
def test_precision_on_cpu(precision: str, dtype: torch.dtype) -> None:
    assert compute_dtype(precision, CPU) == dtype


def test_fp16_needs_cuda() -> None:
    with pytest.raises(InvalidConfigError, match="fp16 needs a CUDA device"):
        compute_dtype("fp16", CPU)
