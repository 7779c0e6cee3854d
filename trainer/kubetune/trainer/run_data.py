"""The data phase of a run: stage the datasets, parse/validate/clean/split them, tokenise,
and save the data report. Called by ``run``; the pure work is in ``kubetune.trainer.data``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api import contract
from kubetune.api.runconfig import RunConfig
from kubetune.trainer.data import report as data_report
from kubetune.trainer.data.cleaning import clean
from kubetune.trainer.data.formats import Example, parse_lines
from kubetune.trainer.data.split import split
from kubetune.trainer.data.stats import length_stats
from kubetune.trainer.errors import InvalidDatasetError, InvalidModelError
from kubetune.trainer.staging import StagedFile, StagedModel, stage_dataset, stage_model
from kubetune.trainer.storage import NotFoundError, Store, join
from kubetune.trainer.tokenization import TokenizedExample, tokenize_examples


@dataclass
class Inputs:
    model: StagedModel
    datasets: dict[str, StagedFile]


@dataclass
class Dataset:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    report: dict[str, Any]
    formats: dict[str, str]


def stage_base_model(config: RunConfig, *, store: Store, work: Path) -> StagedModel:
    try:
        return stage_model(
            store,
            config.base_model_uri,
            dest=work / "model",
            allow_code=config.trust_remote_code,
        )
    except NotFoundError as err:
        raise InvalidModelError(f"base model {config.base_model_uri} does not exist") from err


def stage_data(config: RunConfig, *, store: Store, work: Path) -> dict[str, StagedFile]:
    folder = work / "data"
    datasets = {
        "train": stage_dataset(store, config.train_uri, dest=folder / "train.jsonl", role="train")
    }
    if config.validation_uri:
        datasets["validation"] = stage_dataset(
            store, config.validation_uri, dest=folder / "validation.jsonl", role="validation"
        )
    if config.evaluation.test_set:
        datasets["test"] = stage_dataset(
            store, config.evaluation.test_set, dest=folder / "test.jsonl", role="test"
        )
    return datasets


def prepare_data(config: RunConfig, datasets: dict[str, StagedFile]) -> Dataset:
    sections: dict[str, dict[str, Any]] = {}
    cleaned: dict[str, list[Example]] = {}
    formats: dict[str, str] = {}
    failed = False
    for role, staged in datasets.items():
        # The test set is always chat/instruction: it needs prompts and reference answers.
        fmt = config.dataset_format if role != "test" else "auto"
        parsed = parse_lines(staged.path.read_bytes().splitlines(), fmt=fmt)
        formats[role] = parsed.format
        kept, cleaning = clean(parsed.examples)
        cleaned[role] = kept
        sections[role] = data_report.source_section(
            parsed, role=role, uri=staged.uri, sha256=staged.sha256, cleaning=cleaning
        )
        failed = failed or parsed.problems_total > 0
        if parsed.problems_total == 0 and not kept:
            failed = True
            sections[role]["problems"].append(f"{role}: no usable records after cleaning")
            sections[role]["problemsTotal"] += 1
    if failed:
        report = data_report.assemble(ok=False, sources=sections)
        raise DataRejectedError(report, data_report.problem_summary(sections))

    train = cleaned["train"]
    validation = cleaned.get("validation", [])
    split_info: dict[str, Any]
    if "validation" in datasets:
        split_info = {"method": "file", "train": len(train), "validation": len(validation)}
    else:
        hp = config.hyperparameters
        train, validation = split(train, fraction=config.validation_split, seed=hp.seed)
        split_info = {
            "method": "hash",
            "fraction": config.validation_split,
            "seed": hp.seed,
            "train": len(train),
            "validation": len(validation),
        }
    report = data_report.assemble(ok=True, sources=sections, split=split_info)
    return Dataset(train, validation, cleaned.get("test", []), report, formats)


class DataRejectedError(InvalidDatasetError):
    def __init__(self, report: dict[str, Any], message: str) -> None:
        super().__init__(message)
        self.report = report


def upload_report(store: Store, *, config: RunConfig, report: dict[str, Any]) -> None:
    body = json.dumps(report, indent=2, sort_keys=True).encode()
    store.write_bytes(join(config.run_uri, contract.DATA_REPORT_FILE), body)


def tokenize(
    config: RunConfig, *, tokenizer: Any, dataset: Dataset
) -> dict[str, list[TokenizedExample]]:
    """Tokenise train and validation; adds token statistics to the data report."""
    max_length = config.hyperparameters.max_seq_length
    tokenized: dict[str, list[TokenizedExample]] = {}
    token_report: dict[str, Any] = {}
    for role, examples in (("train", dataset.train), ("validation", dataset.validation)):
        tokenized[role], rep = tokenize_examples(examples, tokenizer, max_length=max_length)
        token_report[role] = {
            **length_stats(rep.lengths, max_length=max_length),
            "droppedNoTargetAfterTruncation": len(rep.dropped_no_target),
            "droppedLines": rep.dropped_no_target[:50],
            "untrainedAssistantTurns": rep.untrained_turns,
        }
    dataset.report["tokens"] = token_report
    dataset.report["ok"] = bool(tokenized["train"])
    return tokenized
