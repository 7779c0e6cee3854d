"""Benchmark for one GPU (prepared for an H200): kubetune's packed LoRA step against a plain
Hugging Face + PEFT step with padded batches, same model, same data, same process.

    python bench/trainer_gpu.py [--preset 8b|1b|tiny] [--steps 12] [--repeats 2]
                                [--examples 8] [--max-len 4096] [--attn sdpa]
                                [--no-grad-ckpt] [--device cuda]

A random-initialised Llama of a real shape (``8b``: Llama-3-8B, ``1b``: Llama-3.2-1B; ``tiny``
only checks the script on CPU) in bf16, LoRA r16 on all linear layers (PEFT), AdamW (fused
on CUDA), autocast bf16, gradient checkpointing on by default (the padded baseline does not
fit an 8B model's activations otherwise). Synthetic chat-like examples: lengths drawn from a
log-normal distribution (seeded) up to ``--max-len``, the first 40% of each masked as prompt.

* kubetune: ``packing.pack`` (one row per step, position ids restart per example, no mask),
  the trainer's ``kubetune_packed`` attention (PyTorch flash ``varlen_attn`` on CUDA) and
  ``CausalLMObjective`` (the output head only on scored tokens), as the trainer runs them.
* baseline: ``packing.pad`` batches with an attention mask and ``model(..., labels=...)``
  (full logits, transformers' loss; a padding mask makes the attention plain SDPA), the way
  a plain HF/PEFT loop trains.

Both run interleaved (A B, B A, ...) after warm-up steps; reports real (non-padding) tokens/s,
MFU and peak memory for each, and the ratios. MFU counts useful FLOPs per real token as
4*N_matmul (frozen linear layers incl. the head: forward + input gradient) + 6*N_lora +
attention (12 * layers * hidden * mean causal context within each example), over the bf16
dense peak of the device (H200 SXM: 989 TFLOP/s). Not a test; it asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig

from kubetune.trainer import attention
from kubetune.trainer.objective import CausalLMObjective
from kubetune.trainer.packing import IGNORE_INDEX, Batch, pack, pad, to_tensors

PRESETS: dict[str, dict[str, Any]] = {
    "8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
    },
    "1b": {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
    },
    "tiny": {
        "hidden_size": 128,
        "intermediate_size": 352,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 2048,
    },
}
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0}


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


def synthetic_examples(count: int, *, max_len: int, vocab: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        length = int(min(max_len, max(64, rng.lognormvariate(math.log(max_len / 4), 0.6))))
        ids = [rng.randrange(3, vocab) for _ in range(length)]
        prompt = int(length * 0.4)
        out.append(Example(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return out


def mean_context(batch_examples: list[Example]) -> float:
    """Mean number of keys each real token attends to (causal, inside its own example)."""
    total = sum(len(e.input_ids) * (len(e.input_ids) + 1) / 2 for e in batch_examples)
    return total / sum(len(e.input_ids) for e in batch_examples)


def flops_per_token(model: Any, config: LlamaConfig, context: float) -> float:
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    # Frozen linear layers (PEFT keeps each as ``<name>.base_layer``) and the output head.
    matmul = sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and "lora_" not in name
    )
    attention = 12 * config.num_hidden_layers * config.hidden_size * context
    return 4 * matmul + 6 * lora + attention


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="8b")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per repeat and side")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--examples", type=int, default=8, help="examples per step")
    parser.add_argument("--max-len", type=int, default=4096)
    parser.add_argument(
        "--attn",
        default=attention.NAME,
        help=f"{attention.NAME} (the trainer's: flash varlen on CUDA) | sdpa | flash_attention_2",
    )
    parser.add_argument("--no-grad-ckpt", action="store_true")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = torch.bfloat16
    config = LlamaConfig(
        **PRESETS[args.preset],
        max_position_embeddings=max(8192, args.max_len),
        tie_word_embeddings=False,
        use_cache=False,
    )
    torch.manual_seed(0)
    began = time.perf_counter()
    with device:
        model = AutoModelForCausalLM.from_config(config, attn_implementation=args.attn, dtype=dtype)
    model = get_peft_model(
        model,
        LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    if not args.no_grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, fused=device.type == "cuda")
    objective = CausalLMObjective(model)
    print(
        f"model {args.preset}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B params, "
        f"LoRA {sum(p.numel() for p in trainable) / 1e6:.1f}M trainable, built in "
        f"{time.perf_counter() - began:.0f}s; attn={args.attn} "
        f"grad_ckpt={not args.no_grad_ckpt} device={device}"
    )

    total = (args.warmup + args.steps) * args.repeats * 2
    examples = synthetic_examples(
        total * args.examples, max_len=args.max_len, vocab=config.vocab_size, seed=1
    )
    cursor = 0

    def next_examples() -> list[Example]:
        nonlocal cursor
        chunk = examples[cursor : cursor + args.examples]
        cursor += args.examples
        return chunk

    def autocast() -> Any:
        return torch.autocast(device_type=device.type, dtype=dtype)

    # As the trainer does: with per-example attention a micro-batch is one row.
    capacity = args.max_len * (args.examples if args.attn == attention.NAME else 1)

    def kubetune_step(chunk: list[Example]) -> Batch:
        batch = pack(chunk, capacity=capacity, pad_id=0)
        with autocast():
            loss = objective(**to_tensors(batch, device)) / batch.label_tokens
        loss.backward()
        return batch

    def baseline_step(chunk: list[Example]) -> Batch:
        batch = pad(chunk, pad_id=0)
        tensors = to_tensors(batch, device)
        with autocast():
            loss = model(
                input_ids=tensors["input_ids"],
                attention_mask=tensors["attention_mask"],
                labels=tensors["labels"],
                use_cache=False,
            ).loss
        loss.backward()
        return batch

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def measure(step_fn: Any) -> dict[str, float]:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            step_fn(next_examples())
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        synchronize()
        real = padded = 0
        context: list[float] = []
        start = time.perf_counter()
        for _ in range(args.steps):
            chunk = next_examples()
            batch = step_fn(chunk)
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            real += batch.real_tokens
            padded += batch.padded_tokens
            context.append(mean_context(chunk))
        synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
        return {
            "tokens_per_second": real / seconds,
            "eta": real / padded,
            "context": statistics.mean(context),
            "peak_gib": peak,
        }

    results: dict[str, list[dict[str, float]]] = {"kubetune": [], "baseline": []}
    for repeat in range(args.repeats):
        order = ["kubetune", "baseline"] if repeat % 2 == 0 else ["baseline", "kubetune"]
        for side in order:
            try:
                result = measure(kubetune_step if side == "kubetune" else baseline_step)
            except torch.cuda.OutOfMemoryError:
                print(f"  repeat {repeat + 1} {side:9s} OUT OF MEMORY")
                optimizer.zero_grad(set_to_none=True)
                continue
            results[side].append(result)
            print(
                f"  repeat {repeat + 1} {side:9s} real tokens/s {result['tokens_per_second']:10.0f}"
                f"  real/padded {result['eta']:.3f}  peak {result['peak_gib']:6.1f} GiB"
            )

    peak = peak_tflops(device)
    summary = {}
    for side, runs in results.items():
        if not runs:
            continue
        tps = statistics.median(r["tokens_per_second"] for r in runs)
        flops = flops_per_token(model, config, statistics.mean(r["context"] for r in runs))
        mfu = tps * flops / (peak * 1e12) if peak else None
        summary[side] = tps
        print(
            f"{side:9s} median real tokens/s {tps:10.0f}  model TFLOP/s {tps * flops / 1e12:7.1f}"
            f"  MFU {'n/a' if mfu is None else f'{mfu:.1%}'}"
            f"  peak memory {max(r['peak_gib'] for r in runs):6.1f} GiB"
        )
    if len(summary) == 2:
        eta = statistics.mean(r["eta"] for r in results["baseline"])
        speedup = summary["kubetune"] / summary["baseline"]
        print(
            f"baseline eta (real/padded) {eta:.3f}; speed-up {speedup:.2f}x"
            f" (packing alone would give {1 / eta:.2f}x)"
        )
    print(f"MFU counts 4*N_matmul + 6*N_lora + attention per real token; peak {peak} TFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
