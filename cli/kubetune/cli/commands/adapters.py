"""``kubetune adapters [NAME]``: adapter versions in object storage and where they serve.

Versions are the published ``adapter/manifest.json`` files under each FineTuneJob's
``spec.output.uri`` (a version exists only once its manifest does); the digest is the SHA-256
of the manifest bytes, as everywhere in kubetune. Serving roles come from the namespace's
AdapterDeployments: active, canary, previous (the rollback target) and failed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import click
from rich.table import Table

from kubetune.api import contract
from kubetune.cli.kube import ADAPTERDEPLOYMENTS, FINETUNEJOBS
from kubetune.cli.session import Session
from kubetune.cli.views import number, version

ROLES = (
    ("activeVersion", "active"),
    ("canary", "canary"),
    ("previousVersion", "previous"),
    ("failedVersion", "failed"),
)
MANIFEST_SUFFIX = f"/{contract.ADAPTER_DIR}/{contract.MANIFEST_FILE}"


def serving_roles(adeps: list[dict[str, Any]]) -> dict[str, list[str]]:
    """digest -> ["active on <deployment> (ready/desired) as <adapterName>", ...] (pure)."""
    roles: dict[str, list[str]] = {}
    for adep in adeps:
        status = adep.get("status") or {}
        spec = adep.get("spec") or {}
        target = (spec.get("target") or {}).get("deploymentName", "?")
        replicas = status.get("replicas") or {}
        for key, role in ROLES:
            digest = (status.get(key) or {}).get("digest")
            if not digest:
                continue
            text = f"{role} on {target}"
            if role == "active" and replicas:
                text += f" ({replicas.get('ready', 0)}/{replicas.get('desired', 0)} ready)"
            text += f" as {spec.get('adapterName', adep['metadata']['name'])}"
            roles.setdefault(digest, []).append(text)
    return roles


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@click.pass_obj
def adapters(session: Session, /, *, name: str | None, as_json: bool) -> None:
    """Adapter versions of NAME (or every FineTuneJob) with metrics and serving role."""
    namespace = session.namespace
    kube = session.kube
    jobs = (
        [kube.get(FINETUNEJOBS, name, namespace)]
        if name
        else kube.list_all(FINETUNEJOBS, namespace)
    )
    roles = serving_roles(kube.list_all(ADAPTERDEPLOYMENTS, namespace))
    versions: list[dict[str, Any]] = []
    for job in jobs:
        spec = job.get("spec") or {}
        output = str((spec.get("output") or {}).get("uri", ""))
        if not output:
            continue
        store = session.store(spec)
        # <output>/<run>/adapter/manifest.json: one listing of the run folders, one read each.
        for run_folder in store.folders(output):
            uri = run_folder + MANIFEST_SUFFIX.lstrip("/")
            raw = store.read(uri)
            if raw is None:
                continue  # a run that published nothing (yet)
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            try:
                manifest = json.loads(raw)
            except ValueError:
                manifest = {}
            versions.append(
                {
                    "finetunejob": job["metadata"]["name"],
                    "version": version(digest),
                    "digest": digest,
                    "run": manifest.get("run", "?"),
                    "createdAt": manifest.get("createdAt", ""),
                    "uri": uri.removesuffix(contract.MANIFEST_FILE),
                    "metrics": manifest.get("metrics") or {},
                    "serving": roles.get(digest, []),
                }
            )
    versions.sort(key=lambda v: (v["finetunejob"], v["createdAt"]), reverse=True)
    if as_json:
        click.echo(json.dumps(versions, indent=2))
        return
    if not versions:
        what = f"finetunejob {namespace}/{name}" if name else f"namespace {namespace}"
        session.err.print(f"no published adapters for {what}")
        return
    table = Table(header_style="bold", box=None, pad_edge=False)
    columns = [
        "FINETUNEJOB",
        "VERSION",
        "RUN",
        "CREATED",
        "TRAIN LOSS",
        "EVAL LOSS",
        "PERPLEXITY",
        "EXACT MATCH",
        "SERVING",
    ]
    for column in columns:
        table.add_column(column, no_wrap=column != "SERVING")
    for v in versions:
        m = v["metrics"]
        table.add_row(
            v["finetunejob"],
            v["version"],
            v["run"],
            v["createdAt"] or "-",
            number(m.get(contract.METRIC_TRAIN_LOSS)),
            number(m.get(contract.METRIC_EVAL_LOSS)),
            number(m.get(contract.METRIC_PERPLEXITY)),
            number(m.get(contract.METRIC_EXACT_MATCH)),
            "; ".join(v["serving"]) or "-",
        )
    session.out.print(table)
