"""The CRDs against a real kube-apiserver: what admission accepts, rejects and defaults.

Covers: the example manifests are accepted and defaulted; a table of invalid manifests is
rejected with a message naming the offending field (schema, enum, bounds, CEL rules and
strict unknown-field checks); `kubectl explain` teaches nested fields; re-applying a
manifest with server-side apply changes nothing; status is writable only through the
status subresource; printer columns show up in `kubectl get`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.cluster.kubectl import Kubectl

REPO = Path(__file__).resolve().parents[2]
FTJ = yaml.safe_load((REPO / "examples" / "finetunejob.yaml").read_text())
ADEP = yaml.safe_load((REPO / "examples" / "adapterdeployment.yaml").read_text())


def mutate(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Copy ``base`` with ``path`` (dotted, under spec) set to ``value`` (``...`` deletes)."""
    doc = copy.deepcopy(base)
    node = doc["spec"]
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return doc


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = base
    for path, value in changes.items():
        doc = mutate(doc, path.replace("__", "."), value)
    return doc


# (id, manifest, text the error must contain: the field path, then the reason)
INVALID: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("missing-base-model", with_changes(FTJ, baseModel=...), ("spec.baseModel", "Required")),
    (
        "base-model-http-uri",
        with_changes(FTJ, baseModel__uri="https://hub/llama"),
        ("spec.baseModel.uri", "should match"),
    ),
    ("missing-train", with_changes(FTJ, dataset__train=...), ("spec.dataset.train", "Required")),
    (
        "train-file-uri",
        with_changes(FTJ, dataset__train="file:///data/train.jsonl"),
        ("spec.dataset.train",),
    ),
    (
        "unknown-method",
        with_changes(FTJ, method="adapter"),
        ("spec.method", "Unsupported value", '"lora"'),
    ),
    (
        "rank-not-servable",
        with_changes(FTJ, lora__rank=12),
        ("spec.lora.rank", "Unsupported value"),
    ),
    ("dropout-too-high", with_changes(FTJ, lora__dropout=1.5), ("spec.lora.dropout",)),
    (
        "zero-learning-rate",
        with_changes(FTJ, hyperparameters__learningRate=0),
        ("spec.hyperparameters.learningRate",),
    ),
    (
        "zero-batch-size",
        with_changes(FTJ, hyperparameters__batchSize=0),
        ("spec.hyperparameters.batchSize",),
    ),
    (
        "qlora-on-cpu",
        with_changes(FTJ, method="qlora", resources__gpus=0),
        ("spec.method", "qlora needs resources.gpus >= 1"),
    ),
    (
        "qlora-multi-node",
        with_changes(FTJ, method="qlora", resources__nodes=2),
        ("spec.resources.nodes", "qlora runs on one node"),
    ),
    (
        "output-not-s3",
        with_changes(FTJ, output__uri="pvc://adapters/out"),
        ("spec.output.uri", "should match"),
    ),
    (
        "split-too-large",
        with_changes(FTJ, dataset__validation=..., dataset__validationSplit=0.9),
        ("spec.dataset.validationSplit",),
    ),
    (
        "bad-memory-quantity",
        with_changes(FTJ, resources__memory="lots"),
        ("spec.resources.memory",),
    ),
    ("negative-gpus", with_changes(FTJ, resources__gpus=-1), ("spec.resources.gpus",)),
    (
        "match-metric-without-test-set",
        with_changes(FTJ, evaluation={"metrics": ["exactMatch"]}),
        ("spec.evaluation.testSet", "need evaluation.testSet"),
    ),
    (
        "validation-equals-train",
        with_changes(FTJ, dataset__validation=FTJ["spec"]["dataset"]["train"]),
        ("spec.dataset.validation", "must differ"),
    ),
    (
        "endpoint-without-scheme",
        with_changes(FTJ, storage={"endpoint": "object-store:8333"}),
        ("spec.storage.endpoint",),
    ),
    (
        "unknown-field",
        with_changes(FTJ, lora__ranks=16),
        ("spec.lora.ranks", "field not declared in schema"),
    ),
    (
        "adep-two-sources",
        with_changes(ADEP, source__uri="s3://adapters/a/run-1/adapter/"),
        ("spec.source", "exactly one of source.fineTuneJobRef and source.uri"),
    ),
    (
        "adep-no-source",
        with_changes(ADEP, source={}),
        ("spec.source", "exactly one of source.fineTuneJobRef and source.uri"),
    ),
    (
        "adep-unknown-engine",
        with_changes(ADEP, target__engine="tgi"),
        ("spec.target.engine", "Unsupported value"),
    ),
    (
        "adep-bad-adapter-name",
        with_changes(ADEP, adapterName="support assistant"),
        ("spec.adapterName", "should match"),
    ),
    (
        "adep-empty-gate",
        with_changes(ADEP, promotion__gates={"evalLoss": {}}),
        ("spec.promotion.gates[evalLoss]", "a gate needs min or max"),
    ),
    (
        "adep-negative-canary",
        with_changes(ADEP, promotion__canary={"replicas": -1}),
        ("spec.promotion.canary.replicas",),
    ),
]


