"""The training loop: micro-batches -> loss -> optimizer step, with progress, periodic
evaluation, checkpoints by steps and by minutes, and exact resume.

Every process runs the same loop on its own data shard; DDP averages gradients. One small
all-reduce per step carries the loss, token counts and the "checkpoint now" decision (time-
based checkpoints and SIGTERM are decided by rank 0's clock and applied by all). tokens/s
counts real tokens only: never padding.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from kubetune.api.runconfig import RunConfig
from kubetune.trainer import runtime as rt
from kubetune.trainer import schedule
from kubetune.trainer.checkpoint import Checkpointer
from kubetune.trainer.errors import InfraError, InvalidDatasetError
from kubetune.trainer.evaluate import autocast
from kubetune.trainer.optim import MAX_GRAD_NORM
from kubetune.trainer.packing import Batch, make_batch, to_tensors
from kubetune.trainer.progress import (
    ProgressReporter,
    eta_seconds,
    eval_record,
    now_rfc3339,
    snapshot,
)
from kubetune.trainer.tokenization import TokenizedExample

log = logging.getLogger(__name__)

RECENT_STEPS = 10
"""trainLoss is the mean loss of this many final steps."""
SHARD_SAMPLE = 64


class PreemptedError(InfraError):
    """SIGTERM arrived; a checkpoint was saved and the Job may retry the pod."""


class StopFlag:
    """Set by the SIGTERM handler; read by the loop between steps."""

    requested = False

    @classmethod
    def install(cls) -> None:
        def handler(signum: int, _frame: Any) -> None:
            log.warning("signal %d: checkpointing after the current step, then exiting", signum)
            cls.requested = True

        signal.signal(signal.SIGTERM, handler)


@dataclass
class TrainInputs:
    config: RunConfig
    runtime: rt.Runtime
    model: Any
    """The model being trained (PEFT-wrapped for adapters)."""
    objective: torch.nn.Module
    """``CausalLMObjective``, DDP-wrapped when distributed."""
    trainable: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train: Sequence[TokenizedExample]
    total_steps: int
    capacity: int
    pad_id: int
    dtype: torch.dtype
    train_sha256: str
    checkpointer: Checkpointer
    progress: ProgressReporter
    evaluate: Callable[[], dict[str, float] | None]


@dataclass
class TrainResult:
    final_step: int
    resumed_from_step: int | None
    train_loss: float | None
    real_tokens: int
    seconds: float
    eval: dict[str, float] | None
    shards: list[dict[str, Any]] = field(default_factory=list)
    replicas_in_sync: bool = True

    @property
    def tokens_per_second(self) -> float:
        return self.real_tokens / self.seconds if self.seconds > 0 else 0.0


def shard_fingerprint(inputs: TrainInputs) -> dict[str, Any]:
    """Which examples this process trains on in the first epoch (for reports and tests)."""
    rank, world = inputs.runtime.rank, inputs.runtime.world_size
    order = schedule.epoch_order(
        len(inputs.train), seed=inputs.config.hyperparameters.seed, epoch=0
    )
    mine = schedule.shard(order, rank=rank, world_size=world)
    lines = [inputs.train[i].line for i in mine]
    unique = min(len(lines), len(inputs.train) // world)
    return {
        "rank": rank,
        "examples": len(lines),
        "sha256": hashlib.sha256(json.dumps(lines).encode()).hexdigest(),
        "sampleLines": lines[: min(SHARD_SAMPLE, unique)],
    }


def parameters_digest(trainable: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(trainable):
        digest.update(name.encode())
        digest.update(trainable[name].detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class _Position:
    """Where the run stands: restored from a checkpoint or fresh."""

    start_step: int = 0
    resumed_from: int | None = None
    recent: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_STEPS)
    )
    tokens_before: int = 0
    seconds_before: float = 0.0
    last_eval: dict[str, float] | None = None


def _resume(inputs: TrainInputs) -> _Position:
    position = _Position()
    state = inputs.checkpointer.load_latest(
        trainable=inputs.trainable, optimizer=inputs.optimizer, scheduler=inputs.scheduler
    )
    if state is None:
        log.info("starting at step 0 of %d (no checkpoint of this run)", inputs.total_steps)
        return position
    if state.get("trainSha256") != inputs.train_sha256:
        raise InvalidDatasetError(
            f"the training data changed since checkpoint step {state['step']} of run "
            f"{inputs.config.run}; a changed dataset needs a new run (a new spec generation)"
        )
    position.start_step = position.resumed_from = int(state["step"])
    position.recent.extend(state.get("recentLosses", []))
    position.tokens_before = int(state.get("realTokens", 0))
    position.seconds_before = float(state.get("trainingSeconds", 0.0))
    position.last_eval = state.get("eval")
    log.info("resuming from checkpoint step %d of %d", position.start_step, inputs.total_steps)
    inputs.progress.restore(up_to_step=position.start_step)
    return position


def _optimizer_step(inputs: TrainInputs, step: int) -> tuple[float, list[Batch], float]:
    """One optimizer step over ``accumulation`` micro-batches: (local loss sum, batches, norm)."""
    hp = inputs.config.hyperparameters
    runtime = inputs.runtime
    accumulation = max(1, hp.gradient_accumulation_steps)
    batches = []
    for k in range(accumulation):
        _, indices = schedule.micro_batch(
            step * accumulation + k,
            examples=len(inputs.train),
            batch_size=hp.batch_size,
            seed=hp.seed,
            rank=runtime.rank,
            world_size=runtime.world_size,
        )
        batches.append(
            make_batch(
                [inputs.train[i] for i in indices],
                packing=hp.packing,
                capacity=inputs.capacity,
                pad_id=inputs.pad_id,
            )
        )
    # Normalise by the step's label tokens, so every answer token weighs the same however
    # the tokens fall into micro-batches.
    label_total = max(1, sum(b.label_tokens for b in batches))
    loss_sum = 0.0
    for k, batch in enumerate(batches):
        defer_sync = runtime.distributed and k < len(batches) - 1
        context = inputs.objective.no_sync() if defer_sync else contextlib.nullcontext()  # type: ignore[operator]
        with context:
            with autocast(runtime.device, inputs.dtype):
                summed = inputs.objective(**to_tensors(batch, runtime.device))
            (summed / label_total).backward()
        loss_sum += float(summed.detach())
    grad_norm = torch.nn.utils.clip_grad_norm_(list(inputs.trainable.values()), MAX_GRAD_NORM)
    inputs.optimizer.step()
    inputs.scheduler.step()
    inputs.optimizer.zero_grad(set_to_none=True)
    return loss_sum, batches, float(grad_norm)


class _Clock:
    """Training time (evaluation excluded), per-step laps, and the time-based checkpoint."""

    def __init__(self, every_seconds: float) -> None:
        self.began = self.last_checkpoint = time.monotonic()
        self.excluded = 0.0
        self.every_seconds = every_seconds
        self._lap_wall = 0.0
        self._lap_cpu = time.process_time()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.began - self.excluded

    @property
    def checkpoint_due(self) -> bool:
        return (
            self.every_seconds > 0 and time.monotonic() - self.last_checkpoint >= self.every_seconds
        )

    def lap(self) -> tuple[float, float]:
        """(wall, CPU) seconds since the previous lap. CPU time of this process over the same
        span tells compute from waiting (I/O, collectives, a busy node) when a step is slow."""
        wall, cpu = self.elapsed, time.process_time()
        laps = (wall - self._lap_wall, cpu - self._lap_cpu)
        self._lap_wall, self._lap_cpu = wall, cpu
        return laps

    @contextlib.contextmanager
    def excluding(self) -> Iterator[None]:
        """Time spent inside (evaluation) counts neither as training time nor in a lap."""
        wall, cpu = time.monotonic(), time.process_time()
        try:
            yield
        finally:
            self.excluded += time.monotonic() - wall
            self._lap_cpu += time.process_time() - cpu


def train(inputs: TrainInputs) -> TrainResult:
    config, runtime = inputs.config, inputs.runtime
    hp = config.hyperparameters
    accumulation = max(1, hp.gradient_accumulation_steps)
    per_epoch = schedule.micro_batches_per_epoch(
        len(inputs.train), batch_size=hp.batch_size, world_size=runtime.world_size
    )
    position = _resume(inputs)
    start = position.start_step
    shards = rt.all_gather_object(runtime, shard_fingerprint(inputs))
    inputs.objective.train()
    log_every = 1 if inputs.total_steps <= 200 else inputs.total_steps // 100
    clock = _Clock(config.checkpointing.every_minutes * 60)
    tokens_now = 0

    def save(at: int) -> None:
        inputs.checkpointer.save(
            at,
            trainable=inputs.trainable,
            optimizer=inputs.optimizer,
            scheduler=inputs.scheduler,
            state={
                "step": at,
                "microBatches": at * accumulation,
                "epoch": at * accumulation / per_epoch,
                "trainSha256": inputs.train_sha256,
                "worldSize": runtime.world_size,
                "recentLosses": list(position.recent),
                "realTokens": position.tokens_before + tokens_now,
                "trainingSeconds": position.seconds_before + clock.elapsed,
                "eval": position.last_eval,
            },
        )
        clock.last_checkpoint = time.monotonic()

    clock.lap()
    for step in range(start, inputs.total_steps):
        loss_sum, batches, grad_norm = _optimizer_step(inputs, step)
        stop = StopFlag.requested
        # One all-reduce per step: loss, label tokens, real tokens, checkpoint-now, stop.
        totals = rt.all_reduce_sum(
            runtime,
            torch.tensor(
                [
                    loss_sum,
                    float(sum(b.label_tokens for b in batches)),
                    float(sum(b.real_tokens for b in batches)),
                    1.0 if runtime.is_main and (clock.checkpoint_due or stop) else 0.0,
                    1.0 if stop else 0.0,
                ],
                dtype=torch.float64,
                device=runtime.device,
            ),
        ).tolist()
        # Since the previous step ended: evaluation excluded, checkpoints included.
        step_seconds, step_cpu = clock.lap()
        loss = totals[0] / max(1.0, totals[1])
        position.recent.append(loss)
        tokens_now += int(totals[2])
        done = step + 1
        epoch = done * accumulation / per_epoch
        tokens_per_second = tokens_now / clock.elapsed if clock.elapsed > 0 else 0.0
        learning_rate = inputs.scheduler.get_last_lr()[0]
        inputs.progress.record(
            {
                "step": done,
                "epoch": round(epoch, 4),
                "loss": round(loss, 6),
                "learningRate": learning_rate,
                "gradNorm": round(grad_norm, 6),
                "tokens": int(totals[2]),
                "stepSeconds": round(step_seconds, 6),
                "stepCpuSeconds": round(step_cpu, 6),
                "tokensPerSecond": round(tokens_per_second, 1),
                "startedAtStep": start,
                "time": now_rfc3339(),
            }
        )
        if done % log_every == 0 or done in (start + 1, inputs.total_steps):
            log.info(
                "step %d/%d epoch %.2f loss %.4f lr %.2e tokens/s %.0f",
                done,
                inputs.total_steps,
                epoch,
                loss,
                learning_rate,
                tokens_per_second,
            )
        evaluated = False
        crossed_epoch = (done * accumulation) // per_epoch > (step * accumulation) // per_epoch
        if crossed_epoch and done < inputs.total_steps:
            with clock.excluding():
                result = inputs.evaluate()
                inputs.objective.train()
            if result is not None:
                position.last_eval, evaluated = result, True
                inputs.progress.record(eval_record(step=done, result=result))
                log.info("eval at step %d: loss %.4f", done, result["evalLoss"])
        every = config.checkpointing.every_steps
        checkpoint_now = (
            (every > 0 and done % every == 0) or totals[3] > 0 or done == inputs.total_steps
        )
        # History first: once checkpoint N is complete, metrics up to N must be stored too.
        inputs.progress.update(
            snapshot(
                step=done,
                total_steps=inputs.total_steps,
                epoch=epoch,
                loss=loss,
                eval_loss=None if position.last_eval is None else position.last_eval["evalLoss"],
                tokens_per_second=tokens_per_second,
                eta=eta_seconds(
                    done=done - start,
                    total=inputs.total_steps - start,
                    seconds_per_step=clock.elapsed / (done - start),
                ),
                phase="Training",
                resumed_from_step=position.resumed_from,
                updated_at=now_rfc3339(),
            ),
            force=checkpoint_now or evaluated,
        )
        if checkpoint_now:
            save(done)
        if totals[4] > 0:
            raise PreemptedError(f"stopped by SIGTERM after step {done}; checkpoint {done} saved")

    digests = rt.all_gather_object(runtime, parameters_digest(inputs.trainable))
    recent = position.recent
    return TrainResult(
        final_step=max(start, inputs.total_steps),
        resumed_from_step=position.resumed_from,
        train_loss=sum(recent) / len(recent) if recent else None,
        real_tokens=position.tokens_before + tokens_now,
        seconds=position.seconds_before + clock.elapsed,
        eval=position.last_eval,
        shards=shards,
        replicas_in_sync=len(set(digests)) == 1,
    )
