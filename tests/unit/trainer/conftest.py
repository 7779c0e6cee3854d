"""Fixtures for the trainer's unit tests: one tiny model and its tokenizer per session.

The tiny model is a real Llama-architecture causal LM with random weights and a tokenizer
trained on the sample data (``kubetune.trainer.tiny``); building it takes a few seconds.
Tests run torch on one thread: the models are too small to gain from more, and the machine
is shared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kubetune.trainer.tiny import build_tiny_model

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_model_dir), local_files_only=True)


@pytest.fixture
def tiny_model(tiny_model_dir: Path) -> Any:
    """A fresh copy per test (tests may attach adapters or train it)."""
    model = AutoModelForCausalLM.from_pretrained(
        str(tiny_model_dir), local_files_only=True, use_safetensors=True, dtype=torch.float32
    )
    model.eval()
    return model
