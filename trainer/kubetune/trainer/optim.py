"""Optimizer and learning-rate scheduler for the trainable parameters.

AdamW, fused on CUDA and CPU (one kernel for all parameters instead of a loop of small ones); weight
decay applies to matrices only, never to biases or norm weights. The schedule is
``schedule.lr_multiplier`` driven by a ``LambdaLR``, stepped once per optimizer step.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from kubetune.api.runconfig import Hyperparameters
from kubetune.trainer import schedule

MAX_GRAD_NORM = 1.0
"""Gradient clipping norm: protects short fine-tunes from one bad batch."""
BETAS = (0.9, 0.999)


def build_optimizer(
    parameters: dict[str, torch.Tensor], *, hp: Hyperparameters, device: torch.device
) -> torch.optim.AdamW:
    decay = [p for p in parameters.values() if p.ndim >= 2]
    no_decay = [p for p in parameters.values() if p.ndim < 2]
    groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": hp.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=hp.learning_rate, betas=BETAS, fused=device.type == "cuda")


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, hp: Hyperparameters, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    multiplier = functools.partial(
        schedule.lr_multiplier,
        total=total_steps,
        warmup=schedule.warmup_steps(total_steps, hp.warmup_ratio),
        kind=hp.lr_scheduler,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