@pytest.mark.parametrize(("case", "manifest", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_manifest_is_rejected_naming_the_field(
    crds: Kubectl, k: Kubectl, case: str, manifest: dict[str, Any], expected: tuple[str, ...]
) -> None:
    result = k.apply(manifest, check=False)
    assert result.returncode != 0, f"{case} was accepted"
    for text in expected:
        assert text in result.stderr, f"{case}: {text!r} not in {result.stderr!r}"
    kind = manifest["kind"].lower()
    assert k.run("get", kind, manifest["metadata"]["name"], check=False).returncode != 0


def test_examples_are_accepted_and_defaulted(crds: Kubectl, k: Kubectl) -> None:
    k.apply(FTJ)
    k.apply(ADEP)
    ftj = k.get("finetunejob", "support-assistant")["spec"]
    assert ftj["hyperparameters"]["lrScheduler"] == "cosine"
    assert ftj["baseModel"]["trustRemoteCode"] is False
    assert ftj["resources"]["gpuResourceName"] == "nvidia.com/gpu"
    assert ftj["checkpointing"] == {"everySteps": 100, "everyMinutes": 15, "keep": 2}
    assert ftj["retrain"] == {"onDatasetChange": False}
    adep = k.get("adapterdeployment", "support-assistant")["spec"]
    assert adep["promotion"]["canary"] == {"replicas": 1, "holdSeconds": 120}


def test_minimal_manifest_gets_every_default(crds: Kubectl, k: Kubectl) -> None:
    minimal = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "minimal"},
        "spec": {
            "baseModel": {"uri": "pvc://models/tiny"},
            "dataset": {"train": "s3://datasets/train.jsonl"},
            "output": {"uri": "s3://adapters/minimal/"},
        },
    }
    k.apply(minimal)
    spec = k.get("ftj", "minimal")["spec"]
    assert spec["method"] == "lora"
    assert spec["lora"] == {
        "rank": 16,
        "alpha": 32,
        "dropout": 0.05,
        "targetModules": ["all-linear"],
    }
    assert spec["resources"]["gpus"] == 1
    assert spec["dataset"]["format"] == "auto"
    assert spec["suspend"] is False


def test_server_side_apply_twice_changes_nothing(crds: Kubectl, k: Kubectl) -> None:
    k.apply(FTJ)
    first = k.get("ftj", "support-assistant")["metadata"]
    k.apply(FTJ)
    second = k.get("ftj", "support-assistant")["metadata"]
    assert second["resourceVersion"] == first["resourceVersion"]
    assert second["generation"] == first["generation"] == 1


def test_spec_change_bumps_generation(crds: Kubectl, k: Kubectl) -> None:
    k.apply(FTJ)
    k.apply(with_changes(FTJ, hyperparameters__epochs=4))
    assert k.get("ftj", "support-assistant")["metadata"]["generation"] == 2


def test_status_is_written_only_through_the_subresource(crds: Kubectl, k: Kubectl) -> None:
    k.apply(FTJ)
    status = json.dumps({"status": {"phase": "Running"}})
    k.run("patch", "ftj", "support-assistant", "--type=merge", "-p", status)
    assert "status" not in k.get("ftj", "support-assistant")
    k.run("patch", "ftj", "support-assistant", "--subresource=status", "--type=merge", "-p", status)
    obj = k.get("ftj", "support-assistant")
    assert obj["status"]["phase"] == "Running"
    # ... and the status subresource cannot change the spec.
    spec = json.dumps({"spec": {"method": "full"}})
    k.run("patch", "ftj", "support-assistant", "--subresource=status", "--type=merge", "-p", spec)
    assert k.get("ftj", "support-assistant")["spec"]["method"] == "lora"
    assert k.get("ftj", "support-assistant")["metadata"]["generation"] == 1


def test_status_phase_is_an_enum(crds: Kubectl, k: Kubectl) -> None:
    k.apply(FTJ)
    status = json.dumps({"status": {"phase": "Exploded"}})
    result = k.run(
        "patch",
        "ftj",
        "support-assistant",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
        check=False,
    )
    assert result.returncode != 0
    assert "status.phase" in result.stderr


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("ftj.spec.lora.rank", "--max-lora-rank"),
        ("ftj.spec.hyperparameters.packing", "attending only to itself"),
        ("ftj.spec.resources", "gpuResourceName"),
        ("adep.spec.promotion.canary.holdSeconds", "canary must stay healthy"),
        ("finetunejob.status.currentRun.progress", "tokensPerSecond"),
    ],
)
def test_kubectl_explain_teaches_nested_fields(crds: Kubectl, field: str, expected: str) -> None:
    out = " ".join(crds.run("explain", field).stdout.split())  # explain wraps lines
    assert expected in out


def test_printer_columns_and_category(crds: Kubectl, k: Kubectl) -> None:
    k.apply(FTJ)
    k.apply(ADEP)
    out = k.run("get", "ftj").stdout
    assert out.split("\n")[0].split() == ["NAME", "PHASE", "PROGRESS", "RUN", "ADAPTER", "AGE"]
    both = k.run("get", "kubetune", "-o", "name").stdout.split()
    assert sorted(both) == [
        "adapterdeployment.kubetune.io/support-assistant",
        "finetunejob.kubetune.io/support-assistant",
    ]
