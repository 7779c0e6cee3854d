"""``kubetune submit``: check and upload local datasets, then create or update a FineTuneJob."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

from kubetune.api.constants import SUPPORTED_LORA_RANKS
from kubetune.api.training import spec_hash
from kubetune.cli import dataset
from kubetune.cli import finetunejob as ftj
from kubetune.cli.commands.watch import follow
from kubetune.cli.errors import EXIT_FAILED, CliError
from kubetune.cli.kube import FINETUNEJOBS
from kubetune.cli.session import Session
from kubetune.cli.views import verdict


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CliError(f"-f {path}: no such file")
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except UnicodeDecodeError as err:
        raise CliError(f"-f {path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except yaml.YAMLError as err:
        raise CliError(f"-f {path}: not valid YAML: {' '.join(str(err).split())}") from err
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == ftj.KIND]
    if len(jobs) != 1:
        raise CliError(f"-f {path}: expected one {ftj.KIND}, found {len(jobs)}")
    return jobs[0]


@click.command()
@click.argument("name", required=False)
@click.option(
    "-f",
    "--filename",
    type=click.Path(path_type=Path, dir_okay=False),
    help="FineTuneJob manifest to start from; flags override its fields. Dataset fields may "
    "name local files (relative to the manifest).",
)
@click.option("--base-model", metavar="URI", help="spec.baseModel.uri (s3:// or pvc://).")
@click.option("--train", metavar="FILE|URI", help="spec.dataset.train: a local file is uploaded.")
@click.option("--validation", metavar="FILE|URI", help="spec.dataset.validation.")
@click.option("--test", metavar="FILE|URI", help="spec.evaluation.testSet (held-out prompts).")
@click.option(
    "--validation-split", type=click.FloatRange(0, 0.5), help="spec.dataset.validationSplit."
)
@click.option("--method", type=click.Choice(["lora", "qlora", "full"]), help="spec.method.")
@click.option(
    "--rank", type=click.Choice([str(r) for r in SUPPORTED_LORA_RANKS]), help="spec.lora.rank."
)
@click.option("--alpha", type=float, help="spec.lora.alpha.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Training epochs.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), help="Peak LR.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Per-device batch size.")
@click.option("--max-seq-length", type=click.IntRange(min=16), help="Tokens per sequence.")
@click.option("--gpus", type=click.IntRange(min=0), help="spec.resources.gpus per node.")
@click.option("--cpu", help="spec.resources.cpu (e.g. 8).")
@click.option("--memory", help="spec.resources.memory (e.g. 64Gi).")
@click.option(
    "--output",
    metavar="URI",
    help="spec.output.uri (default: s3://adapters/<namespace>/<name>/).",
)
@click.option(
    "--data-uri",
    metavar="URI",
    help="Where local datasets are uploaded (default: s3://datasets/<namespace>/<name>/); each "
    "file goes under a folder named after its SHA-256.",
)
@click.option("--dry-run", is_flag=True, help="Print the manifest; upload and apply nothing.")
@click.option("--force", is_flag=True, help="Take over fields another field manager owns.")
@click.option("--watch", "then_watch", is_flag=True, help="Then follow the run (as `watch`).")
@click.pass_obj
def submit(
    session: Session,
    /,
    *,
    name: str | None,
    filename: Path | None,
    output: str | None,
    data_uri: str | None,
    dry_run: bool,
    force: bool,
    then_watch: bool,
    **values: Any,
) -> None:
    """Create or update the FineTuneJob NAME from flags and/or a manifest.

    Local dataset files are checked with the trainer's validation first (nothing is uploaded
    or applied while a file has problems), then uploaded to object storage under their
    SHA-256, so re-submitting unchanged data changes nothing and new data starts a new run.
    The object is applied server-side under the field manager kubetune-cli.

    \b
    kubetune submit support --base-model s3://models/llama-3.1-8b/ --train train.jsonl \\
        --test test.jsonl --epochs 3 --gpus 1
    kubetune submit -f finetunejob.yaml --train data/v4/train.jsonl --watch
    """
    manifest = _read_manifest(filename) if filename else None
    manifest_meta = (manifest or {}).get("metadata")
    manifest_ns = manifest_meta.get("namespace") if isinstance(manifest_meta, dict) else None
    # -n wins (build() refuses a contradicting manifest); then the manifest's own namespace.
    namespace = session.namespace_flag or manifest_ns or session.namespace
    if values.get("rank") is not None:
        values["rank"] = int(values["rank"])
    spec_output = (((manifest or {}).get("spec") or {}).get("output") or {}).get("uri")
    if output is None and not spec_output:
        default_name = name or ((manifest or {}).get("metadata") or {}).get("name") or "unnamed"
        output = f"s3://adapters/{namespace}/{default_name}/"
    doc = ftj.build(
        name=name, namespace=namespace, manifest=manifest, flags=ftj.Flags(output=output, **values)
    )
    final_name = doc["metadata"]["name"]
    prefix = data_uri or f"s3://datasets/{namespace}/{final_name}/"
    analyses = _check_local_datasets(session, doc, values=values, manifest_path=filename)
    for role, analysis in analyses.items():
        ftj.set_dataset(doc, role, ftj.dataset_uri(prefix, role=role, sha256=analysis.sha256))
    if dry_run:
        if analyses:
            session.err.print(
                f"dry run: {len(analyses)} local dataset file(s) not uploaded; the manifest "
                "points where `kubetune submit` uploads them"
            )
        click.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)
        return
    kube = session.kube
    _upload(session, doc, analyses, prefix)
    before = kube.get_or_none(FINETUNEJOBS, final_name, namespace)
    after = kube.apply(doc, force=force)
    session.out.print(f"finetunejob {namespace}/{final_name} {_outcome(before, after)}")
    if then_watch:
        code = follow(session, final_name, namespace=namespace, timeout=None, interval=2.0)
        if code:
            raise SystemExit(code)


def _outcome(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    """What the apply did, in the operator's terms: only a change of the training-relevant
    spec starts a run (``kubetune.api.training``)."""
    generation = after["metadata"].get("generation")
    if before is None:
        return f"created (generation {generation}): its first run starts"
    if spec_hash(before.get("spec") or {}) != spec_hash(after.get("spec") or {}):
        return f"updated to generation {generation}: a new run starts"
    if before["metadata"].get("generation") != generation:
        return f"updated to generation {generation}: operational fields only, no new run"
    return f"unchanged (generation {generation}): no new run"


def _check_local_datasets(
    session: Session,
    doc: dict[str, Any],
    *,
    values: dict[str, Any],
    manifest_path: Path | None,
) -> dict[str, dataset.Analysis]:
    """Validate every local dataset file; exit 1 (nothing uploaded or applied) on problems.
    Paths from flags are relative to the working directory, from the manifest to its folder."""
    analyses = {}
    declared = str(((doc["spec"].get("dataset") or {}).get("format")) or "auto")
    for role, value in ftj.local_datasets(doc).items():
        from_flag = values.get(role) is not None
        path = Path(value)
        if not from_flag and manifest_path is not None:
            path = manifest_path.parent / value
        # As the trainer: the declared format for train and validation; the test set is
        # always auto-detected (it needs prompts and reference answers).
        fmt = "auto" if role == "test" else declared
        analysis = dataset.analyse(path, fmt=fmt, field=ftj.field_name(role))
        if not analysis.ok:
            dataset.render(session.err, analysis, title=f"{ftj.field_name(role)} ({path})")
            session.err.print(
                verdict(False, f"{path}: fix the problems above; nothing was submitted")
            )
            raise SystemExit(EXIT_FAILED)
        analyses[role] = analysis
    return analyses


def _upload(
    session: Session, doc: dict[str, Any], analyses: dict[str, dataset.Analysis], prefix: str
) -> None:
    if not analyses:
        return
    store = session.store(doc["spec"])
    for role, analysis in analyses.items():
        uri = ftj.dataset_uri(prefix, role=role, sha256=analysis.sha256)
        if store.exists(uri):
            session.err.print(f"{role}: {analysis.path} already at {uri}")
            continue
        store.upload(analysis.path, uri)
        records = len(analysis.kept)
        session.err.print(f"{role}: uploaded {analysis.path} ({records} records) to {uri}")
