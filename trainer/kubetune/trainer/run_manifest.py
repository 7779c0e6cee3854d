"""The end of a run: export the adapter, assemble its manifest from everything the run
learned (inputs, data, training, evaluation, versions) and publish it, manifest last.
Called by ``run`` on rank 0.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from kubetune.api.runconfig import RunConfig
from kubetune.api.version import __version__
from kubetune.trainer import manifest as mf
from kubetune.trainer import published, schedule, termination
from kubetune.trainer import runtime as rt
from kubetune.trainer.chat_template import DEFAULT_CHAT_TEMPLATE
from kubetune.trainer.loop import TrainResult
from kubetune.trainer.model import parameter_counts
from kubetune.trainer.optim import MAX_GRAD_NORM
from kubetune.trainer.progress import now_rfc3339
from kubetune.trainer.publish import AlreadyPublishedError, export, file_digests, publish
from kubetune.trainer.run_data import Dataset, Inputs
from kubetune.trainer.storage import Store
from kubetune.trainer.tokenization import TokenizedExample


def export_and_publish(
    *,
    config: RunConfig,
    store: Store,
    work: Path,
    model: Any,
    tokenizer: Any,
    inputs: Inputs,
    model_config: dict[str, Any],
    dataset: Dataset,
    tokenized: dict[str, list[TokenizedExample]],
    result: TrainResult,
    total_steps: int,
    dtype: torch.dtype,
    metrics: dict[str, Any],
    evaluation: dict[str, Any],
    runtime: rt.Runtime,
    adapter_uri: str,
) -> dict[str, Any]:
    folder = work / "export"
    adapter_section = export(
        model,
        tokenizer,
        out=folder,
        method=config.method,
        base_model_uri=config.base_model_uri,
        chat_template=DEFAULT_CHAT_TEMPLATE,
    )
    hp = config.hyperparameters
    hyperparameters = {
        **config.to_dict()["hyperparameters"],
        "resolvedPrecision": str(dtype).removeprefix("torch."),
        "totalSteps": total_steps,
        "warmupSteps": schedule.warmup_steps(total_steps, hp.warmup_ratio),
        "worldSize": runtime.world_size,
        "effectiveBatchSize": hp.batch_size
        * max(1, hp.gradient_accumulation_steps)
        * runtime.world_size,
        "maxGradNorm": MAX_GRAD_NORM,
        "optimizer": "adamw",
    }
    if config.method != "full":
        hyperparameters["lora"] = config.to_dict()["lora"]
    config_file = inputs.model.files.get("config.json")
    base_model = {
        "uri": config.base_model_uri,
        "name": config.base_model_uri.rstrip("/").rsplit("/", 1)[-1],
        "architecture": (model_config.get("architectures") or ["unknown"])[0],
        "modelType": model_config.get("model_type", ""),
        "configSha256": config_file.sha256 if config_file else "",
        "parameters": parameter_counts(model)["total"],
    }
    weight_files = {
        name: {"sha256": f.sha256, "size": f.size}
        for name, f in inputs.model.files.items()
        if name.endswith(".safetensors")
    }
    if weight_files:
        base_model["weights"] = weight_files
    datasets: dict[str, Any] = {}
    for role, staged in inputs.datasets.items():
        datasets[role] = {
            "uri": staged.uri,
            "sha256": staged.sha256,
            "format": dataset.formats[role],
        }
    datasets["train"]["records"] = len(tokenized["train"])
    if "validation" in datasets:
        datasets["validation"]["records"] = len(tokenized["validation"])
    elif tokenized["validation"]:
        datasets["validation"] = {
            "uri": config.train_uri,
            "sha256": inputs.datasets["train"].sha256,
            "records": len(tokenized["validation"]),
            "splitFrom": "train",
        }
    if "test" in datasets:
        datasets["test"]["records"] = len(dataset.test)
    training = {
        "steps": result.final_step,
        "resumedFromStep": result.resumed_from_step,
        "realTokens": result.real_tokens,
        "trainingSeconds": round(result.seconds, 3),
        "tokensPerSecond": round(result.tokens_per_second, 1),
        "worldSize": runtime.world_size,
        "device": runtime.device.type,
        "shards": result.shards,
        "replicasInSync": result.replicas_in_sync,
        "trainableParameters": parameter_counts(model)["trainable"],
    }
    versions = {
        "kubetune": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "peft": _version("peft"),
    }
    if torch.version.cuda:
        versions["cuda"] = str(torch.version.cuda)
    manifest = mf.build(
        run=config.run,
        job_namespace=config.job_namespace,
        job_name=config.job_name,
        generation=config.generation,
        created_at=now_rfc3339(),
        method=config.method,
        base_model=base_model,
        adapter=adapter_section,
        files=file_digests(folder),
        datasets=datasets,
        hyperparameters=hyperparameters,
        metrics=metrics,
        evaluation=evaluation,
        training=training,
        versions=versions,
    )
    try:
        body = publish(store, adapter_uri=adapter_uri, folder=folder, manifest=manifest)
    except AlreadyPublishedError as done:
        return published.document(done.manifest_bytes, adapter_uri)
    return termination.succeeded(
        adapter_uri=adapter_uri,
        digest=mf.digest(body),
        metrics={k: v for k, v in metrics.items() if v is not None},
    )


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version(module)
    except PackageNotFoundError:
        return ""
