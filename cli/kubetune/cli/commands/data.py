"""``kubetune data check|clean|split FILE``: the trainer's data code on a local file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from kubetune.cli import dataset
from kubetune.cli.errors import EXIT_FAILED, CliError
from kubetune.cli.session import Session
from kubetune.cli.views import verdict
from kubetune.trainer.data.formats import FORMATS
from kubetune.trainer.data.split import split as split_examples

FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="Record format (auto: detected from the records' keys, as the trainer does).",
)
FILE = click.argument("file", type=click.Path(path_type=Path, dir_okay=False))


@click.group()
def data() -> None:
    """Check, clean and split JSONL golden examples with the trainer's own code."""


@data.command()
@FILE
@FORMAT
@click.option(
    "--tokenizer",
    type=click.Path(path_type=Path, file_okay=False),
    help="Base-model folder with the tokenizer: adds token lengths (chat template included).",
)
@click.option(
    "--max-seq-length",
    type=click.IntRange(min=16),
    default=2048,
    show_default=True,
    help="Count records longer than this many tokens (with --tokenizer).",
)
@click.option("--strict", is_flag=True, help="Also fail on duplicates and conflicting answers.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def check(
    session: Session,
    /,
    *,
    file: Path,
    fmt: str,
    tokenizer: Path | None,
    max_seq_length: int,
    strict: bool,
    as_json: bool,
) -> None:
    """Validate FILE: every problem with its line, duplicates, conflicts and statistics.

    Exits 1 when the trainer would reject the file (or, with --strict, when it has
    duplicates or prompts with conflicting answers).
    """
    analysis = dataset.analyse(file, fmt=fmt)
    if tokenizer is not None and analysis.kept:
        dataset.token_lengths(analysis, tokenizer, max_length=max_seq_length)
    cleaning = analysis.cleaning
    failed = not analysis.ok or (
        strict and bool(cleaning.duplicates_dropped or cleaning.conflicts_total)
    )
    if as_json:
        click.echo(json.dumps({**analysis.section(), "ok": not failed}, indent=2))
    else:
        dataset.render(session.out, analysis)
        if failed:
            what = (
                f"{analysis.parsed.problems_total} problems"
                if analysis.parsed.problems_total
                else "no usable records"
                if not analysis.kept
                else "duplicates or conflicting answers (--strict)"
            )
            session.out.print(verdict(False, f"{file}: {what}"))
        else:
            session.out.print(verdict(True, f"{file}: {len(analysis.kept)} records ready to train"))
    if failed:
        raise SystemExit(EXIT_FAILED)


def _checked(session: Session, file: Path, fmt: str) -> dataset.Analysis:
    analysis = dataset.analyse(file, fmt=fmt)
    if not analysis.ok:
        dataset.render(session.err, analysis)
        session.err.print(verdict(False, f"{file}: fix the problems above; nothing was written"))
        raise SystemExit(EXIT_FAILED)
    return analysis


def _write(path: Path, text: str, *, force: bool) -> None:
    if path.exists() and not force:
        raise CliError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@data.command()
@FILE
@FORMAT
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Where to write the cleaned records.",
)
@click.option("--force", is_flag=True, help="Overwrite --output.")
@click.pass_obj
def clean(session: Session, /, *, file: Path, fmt: str, output: Path, force: bool) -> None:
    """Write FILE without empty records and exact duplicates, whitespace trimmed.

    The trainer does the same cleaning on every run; a cleaned file shows what it trains on.
    Instruction records are written as the user/assistant conversations they train as.
    Refuses (exit 1) while FILE has problems.
    """
    analysis = _checked(session, file, fmt)
    _write(output, dataset.to_jsonl(analysis.kept), force=force)
    c = analysis.cleaning
    session.out.print(
        verdict(
            True,
            f"wrote {len(analysis.kept)} records to {output} "
            f"({len(c.duplicates_dropped)} duplicates and {len(c.empty_dropped)} empty records "
            f"dropped, {c.trimmed_records} trimmed; {c.conflicts_total} conflicting prompts kept)",
        )
    )


@data.command()
@FILE
@FORMAT
@click.option(
    "--validation",
    "fraction",
    type=click.FloatRange(0.0, 0.5, min_open=True),
    default=0.1,
    show_default=True,
    help="Share of records for validation (as spec.dataset.validationSplit).",
)
@click.option(
    "--seed",
    type=int,
    default=42,
    show_default=True,
    help="As spec.hyperparameters.seed: same records and seed, same split as the trainer's.",
)
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for train.jsonl and validation.jsonl.",
)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@click.pass_obj
def split(
    session: Session,
    /,
    *,
    file: Path,
    fmt: str,
    fraction: float,
    seed: int,
    output_dir: Path,
    force: bool,
) -> None:
    """Split FILE into train.jsonl and validation.jsonl exactly as the trainer would.

    The split ranks records by a hash of their content and the seed, so the same records and
    seed give the same split whatever the line order. Refuses (exit 1) while FILE has problems.
    """
    analysis = _checked(session, file, fmt)
    train, validation = split_examples(analysis.kept, fraction=fraction, seed=seed)
    for name in ("train.jsonl", "validation.jsonl"):
        if (output_dir / name).exists() and not force:
            raise CliError(f"{output_dir / name} exists; pass --force to overwrite it")
    _write(output_dir / "train.jsonl", dataset.to_jsonl(train), force=force)
    _write(output_dir / "validation.jsonl", dataset.to_jsonl(validation), force=force)
    session.out.print(
        verdict(
            True,
            f"{len(train)} records -> {output_dir / 'train.jsonl'}, "
            f"{len(validation)} -> {output_dir / 'validation.jsonl'} (seed {seed})",
        )
    )
