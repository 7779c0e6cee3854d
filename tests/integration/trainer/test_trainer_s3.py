"""A full trainer run from the object store to a published, verifying adapter.

Covers: ``python -m kubetune.trainer`` stages the tiny model and the sample data from S3,
trains LoRA, and exits 0 with a one-line success termination message; the run folder holds
data-report.json, progress.json, metrics.jsonl and only the newest ``keep`` checkpoints;
the adapter's manifest verifies every published file, carries the contract's fields (base
model identity, dataset digests, resolved hyperparameters, metrics, versions) and its digest
is the one reported; the model visibly learned (training loss and validation loss fall below
the base model's); the adapter loads with stock ``peft.PeftModel.from_pretrained`` and
changes the model's outputs; a second run of the same config never overwrites the published
adapter and reports it instead (exit 0).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from kubetune.api import contract
from kubetune.trainer import manifest as mf

from .conftest import Assets, objects, run_config


def test_full_run_publishes_a_verifying_adapter(
    assets: Assets, s3: Any, upload: Any, prefix: str, run_trainer: Any, tmp_path: Path
) -> None:
    model_uri = upload(assets.model, f"s3://models/{prefix}/tiny/")
    train_uri = upload(assets.train, f"s3://datasets/{prefix}/train.jsonl")
    test_uri = upload(assets.test, f"s3://datasets/{prefix}/test.jsonl")
    config = run_config(
        prefix=prefix,
        model_uri=model_uri,
        train_uri=train_uri,
        hyperparameters={"maxSteps": 40},
        checkpointing={"everySteps": 15, "keep": 1},
        evaluation={"testSet": test_uri, "maxNewTokens": 12},
    )
    result = run_trainer(config)
    assert result.returncode == 0, result.output[-3000:]
    doc = result.termination
    run_uri = f"s3://adapters/{prefix}/support-g1/"
    assert doc["status"] == "succeeded" and doc["reason"] == contract.REASON_SUCCEEDED
    assert doc["adapterUri"] == run_uri + "adapter/"

    run_objects = objects(s3, run_uri)
    adapter = {
        k.removeprefix("adapter/"): v for k, v in run_objects.items() if k.startswith("adapter/")
    }
    manifest_bytes = adapter[contract.MANIFEST_FILE]
    manifest = json.loads(manifest_bytes)
    assert mf.verify(manifest, adapter) == []
    assert doc["digest"] == mf.digest(manifest_bytes)
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(
        manifest["files"]
    )
    assert manifest["method"] == "lora" and manifest["run"] == "support-g1"
    assert manifest["baseModel"]["architecture"] == "LlamaForCausalLM"
    assert (
        manifest["baseModel"]["configSha256"]
        == hashlib.sha256((assets.model / "config.json").read_bytes()).hexdigest()
    )
    assert (
        manifest["datasets"]["train"]["sha256"]
        == hashlib.sha256(assets.train.read_bytes()).hexdigest()
    )
    assert manifest["datasets"]["test"]["records"] == 8
    assert manifest["hyperparameters"]["totalSteps"] == 40
    assert manifest["adapter"]["dtype"] == "bfloat16" and manifest["adapter"]["rank"] == 16
    assert manifest["versions"]["kubetune"] and manifest["versions"]["peft"]
    assert manifest["training"]["steps"] == 40 and manifest["training"]["resumedFromStep"] is None

    # Run folder: report, progress, history, and only the newest checkpoint (keep: 1).
    report = json.loads(run_objects[contract.DATA_REPORT_FILE])
    assert report["ok"] and report["split"]["validation"] == 20
    progress = json.loads(run_objects[contract.PROGRESS_FILE])
    assert (progress["step"], progress["totalSteps"], progress["phase"]) == (40, 40, "Published")
    checkpoints = {k.split("/")[1] for k in run_objects if k.startswith("checkpoints/")}
    assert checkpoints == {"40"}

    # It learned: training loss fell, and validation loss is below the base model's.
    records = [json.loads(line) for line in run_objects[contract.METRICS_FILE].splitlines()]
    history = [r for r in records if "loss" in r]
    assert [h["step"] for h in history] == list(range(1, 41))
    # Evaluations are lines of their own: the last one is the final evaluation.
    evaluations = [r for r in records if "evalLoss" in r]
    assert evaluations and evaluations[-1]["step"] == 40
    first = sum(h["loss"] for h in history[:5]) / 5
    last = sum(h["loss"] for h in history[-5:]) / 5
    assert last < first - 0.2, (first, last)
    metrics = manifest["metrics"]
    assert metrics["evalLoss"] < manifest["evaluation"]["base"]["evalLoss"] - 0.2
    assert {"trainLoss", "perplexity", "exactMatch", "normalizedMatch"} <= set(metrics)
    assert doc["metrics"]["evalLoss"] == metrics["evalLoss"]
    assert evaluations[-1]["evalLoss"] == round(metrics["evalLoss"], 6)

    # The adapter loads with stock PEFT and changes what the model says.
    local = tmp_path / "adapter"
    local.mkdir()
    for name, body in adapter.items():
        (local / name).write_bytes(body)
    tokenizer = AutoTokenizer.from_pretrained(str(local))
    base = AutoModelForCausalLM.from_pretrained(str(assets.model), dtype=torch.float32)
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        for question in ("How do I reset my LH-350 router?", "Is there an outage in Harrow?")
    ]
    with torch.no_grad():
        base_logits = [base(**p).logits for p in prompts]
        base_answers = [base.generate(**p, max_new_tokens=12, do_sample=False) for p in prompts]
        tuned = PeftModel.from_pretrained(base, str(local))
        tuned_logits = [tuned(**p).logits for p in prompts]
        tuned_answers = [tuned.generate(**p, max_new_tokens=12, do_sample=False) for p in prompts]
    assert all((a - b).abs().max() > 1e-2 for a, b in zip(base_logits, tuned_logits, strict=True))
    assert any(
        a.shape != b.shape or not torch.equal(a, b)
        for a, b in zip(base_answers, tuned_answers, strict=True)
    )

    # Published means final: a second run reports the adapter and writes nothing.
    again = run_trainer(config, folder="again")
    assert again.returncode == 0, again.output[-3000:]
    assert again.termination["digest"] == doc["digest"]
    assert "already published" in again.termination["message"]
    assert objects(s3, run_uri + "adapter/")[contract.MANIFEST_FILE] == manifest_bytes
