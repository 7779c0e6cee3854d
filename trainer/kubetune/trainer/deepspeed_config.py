"""DeepSpeed ZeRO configuration generated from the run config (pure; deepspeed not needed).

Adapters (LoRA/QLoRA) have few trainable parameters, so their optimizer state is small and
ZeRO-2 (shard optimizer state and gradients) is enough; full fine-tuning of a model that does
not fit replicated needs ZeRO-3 (shard the weights too). Batch sizes are explicit numbers
(DeepSpeed itself does not resolve the "auto" values some integrations accept) and must
satisfy ``train_batch_size = micro * accumulation * world_size``.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.runconfig import RunConfig
from kubetune.trainer.optim import BETAS, MAX_GRAD_NORM

BUCKET_SIZE = 200_000_000
"""Elements per reduce/all-gather bucket: large enough to keep NCCL busy, small enough for
memory headroom on 80 GB+ devices."""


def zero_stage(config: RunConfig) -> int:
    return 3 if config.method == "full" else 2


def world_size(config: RunConfig) -> int:
    return config.distributed.nodes * config.distributed.processes_per_node


def deepspeed_config(
    config: RunConfig, *, stage: int | None = None, bf16: bool = True
) -> dict[str, Any]:
    """A complete DeepSpeed JSON config for this run."""
    chosen = zero_stage(config) if stage is None else stage
    if chosen not in (2, 3):
        raise ValueError(f"ZeRO stage {chosen} is not generated; use 2 or 3")
    hp = config.hyperparameters
    micro = hp.batch_size
    accumulation = hp.gradient_accumulation_steps
    zero: dict[str, Any] = {
        "stage": chosen,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": BUCKET_SIZE,
    }
    if chosen == 2:
        zero.update(
            {
                "allgather_partitions": True,
                "allgather_bucket_size": BUCKET_SIZE,
                "reduce_scatter": True,
            }
        )
    else:
        zero.update(
            {
                "stage3_prefetch_bucket_size": BUCKET_SIZE // 4,
                "stage3_param_persistence_threshold": 1_000_000,
                "stage3_max_live_parameters": 1_000_000_000,
                "stage3_max_reuse_distance": 1_000_000_000,
                # The published model must be one plain safetensors file set, not shards
                # of ZeRO partitions.
                "stage3_gather_16bit_weights_on_model_save": True,
            }
        )
    return {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation,
        "train_batch_size": micro * accumulation * world_size(config),
        "gradient_clipping": MAX_GRAD_NORM,
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": False},
        "zero_optimization": zero,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": hp.learning_rate,
                "betas": list(BETAS),
                "eps": 1e-8,
                "weight_decay": hp.weight_decay,
            },
        },
        "steps_per_print": 1_000_000,  # kubetune reports progress itself
        "wall_clock_breakdown": False,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m kubetune.trainer.deepspeed_config --config run-config.json [--stage 3]``"""
    import argparse  # noqa: PLC0415 - only the command line needs it
    import json  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    parser = argparse.ArgumentParser(description="Print the DeepSpeed config of a run config.")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--stage", type=int, choices=(2, 3))
    parser.add_argument("--fp32", action="store_true", help="disable bf16")
    args = parser.parse_args(argv)
    config = RunConfig.from_json(args.config.read_text())
    print(json.dumps(deepspeed_config(config, stage=args.stage, bf16=not args.fp32), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
