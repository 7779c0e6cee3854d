"""The training objective as a module: summed next-token loss over answer tokens only.

Wrapping the loss in an ``nn.Module`` lets DDP wrap the whole computation (its gradient
synchronisation is prepared in ``forward``). For architectures whose output head is a plain
linear layer, the head runs only on positions whose next token is scored: prompt tokens never
become vocabulary-sized logits, which saves memory and time (most of it on large vocabularies).
Other architectures (logit soft-capping, scaling) fall back to the model's full forward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

from kubetune.trainer.model import unwrap

IGNORE_INDEX = -100
PLAIN_HEAD_MODEL_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi3", "olmo2"}
)
"""Model types whose logits are exactly ``lm_head(final hidden state)``."""


class CausalLMObjective(nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        inner = unwrap(model)
        self._selective = getattr(inner.config, "model_type", "") in PLAIN_HEAD_MODEL_TYPES
        # A plain list keeps these out of the module tree: they are already inside ``model``.
        self._parts: list[Any] = (
            [inner.get_decoder(), inner.get_output_embeddings()] if self._selective else []
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        *,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sum (not mean) of the token losses, in fp32; divide by the label count outside."""
        targets = labels[:, 1:]
        scored = targets != IGNORE_INDEX
        if self._selective:
            decoder, head = self._parts
            hidden = decoder(
                input_ids=input_ids,
                position_ids=position_ids,
                attention_mask=attention_mask,
                use_cache=False,
            ).last_hidden_state
            logits = head(hidden[:, :-1][scored])
        else:
            logits = self.model(
                input_ids=input_ids,
                position_ids=position_ids,
                attention_mask=attention_mask,
                use_cache=False,
            ).logits[:, :-1][scored]
        return F.cross_entropy(logits.float(), targets[scored], reduction="sum")
