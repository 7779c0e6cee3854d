"""Benchmark: the kubetune trainer (padding-free packing) against a plain Hugging Face Trainer
+ PEFT baseline with padded batches, same tiny model, same data, same steps, on CPU.

    .venv/bin/python bench/trainer_cpu.py [--steps 40] [--repeats 3] [--threads 1]

Builds a small Llama-architecture model (random weights, tokenizer trained on the sample
data) and the variable-length sample dataset, then runs each side REPEATS times, interleaved
(A B, B A, ...), each run in its own subprocess so its peak RSS (``ru_maxrss`` from
``wait4``) is its own. Both sides train LoRA r16 on all linear layers with the same
hyperparameters on the same token sequences and labels (the baseline uses kubetune's own
tokenisation, so only batching and the training loop differ).

The kubetune side is the real product: the ``kubetune.trainer`` entry point on local paths
(checkpoints and evaluation off); its real tokens/s comes from the published manifest
(real tokens / training-loop seconds). The
baseline's comes from a callback around ``Trainer.train`` and a collator that counts real and
padded tokens. eta = real / padded tokens of the baseline's batches; the target is a
speed-up >= 0.9 / eta (the packing gain, less 10%) with no higher peak RSS. Prints the
figures; asserts nothing (not a test).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from kubetune.trainer import samples
from kubetune.trainer.data.formats import parse_lines
from kubetune.trainer.tiny import TinySpec, build_tiny_model
from kubetune.trainer.tokenization import tokenize_examples

REPO = Path(__file__).resolve().parent.parent
RANK, ALPHA, LR, BATCH, MAX_LEN, SEED = 16, 32.0, 2e-3, 8, 256, 5


def child_env(threads: int) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(
            str(REPO / part) for part in ("operator", "cluster", "trainer", "serving")
        ),
    }


def run_child(argv: list[str], *, threads: int, extra_env: dict[str, str] | None = None) -> str:
    """Run one measured child to completion and return its stdout. Each child reports its
    own peak RSS (``ru_maxrss`` of RUSAGE_SELF), so nothing of the driver is counted."""
    env = {**child_env(threads), **(extra_env or {})}
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({process.returncode}):\n{stderr[-3000:]}")
    return stdout


# ---------------------------------------------------------------- kubetune side


def kubetune_run(
    work: Path, *, model: Path, data: Path, steps: int, threads: int, index: int
) -> dict[str, Any]:
    out = work / f"kt-out-{index}"
    config = {
        "schemaVersion": 1,
        "jobNamespace": "bench",
        "jobName": "cpu",
        "run": f"r{index}",
        "generation": 1,
        "baseModelUri": str(model),
        "trainUri": str(data),
        "outputUri": f"{out}/",
        "validationSplit": 0.0,
        "lora": {"rank": RANK, "alpha": ALPHA, "dropout": 0.0, "targetModules": ["all-linear"]},
        "hyperparameters": {
            "maxSteps": steps,
            "batchSize": BATCH,
            "learningRate": LR,
            "maxSeqLength": MAX_LEN,
            "packing": True,
            "seed": SEED,
            "warmupRatio": 0.0,
        },
        "checkpointing": {"everySteps": 0, "everyMinutes": 0, "keep": 1},
    }
    path = work / f"kt-{index}.json"
    path.write_text(json.dumps(config))
    code = (
        "import resource, runpy, sys\n"
        f"sys.argv = ['kubetune.trainer', '--config', {str(path)!r}]\n"
        "try:\n"
        "    runpy.run_module('kubetune.trainer', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "print('RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    extra_env = {
        "KUBETUNE_WORK_DIR": str(work / f"kt-work-{index}"),
        "KUBETUNE_TERMINATION_LOG": str(work / f"kt-term-{index}"),
    }
    stdout = run_child([sys.executable, "-c", code], threads=threads, extra_env=extra_env)
    rss_kb = int(stdout.split("RSS_KB")[-1].split()[0])
    manifest = json.loads((out / f"r{index}" / "adapter" / "manifest.json").read_text())
    history = [
        json.loads(line) for line in (out / f"r{index}" / "metrics.jsonl").read_text().splitlines()
    ]
    return summarise(
        tokens=[h["tokens"] for h in history],
        seconds=[h["stepSeconds"] for h in history],
        cpu_seconds=[h["stepCpuSeconds"] for h in history],
        rss_kib=rss_kb,
        loss=manifest["metrics"]["trainLoss"],
    )


def summarise(
    *,
    tokens: list[int],
    seconds: list[float],
    cpu_seconds: list[float],
    rss_kib: float,
    loss: float,
    **extra: Any,
) -> dict[str, Any]:
    """Steady-state real tokens/s: step 1 (one-time warm-up such as lazy imports inside the
    first optimizer step) is left out on both sides; the all-steps figure is kept too.
    ``cpu_tokens_per_second`` divides by the process's CPU time over the same steps: on a
    shared machine wall-clock time also measures the neighbours, CPU time does not."""
    return {
        "tokens_per_second": sum(tokens[1:]) / sum(seconds[1:]),
        "cpu_tokens_per_second": sum(tokens[1:]) / sum(cpu_seconds[1:]),
        "all_steps_tokens_per_second": sum(tokens) / sum(seconds),
        "real_tokens": sum(tokens),
        "seconds": sum(seconds),
        "rss_mib": rss_kib / 1024,
        "loss": loss,
        **extra,
    }


# ---------------------------------------------------------------- baseline side


def baseline_child(model_dir: str, data: str, steps: int, threads: int) -> None:
    """A plain HF Trainer + PEFT run with padded batches; prints one JSON line."""
    with tempfile.TemporaryDirectory(prefix="hf-baseline-") as scratch:
        baseline_train(model_dir, data, steps=steps, threads=threads, scratch=Path(scratch))


def baseline_train(model_dir: str, data: str, *, steps: int, threads: int, scratch: Path) -> None:
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    examples = parse_lines(Path(data).read_bytes().splitlines()).examples
    tokenized, _ = tokenize_examples(examples, tokenizer, max_length=MAX_LEN)
    rows = [{"input_ids": t.input_ids, "labels": t.labels} for t in tokenized]
    real: list[int] = []
    padded: list[int] = []

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids, labels, mask = [], [], []
        for b in batch:
            pad = width - len(b["input_ids"])
            ids.append(b["input_ids"] + [tokenizer.pad_token_id] * pad)
            labels.append(b["labels"] + [-100] * pad)
            mask.append([1] * len(b["input_ids"]) + [0] * pad)
        real.append(sum(map(sum, mask)))
        padded.append(width * len(batch))
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }

    ends: list[float] = []
    cpu_ends: list[float] = []

    class Clock(TrainerCallback):
        """Step k takes from the end of step k-1 (or the start) to its own end: fetching and
        collating the batch, forward, backward, optimizer, and the Trainer's own overhead;
        the same span kubetune's ``stepSeconds`` measures."""

        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            real.clear()
            padded.clear()
            ends.append(time.perf_counter())
            cpu_ends.append(time.process_time())

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            ends.append(time.perf_counter())
            cpu_ends.append(time.process_time())

    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, local_files_only=True, dtype=torch.float32
    )
    model = get_peft_model(
        model,
        LoraConfig(
            r=RANK,
            lora_alpha=ALPHA,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    args = TrainingArguments(
        output_dir=str(scratch),
        per_device_train_batch_size=BATCH,
        max_steps=steps,
        learning_rate=LR,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        max_grad_norm=1.0,
        weight_decay=0.0,
        logging_steps=steps + 1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=SEED,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[Clock()]
    )
    output = trainer.train()
    seconds = [b - a for a, b in itertools.pairwise(ends)]
    print(
        json.dumps(
            summarise(
                tokens=real[: len(seconds)],
                seconds=seconds,
                cpu_seconds=[b - a for a, b in itertools.pairwise(cpu_ends)],
                rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                loss=output.training_loss,
                padded_tokens=sum(padded[: len(seconds)]),
            )
        )
    )


def baseline_run(*, model: Path, data: Path, steps: int, threads: int) -> dict[str, Any]:
    stdout = run_child(
        [
            sys.executable,
            __file__,
            "--baseline-child",
            str(model),
            str(data),
            str(steps),
            str(threads),
        ],
        threads=threads,
    )
    return dict(json.loads(stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------- driver


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-child":
        baseline_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kubetune-trainer-bench-") as folder:
        compare(args, Path(folder))
    return 0


def compare(args: argparse.Namespace, work: Path) -> None:
    """Build the model and data in ``work``, run both sides interleaved, print the figures."""
    spec = TinySpec(
        hidden=args.hidden,
        layers=args.layers,
        heads=8,
        kv_heads=4,
        intermediate=args.hidden * 11 // 4,
    )
    model = build_tiny_model(work / "model", spec)
    data = samples.write_samples(work / "data", seed=7)["train"]
    print(
        f"model: Llama hidden={spec.hidden} layers={spec.layers} vocab={spec.vocab} "
        f"(random weights); data: {data} (320 chat records); steps={args.steps} "
        f"batch={BATCH} maxSeqLength={MAX_LEN} LoRA r{RANK} all-linear; threads={args.threads}"
    )

    results: dict[str, list[dict[str, Any]]] = {"kubetune": [], "baseline": []}
    for repeat in range(args.repeats):
        order = ["kubetune", "baseline"] if repeat % 2 == 0 else ["baseline", "kubetune"]
        for side in order:
            if side == "kubetune":
                result = kubetune_run(
                    work,
                    model=model,
                    data=data,
                    steps=args.steps,
                    threads=args.threads,
                    index=repeat,
                )
            else:
                result = baseline_run(
                    model=model, data=data, steps=args.steps, threads=args.threads
                )
            results[side].append(result)
            print(
                f"  repeat {repeat + 1} {side:9s} real tokens/s {result['tokens_per_second']:9.0f}"
                f" per CPU-s {result['cpu_tokens_per_second']:7.0f}"
                f"  real tokens {result['real_tokens']:6d}  train s {result['seconds']:6.2f}"
                f"  peak RSS {result['rss_mib']:7.1f} MiB  loss {result['loss']:.3f}"
            )

    eta = statistics.mean(r["real_tokens"] / r["padded_tokens"] for r in results["baseline"])
    target = 0.9 / eta
    kt_rss = max(r["rss_mib"] for r in results["kubetune"])
    base_rss = max(r["rss_mib"] for r in results["baseline"])
    print()
    for label, key in (("wall-clock", "tokens_per_second"), ("CPU-time", "cpu_tokens_per_second")):
        kt = statistics.median(r[key] for r in results["kubetune"])
        base = statistics.median(r[key] for r in results["baseline"])
        speedup = kt / base
        print(
            f"{label:10s} real tokens/s, median: kubetune (packed) {kt:8.0f}   "
            f"HF Trainer (padded) {base:8.0f}   speed-up {speedup:.2f}x "
            f"{'MET' if speedup >= target else 'NOT MET'}"
        )
    print(
        f"eta (baseline real/padded tokens): {eta:.3f}   target speed-up >= 0.9/eta = {target:.2f}x"
    )
    print(
        f"peak RSS: kubetune {kt_rss:.1f} MiB, baseline {base_rss:.1f} MiB, ratio "
        f"{kt_rss / base_rss:.2f} ({'not higher' if kt_rss <= base_rss else 'HIGHER'})"
    )


if __name__ == "__main__":
    sys.exit(main())
