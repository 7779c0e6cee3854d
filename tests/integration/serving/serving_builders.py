"""Builders for the serving tests and the serving benchmark: a CPU-tiny random Llama with a
word-level tokenizer and a chat template, LoRA adapters made with PEFT (non-zero B so each one
changes the output), contract manifests, and publishing to the S3 test server.

Kept apart from the trainer's own tiny-model builder on purpose: the serving tests must not
depend on the trainer, only on the published format (``kubetune.api.contract``).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune.api.contract import MANIFEST_FILE, MANIFEST_KIND, MANIFEST_SCHEMA_VERSION

BASE_MODEL_NAME = "tiny-llama"
# A word-level vocabulary: every token decodes to a clean word, so answers compare as text.
_WORD_TEXT = (
    "the a an of to in on for with by from at as is are was were be been being have has had "
    "do does did will would can could should may might must shall not no yes and or but if "
    "then else when where why how what which who whom this that these those here there now "
    "adapter model serve route rollout version canary replica engine agent cluster pod node "
    "token prompt answer question support billing refund order ticket account password reset "
    "red green blue orange purple yellow black white gray silver gold copper iron steel glass "
    "one two three four five six seven eight nine ten eleven twelve hundred thousand million "
    "cat dog bird fish horse cow sheep goat mouse lion tiger bear wolf fox deer rabbit snake "
    "run walk jump swim fly read write speak listen think learn teach build break fix open "
    "close start stop move stay give take make find keep hold turn show hear feel seem leave"
)
WORDS = tuple(_WORD_TEXT.split())
SPECIALS = ("<unk>", "<s>", "</s>", "<pad>")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} "
    "{% endfor %}{% if add_generation_prompt %}assistant : {% endif %}"
)


def build_tiny_base(directory: Path, *, seed: int = 0, max_positions: int = 4096) -> Path:
    """A random 2-layer Llama (hidden 64) saved in Hugging Face format with its tokenizer."""
    import torch  # noqa: PLC0415 - heavy; only the builders need it
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: PLC0415
    from transformers import (  # noqa: PLC0415
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    vocab = {token: i for i, token in enumerate((*SPECIALS, *WORDS))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    # Larger than default init so greedy decoding is decisive (no near-ties between tokens).
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_lora_adapter(
    base_dir: Path,
    out_dir: Path,
    *,
    seed: int,
    rank: int = 8,
    alpha: int = 16,
    target_modules: tuple[str, ...] = ("q_proj", "v_proj", "o_proj", "down_proj"),
) -> Path:
    """A LoRA adapter in PEFT format whose B matrices are random, so it changes the output."""
    import torch  # noqa: PLC0415
    from peft import LoraConfig, get_peft_model  # noqa: PLC0415
    from transformers import LlamaForCausalLM  # noqa: PLC0415

    base = LlamaForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(target_modules))
    model = get_peft_model(base, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    model.save_pretrained(out_dir)
    return out_dir


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_bytes(adapter_dir: Path, *, run: str, base_model_name: str = BASE_MODEL_NAME) -> bytes:
    """A contract manifest (``kubetune.api.contract``) for the files in ``adapter_dir``."""
    files = {
        p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(adapter_dir.iterdir())
        if p.is_file() and p.name != MANIFEST_FILE
    }
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    manifest: dict[str, Any] = {
        "schemaVersion": MANIFEST_SCHEMA_VERSION,
        "kind": MANIFEST_KIND,
        "run": run,
        "job": {"namespace": "tests", "name": "serving", "generation": 1},
        "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "method": "lora",
        "baseModel": {
            "uri": f"s3://models/{base_model_name}/",
            "name": base_model_name,
            "architecture": "LlamaForCausalLM",
            "configSha256": "0" * 64,
        },
        "adapter": {
            "format": "peft",
            "rank": config["r"],
            "alpha": float(config["lora_alpha"]),
            "targetModules": sorted(config["target_modules"]),
            "dtype": "float32",
        },
        "files": files,
        "datasets": {},
        "hyperparameters": {},
        "metrics": {"trainLoss": 1.0, "evalLoss": 1.1},
        "evaluation": {},
        "versions": {"kubetune": "test"},
    }
    return json.dumps(manifest, indent=2, sort_keys=True).encode()


@dataclass(frozen=True)
class Published:
    name: str
    uri: str
    digest: str

    @property
    def version(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]

    @property
    def engine_name(self) -> str:
        return f"{self.name}--{self.version}"

    def ref(self) -> dict[str, str]:
        return {"version": self.version, "uri": self.uri, "digest": self.digest}


def publish_adapter(
    s3: Any,
    *,
    name: str,
    adapter_dir: Path,
    bucket: str,
    prefix: str,
    base_model_name: str = BASE_MODEL_NAME,
    corrupt: str | None = None,
) -> Published:
    """Upload an adapter and its manifest (last), as the trainer publishes it.

    ``corrupt`` names a file whose uploaded bytes differ from what the manifest records, as a
    damaged or tampered upload would.
    """
    prefix = prefix.strip("/") + "/"
    manifest = manifest_bytes(adapter_dir, run=prefix.strip("/"), base_model_name=base_model_name)
    for path in sorted(adapter_dir.iterdir()):
        if not path.is_file() or path.name == MANIFEST_FILE:
            continue
        data = path.read_bytes()
        if path.name == corrupt:
            flipped = bytearray(data)
            index = random.Random(0).randrange(len(flipped) // 2, len(flipped))
            flipped[index] ^= 0xFF
            data = bytes(flipped)
        s3.put_object(Bucket=bucket, Key=prefix + path.name, Body=data)
    s3.put_object(Bucket=bucket, Key=prefix + MANIFEST_FILE, Body=manifest, IfNoneMatch="*")
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    return Published(name=name, uri=f"s3://{bucket}/{prefix}", digest=digest)


def desired_json(*entries: dict[str, Any]) -> str:
    return json.dumps({"schemaVersion": 1, "adapters": list(entries)})


def entry(
    published: Published, *, canary: Published | None = None, pods: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One adapter of the desired set: ``published`` active, optionally a canary for ``pods``."""
    item: dict[str, Any] = {"name": published.name, "active": published.ref(), "canary": None}
    if canary is not None:
        item["canary"] = {**canary.ref(), "pods": list(pods)}
    return item
