"""One training run, end to end: the orchestration behind ``python -m kubetune.trainer``.

published already? -> stage the data -> parse/validate/clean/split (``run_data``) -> stage
the base model -> tokenise + data report -> load model + method -> train (``loop``, resuming
from the newest complete checkpoint) -> evaluate -> export and publish, manifest last
(``run_manifest``) -> termination document.

Phases that only some processes perform (staging on each node's first process, publishing on
rank 0) go through ``runtime.collective`` so that a failure on one process becomes the same
error on every process instead of leaving the others waiting at a barrier.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kubetune.api import contract
from kubetune.api.runconfig import RunConfig
from kubetune.trainer import published, run_data, run_manifest, schedule
from kubetune.trainer import runtime as rt
from kubetune.trainer.checkpoint import Checkpointer
from kubetune.trainer.data.formats import Example
from kubetune.trainer.errors import (
    InvalidConfigError,
    InvalidDatasetError,
)
from kubetune.trainer.evaluate import (
    adapter_disabled,
    eval_loss,
    generation_metrics,
    samples_section,
)
from kubetune.trainer.loop import TrainInputs, TrainResult, train
from kubetune.trainer.model import (
    attach_method,
    check_model_dir,
    load_model,
    load_tokenizer,
    packs_whole_batches,
    require_cuda_for_qlora,
    trainable_parameters,
)
from kubetune.trainer.objective import CausalLMObjective
from kubetune.trainer.optim import build_optimizer, build_scheduler
from kubetune.trainer.progress import ProgressReporter, eval_record, now_rfc3339, snapshot
from kubetune.trainer.run_data import Inputs
from kubetune.trainer.storage import Store
from kubetune.trainer.tokenization import TokenizedExample

log = logging.getLogger(__name__)

DEFAULT_WORK_DIR = "/tmp/kubetune"  # noqa: S108 - a pod-local emptyDir by default
PROGRESS_INTERVAL_S = float(os.environ.get("KUBETUNE_PROGRESS_SECONDS", "15"))


def work_dir_for(config: RunConfig) -> Path:
    root = Path(os.environ.get("KUBETUNE_WORK_DIR") or DEFAULT_WORK_DIR)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{config.job_namespace}.{config.job_name}.{config.run}")
    return root / name


def execute(config: RunConfig) -> dict[str, Any]:
    """Run and return the termination document; raises ``UserError``/other on failure."""
    require_cuda_for_qlora(config)
    runtime = rt.init_runtime(want_gpu=config.gpus > 0)
    try:
        return _execute(config, runtime)
    finally:
        rt.shutdown(runtime)


def _execute(config: RunConfig, runtime: rt.Runtime) -> dict[str, Any]:
    store = Store(config.storage)
    adapter_uri = published.adapter_uri(config)
    existing = published.existing_document(config, store)
    if existing is not None:
        log.info("run %s is already published; nothing to do", config.run)
        return existing

    work = work_dir_for(config)
    work.mkdir(parents=True, exist_ok=True)
    # Data first: a bad dataset is reported before a multi-gigabyte model is downloaded.
    datasets = rt.collective(
        runtime,
        lambda: run_data.stage_data(config, store=store, work=work),
        on=runtime.is_local_main,
        then_all=lambda: run_data.stage_data(config, store=store, work=work),
    )
    try:
        dataset = run_data.prepare_data(config, datasets)
    except run_data.DataRejectedError as rejected:
        if runtime.is_main:
            run_data.upload_report(store, config=config, report=rejected.report)
        raise
    staged_model = rt.collective(
        runtime,
        lambda: run_data.stage_base_model(config, store=store, work=work),
        on=runtime.is_local_main,
        then_all=lambda: run_data.stage_base_model(config, store=store, work=work),
    )
    inputs = Inputs(model=staged_model, datasets=datasets)
    model_config = check_model_dir(staged_model.path)
    tokenizer = load_tokenizer(staged_model.path, trust_remote_code=config.trust_remote_code)
    tokenized = run_data.tokenize(config, tokenizer=tokenizer, dataset=dataset)
    if runtime.is_main:
        run_data.upload_report(store, config=config, report=dataset.report)
    if not tokenized["train"]:
        raise InvalidDatasetError(
            "no training example keeps any answer token within maxSeqLength "
            f"{config.hyperparameters.max_seq_length}; raise hyperparameters.maxSeqLength"
        )

    session = _build_session(
        config,
        runtime=runtime,
        inputs=inputs,
        tokenizer=tokenizer,
        tokenized=tokenized,
        store=store,
        work=work,
    )
    result = train(session.train_inputs)
    metrics, evaluation = _final_evaluation(config, session=session, result=result)

    def finish() -> dict[str, Any]:
        if dataset.test:
            _generation_eval(
                config,
                session=session,
                tokenizer=tokenizer,
                test=dataset.test,
                metrics=metrics,
                evaluation=evaluation,
            )
        return run_manifest.export_and_publish(
            config=config,
            store=store,
            work=work,
            model=session.model,
            tokenizer=tokenizer,
            inputs=inputs,
            model_config=model_config,
            dataset=dataset,
            tokenized=tokenized,
            result=result,
            total_steps=session.train_inputs.total_steps,
            dtype=session.dtype,
            metrics=metrics,
            evaluation=evaluation,
            runtime=runtime,
            adapter_uri=adapter_uri,
        )

    doc = rt.collective(runtime, finish, on=runtime.is_main)
    final_eval = metrics.get(contract.METRIC_EVAL_LOSS)
    _final_progress(
        config,
        session=session,
        result=result,
        phase="Published",
        final=None if final_eval is None else {"evalLoss": final_eval},
    )
    return dict(rt.broadcast_object(runtime, doc))


@dataclass
class Session:
    """Everything the loop and the evaluation share."""

    model: Any
    dtype: torch.dtype
    runtime: rt.Runtime
    train_inputs: TrainInputs
    evaluate: Callable[[], dict[str, float] | None]


def _build_session(
    config: RunConfig,
    *,
    runtime: rt.Runtime,
    inputs: Inputs,
    tokenizer: Any,
    tokenized: dict[str, list[TokenizedExample]],
    store: Store,
    work: Path,
) -> Session:
    hp = config.hyperparameters
    dtype = rt.compute_dtype(hp.precision, runtime.device)
    if hp.lr_scheduler not in schedule.SCHEDULERS:
        raise InvalidConfigError(
            f"hyperparameters.lrScheduler {hp.lr_scheduler!r} is not one of "
            f"{', '.join(schedule.SCHEDULERS)}"
        )
    random.seed(hp.seed)
    torch.manual_seed(hp.seed)  # identical adapter initialisation on every process
    model = load_model(inputs.model.path, config=config, device=runtime.device, dtype=dtype)
    model = attach_method(model, config=config)
    torch.manual_seed(hp.seed + runtime.rank)  # but different dropout masks
    objective: torch.nn.Module = CausalLMObjective(model)
    if runtime.distributed:
        objective = torch.nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None,
        )
    trainable = trainable_parameters(model)
    total_steps = schedule.total_steps(
        examples=len(tokenized["train"]),
        epochs=hp.epochs,
        max_steps=hp.max_steps,
        batch_size=hp.batch_size,
        accumulation=max(1, hp.gradient_accumulation_steps),
        world_size=runtime.world_size,
    )
    optimizer = build_optimizer(trainable, hp=hp, device=runtime.device)
    pad_id = int(tokenizer.pad_token_id)
    # With per-example attention a whole micro-batch is one row: no padding at all. With
    # SDPA's block mask, rows stay at maxSeqLength (attention cost grows with row length²).
    capacity = hp.max_seq_length * (hp.batch_size if packs_whole_batches(model) else 1)

    def evaluate_now() -> dict[str, float] | None:
        return eval_loss(
            CausalLMObjective(model),
            tokenized["validation"],
            runtime=runtime,
            batch_size=hp.batch_size,
            packing=hp.packing,
            capacity=capacity,
            pad_id=pad_id,
            dtype=dtype,
        )

    train_inputs = TrainInputs(
        config=config,
        runtime=runtime,
        model=model,
        objective=objective,
        trainable=trainable,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, hp=hp, total_steps=total_steps),
        train=tokenized["train"],
        total_steps=total_steps,
        capacity=capacity,
        pad_id=pad_id,
        dtype=dtype,
        train_sha256=inputs.datasets["train"].sha256,
        checkpointer=Checkpointer(
            store=store,
            run_uri=config.run_uri,
            work_dir=work,
            runtime=runtime,
            keep=config.checkpointing.keep,
        ),
        progress=ProgressReporter(
            store=store,
            run_uri=config.run_uri,
            work_dir=work,
            enabled=runtime.is_main,
            interval_s=PROGRESS_INTERVAL_S,
        ),
        evaluate=evaluate_now,
    )
    return Session(model, dtype, runtime, train_inputs, evaluate_now)


def _final_progress(
    config: RunConfig,
    *,
    session: Session,
    result: TrainResult,
    phase: str,
    final: dict[str, float] | None = None,
) -> None:
    """A last progress snapshot after training (rank 0 only; others have it disabled)."""
    inputs = session.train_inputs
    per_epoch = schedule.micro_batches_per_epoch(
        len(inputs.train),
        batch_size=config.hyperparameters.batch_size,
        world_size=session.runtime.world_size,
    )
    accumulation = max(1, config.hyperparameters.gradient_accumulation_steps)
    evaluated = final or result.eval
    inputs.progress.update(
        snapshot(
            step=result.final_step,
            total_steps=inputs.total_steps,
            epoch=result.final_step * accumulation / per_epoch,
            loss=result.train_loss,
            eval_loss=None if evaluated is None else evaluated["evalLoss"],
            tokens_per_second=result.tokens_per_second,
            eta=0.0,
            phase=phase,
            resumed_from_step=result.resumed_from_step,
            updated_at=now_rfc3339(),
        ),
        force=True,
    )


def _final_evaluation(
    config: RunConfig, *, session: Session, result: TrainResult
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validation loss of the adapter and of the base model; publishes a last progress."""
    metrics: dict[str, Any] = {contract.METRIC_TRAIN_LOSS: result.train_loss}
    evaluation: dict[str, Any] = {}
    final = session.evaluate()
    if final is not None:
        session.train_inputs.progress.record(eval_record(step=result.final_step, result=final))
        metrics[contract.METRIC_EVAL_LOSS] = final["evalLoss"]
        metrics[contract.METRIC_PERPLEXITY] = final["perplexity"]
        records = len(session.train_inputs.train)
        evaluation["validation"] = {**final, "trainRecords": records}
        if config.method != "full":
            with adapter_disabled(session.model):
                base = session.evaluate()
            if base is not None:
                evaluation.setdefault("base", {}).update(base)
    _final_progress(config, session=session, result=result, phase="Evaluating", final=final)
    return metrics, evaluation


def _generation_eval(
    config: RunConfig,
    *,
    session: Session,
    tokenizer: Any,
    test: list[Example],
    metrics: dict[str, Any],
    evaluation: dict[str, Any],
) -> None:
    """Greedy answers on the test set, with the adapter and (for adapters) without it."""
    max_new = config.evaluation.max_new_tokens
    device, dtype, model = session.runtime.device, session.dtype, session.model
    rates, answers = generation_metrics(
        model, tokenizer, examples=test, device=device, dtype=dtype, max_new_tokens=max_new
    )
    metrics.update(rates)
    evaluation["test"] = {**rates, "records": len(test), "samples": samples_section(answers)}
    if config.method != "full":
        with adapter_disabled(model):
            base_rates, base_answers = generation_metrics(
                model, tokenizer, examples=test, device=device, dtype=dtype, max_new_tokens=max_new
            )
        changed = sum(1 for a, b in zip(answers, base_answers, strict=True) if a[1] != b[1])
        evaluation.setdefault("base", {}).update(base_rates)
        evaluation["test"]["changedFromBase"] = changed / len(test)
