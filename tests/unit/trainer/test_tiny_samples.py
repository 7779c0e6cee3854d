"""The tiny model and the sample dataset (``kubetune.trainer.tiny`` / ``.samples``).

Covers: the sample generator is deterministic by seed, has the requested sizes, varied
lengths, and no held-out test question in the training file; the CLIs write the files; the
tiny model is standard Hugging Face format (safetensors, config, tokenizer with a chat
template) that loads offline with the Auto classes and generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from kubetune.trainer import samples


def test_samples_are_deterministic_and_held_out() -> None:
    train, test = samples.generate(seed=7)
    assert (train, test) == samples.generate(seed=7)
    assert samples.generate(seed=8)[0] != train
    assert (len(train), len(test)) == (320, 40)
    train_questions = {m["content"] for r in train for m in r["messages"] if m["role"] == "user"}
    assert not {r["messages"][0]["content"] for r in test} & train_questions
    answer_lengths = {len(r["messages"][-1]["content"]) for r in train}
    assert min(answer_lengths) < 60 < 250 < max(answer_lengths)


def test_samples_cli_writes_jsonl(tmp_path: Path) -> None:
    assert samples.main(["--out", str(tmp_path), "--train", "30", "--test", "5"]) == 0
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    assert len(lines) == 30 and "messages" in json.loads(lines[0])
    assert len((tmp_path / "test.jsonl").read_text().splitlines()) == 5


def test_tiny_model_is_standard_hugging_face_format(tiny_model_dir: Path, tokenizer: Any) -> None:
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not any(n.endswith((".bin", ".pt")) for n in names)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), local_files_only=True)
    assert model.config.architectures == ["LlamaForCausalLM"]
    assert 500 <= model.config.vocab_size <= 2048
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Is there a data cap?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    torch.testing.assert_close(model.generate(**prompt, max_new_tokens=5, do_sample=False), out)
