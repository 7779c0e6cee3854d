"""A CPU-tiny causal LM for tests, the demo and the serving team.

A Llama-architecture model with random weights (2 layers, hidden 64 by default) and a
byte-level BPE tokenizer trained on the sample dataset, with a ChatML chat template, saved in
standard Hugging Face format (``config.json``, ``model.safetensors``, ``tokenizer.json``,
``tokenizer_config.json``, chat template). Deterministic by seed.

    python -m kubetune.trainer.tiny --out DIR [--seed 0] [--hidden 64] [--layers 2]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.trainer import samples

BOS, EOS, PAD = "<s>", "<|im_end|>", "<pad>"
TURN_START = "<|im_start|>"
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 176
    vocab: int = 1024
    max_positions: int = 2048
    seed: int = 0


def build_tokenizer(texts: list[str], *, vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: PLC0415
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, TURN_START],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[TURN_START],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(out: Path, spec: TinySpec | None = None) -> Path:
    """Write the tiny model and its tokenizer to ``out`` and return it."""
    import torch  # noqa: PLC0415
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM  # noqa: PLC0415

    spec = spec or TinySpec()
    train, test = samples.generate()
    tokenizer = build_tokenizer(samples.corpus(train + test), vocab_size=spec.vocab)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=TinySpec.hidden)
    parser.add_argument("--layers", type=int, default=TinySpec.layers)
    args = parser.parse_args(argv)
    spec = TinySpec(hidden=args.hidden, layers=args.layers, seed=args.seed)
    path = build_tiny_model(args.out, spec)
    print(f"tiny model: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
