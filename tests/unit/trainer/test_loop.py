"""The training loop in process (``kubetune.trainer.loop``), on the tiny model.

Covers: SIGTERM (a preemption) lets the current step finish, writes a checkpoint at that
step and stops with PreemptedError (an infrastructure error, so the Job retries); a new loop
resumes from that checkpoint and ends with exactly the weights of a run that was never
interrupted (data position, optimizer, scheduler and RNG all restored); the history has one
line per step; tokens/s counts real tokens only.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from kubetune.api.runconfig import SCHEMA_VERSION, RunConfig
from kubetune.trainer import samples
from kubetune.trainer.data.formats import parse_lines
from kubetune.trainer.loop import PreemptedError, StopFlag, train
from kubetune.trainer.run import _build_session
from kubetune.trainer.run_data import Inputs
from kubetune.trainer.runtime import Runtime
from kubetune.trainer.staging import StagedFile, StagedModel
from kubetune.trainer.storage import Store
from kubetune.trainer.tokenization import tokenize_examples

SINGLE = Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None)
STEPS = 6


@pytest.fixture
def sigterm_handler() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGTERM)
    StopFlag.requested = False
    yield
    signal.signal(signal.SIGTERM, previous)
    StopFlag.requested = False


def session(tiny_model_dir: Path, tokenizer: Any, out: Path, work: Path) -> Any:
    config = RunConfig.from_dict(
        {
            "schemaVersion": SCHEMA_VERSION,
            "jobNamespace": "ns",
            "jobName": "j",
            "run": "r",
            "generation": 1,
            "baseModelUri": str(tiny_model_dir),
            "trainUri": "/unused",
            "outputUri": f"{out}/",
            "lora": {"rank": 4, "dropout": 0.1},
            "hyperparameters": {"maxSteps": STEPS, "batchSize": 4, "learningRate": 0.01},
            "checkpointing": {"everySteps": 0, "everyMinutes": 0, "keep": 2},
        }
    )
    records, _ = samples.generate(seed=1, train=24, test=0)
    lines = [json.dumps(r) for r in records]
    examples = parse_lines(lines).examples
    tokenized, _ = tokenize_examples(examples, tokenizer, max_length=256)
    inputs = Inputs(
        model=StagedModel(str(tiny_model_dir), tiny_model_dir),
        datasets={"train": StagedFile("/unused", Path("/unused"), "digest", 0)},
    )
    return _build_session(
        config,
        runtime=SINGLE,
        inputs=inputs,
        tokenizer=tokenizer,
        tokenized={"train": tokenized, "validation": []},
        store=Store(),
        work=work,
    )


def weights(s: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in s.train_inputs.trainable.items()}


def test_preemption_checkpoints_and_resume_is_exact(
    tiny_model_dir: Path, tokenizer: Any, tmp_path: Path, sigterm_handler: None
) -> None:
    uninterrupted = session(tiny_model_dir, tokenizer, tmp_path / "a", tmp_path / "wa")
    result = train(uninterrupted.train_inputs)
    assert result.final_step == STEPS and result.resumed_from_step is None
    real = sum(len(e.input_ids) for e in uninterrupted.train_inputs.train)
    assert 0 < result.real_tokens <= real * 2  # 6 steps x 4 examples of 24: one epoch

    StopFlag.install()
    os.kill(os.getpid(), signal.SIGTERM)  # a real signal, handled between steps
    interrupted = session(tiny_model_dir, tokenizer, tmp_path / "b", tmp_path / "wb")
    with pytest.raises(PreemptedError, match="after step 1; checkpoint 1 saved"):
        train(interrupted.train_inputs)
    assert (tmp_path / "b/r/checkpoints/1/COMPLETE").is_file()

    StopFlag.requested = False
    resumed = session(tiny_model_dir, tokenizer, tmp_path / "b", tmp_path / "wb")
    again = train(resumed.train_inputs)
    assert again.resumed_from_step == 1 and again.final_step == STEPS
    for name, value in weights(uninterrupted).items():
        torch.testing.assert_close(weights(resumed)[name], value, atol=1e-6, rtol=1e-5)
    history = resumed.train_inputs.progress.history
    assert [h["step"] for h in history] == list(range(1, STEPS + 1))
