"""The run config: the trainer's only input, rendered by the operator into a ConfigMap.

It is plain JSON with a schema version, so the operator (no torch) and the trainer (no
Kubernetes client) share data, not Python state. ``RunConfig.from_dict`` validates a decoded
document and raises ``RunConfigError`` naming the offending field; unknown keys are tolerated
(a newer operator may add fields an older trainer ignores), a newer major schema is refused.

Credentials are never part of the run config: the trainer gets them as environment variables
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``) from a Secret, or from workload identity.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1


class RunConfigError(ValueError):
    """The run config is invalid; ``field`` is the dotted path of the offending key."""

    def __init__(self, field_path: str, problem: str) -> None:
        super().__init__(f"run config {field_path}: {problem}")
        self.field = field_path


@dataclass(frozen=True)
class StorageConfig:
    endpoint: str = ""
    """S3 endpoint URL; empty means boto3's default resolution (AWS_ENDPOINT_URL, then AWS)."""
    region: str = "us-east-1"
    addressing_style: str = "path"


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("all-linear",)


@dataclass(frozen=True)
class Hyperparameters:
    epochs: float = 3.0
    max_steps: int = 0
    learning_rate: float = 2.0e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_seq_length: int = 2048
    packing: bool = True
    gradient_checkpointing: bool = False
    precision: str = "auto"
    seed: int = 42


@dataclass(frozen=True)
class Checkpointing:
    every_steps: int = 100
    every_minutes: int = 15
    keep: int = 2


@dataclass(frozen=True)
class Evaluation:
    test_set: str = ""
    metrics: tuple[str, ...] = ("loss",)
    max_new_tokens: int = 128


@dataclass(frozen=True)
class Distributed:
    nodes: int = 1
    processes_per_node: int = 1
    """One process per GPU; 1 on CPU unless a test asks for more (gloo)."""


@dataclass(frozen=True)
class RunConfig:
    job_namespace: str
    job_name: str
    run: str
    """Run name, unique per FineTuneJob: objects land under ``output_uri/run/``."""
    generation: int
    base_model_uri: str
    train_uri: str
    output_uri: str
    """The job's output prefix (``s3://bucket/prefix/``); the run folder is under it."""
    trust_remote_code: bool = False
    validation_uri: str = ""
    validation_split: float = 0.1
    dataset_format: str = "auto"
    method: str = "lora"
    lora: LoraConfig = field(default_factory=LoraConfig)
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    checkpointing: Checkpointing = field(default_factory=Checkpointing)
    evaluation: Evaluation = field(default_factory=Evaluation)
    distributed: Distributed = field(default_factory=Distributed)
    storage: StorageConfig = field(default_factory=StorageConfig)
    gpus: int = 0
    schema_version: int = SCHEMA_VERSION
    kubetune_version: str = ""

    @property
    def run_uri(self) -> str:
        return f"{self.output_uri.rstrip('/')}/{self.run}/"

    # ------------------------------------------------------------------ codec

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = _camel(asdict(self))
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RunConfig:
        if not isinstance(doc, dict):
            raise RunConfigError("<root>", "must be a JSON object")
        version = doc.get("schemaVersion")
        if not isinstance(version, int):
            raise RunConfigError("schemaVersion", "missing or not an integer")
        if version > SCHEMA_VERSION:
            raise RunConfigError(
                "schemaVersion",
                f"{version} is newer than this trainer understands ({SCHEMA_VERSION}); "
                "upgrade the trainer image",
            )
        config: RunConfig = _build(cls, doc, "")
        config.validate()
        return config

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise RunConfigError("<root>", f"not valid JSON: {err}") from err
        return cls.from_dict(doc)

    # ------------------------------------------------------------------ rules

    def validate(self) -> None:
        """Cross-field rules the CRD cannot express or that a hand-written config may break."""
        for name, uri, schemes in (
            ("baseModelUri", self.base_model_uri, ("s3://", "pvc://", "/")),
            ("trainUri", self.train_uri, ("s3://", "pvc://", "/")),
            ("outputUri", self.output_uri, ("s3://", "/")),
        ):
            if not uri.startswith(schemes):
                raise RunConfigError(name, f"{uri!r} must start with one of {', '.join(schemes)}")
        if self.method not in ("lora", "qlora", "full"):
            raise RunConfigError("method", f"{self.method!r} is not lora, qlora or full")
        if self.dataset_format not in ("auto", "chat", "instruction", "completion"):
            raise RunConfigError("datasetFormat", f"unknown format {self.dataset_format!r}")
        if not 0 <= self.validation_split <= 0.5:
            raise RunConfigError("validationSplit", "must be between 0 and 0.5")
        hp = self.hyperparameters
        if hp.batch_size < 1:
            raise RunConfigError("hyperparameters.batchSize", "must be >= 1")
        if hp.learning_rate <= 0:
            raise RunConfigError("hyperparameters.learningRate", "must be > 0")
        if hp.epochs <= 0 and hp.max_steps <= 0:
            raise RunConfigError("hyperparameters.epochs", "set epochs > 0 or maxSteps > 0")
        if hp.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise RunConfigError("hyperparameters.precision", f"unknown {hp.precision!r}")
        if self.distributed.nodes < 1 or self.distributed.processes_per_node < 1:
            raise RunConfigError("distributed", "nodes and processesPerNode must be >= 1")
        if self.method == "qlora" and self.gpus < 1:
            raise RunConfigError("method", "qlora needs a CUDA GPU (gpus >= 1)")
        if not self.run or "/" in self.run:
            raise RunConfigError("run", "must be a non-empty name without '/'")


# ---------------------------------------------------------------- helpers


def _to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {_to_camel(k): _camel(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_camel(v) for v in value]
    return value


_EXPECTED: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


def _build(cls: type, doc: dict[str, Any], prefix: str) -> Any:
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        key = _to_camel(f.name)
        path = f"{prefix}{key}"
        if key not in doc:
            continue  # the dataclass default applies (or the required-field check below fails)
        value = doc[key]
        ftype = str(f.type)
        nested = _NESTED.get(ftype)
        if nested is not None:
            if not isinstance(value, dict):
                raise RunConfigError(path, "must be an object")
            kwargs[f.name] = _build(nested, value, f"{path}.")
        elif ftype.startswith("tuple"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RunConfigError(path, "must be a list of strings")
            kwargs[f.name] = tuple(value)
        else:
            expected = _EXPECTED[ftype]
            # bool is an int in Python; refuse true/false where a number is expected.
            if not isinstance(value, expected) or (ftype != "bool" and isinstance(value, bool)):
                raise RunConfigError(path, f"must be a {ftype}, got {type(value).__name__}")
            kwargs[f.name] = float(value) if ftype == "float" else value  # type: ignore[arg-type]
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing
        missing = [
            _to_camel(f.name)
            for f in fields(cls)
            if f.name not in kwargs and f.default is MISSING and f.default_factory is MISSING
        ]
        raise RunConfigError(f"{prefix}{missing[0] if missing else '?'}", "is required") from err


_NESTED: dict[str, type] = {
    "LoraConfig": LoraConfig,
    "Hyperparameters": Hyperparameters,
    "Checkpointing": Checkpointing,
    "Evaluation": Evaluation,
    "Distributed": Distributed,
    "StorageConfig": StorageConfig,
}
