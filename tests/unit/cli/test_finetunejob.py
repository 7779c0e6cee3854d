"""The FineTuneJob ``kubetune submit`` builds from a manifest and flags (pure)."""

from __future__ import annotations

import pytest

from kubetune.cli import finetunejob as ftj
from kubetune.cli.errors import CliError

pytestmark = pytest.mark.unit

FLAGS = ftj.Flags(
    base_model="s3://models/tiny/", train="data/train.jsonl", output="s3://adapters/x"
)


def test_flags_alone_make_a_complete_job() -> None:
    doc = ftj.build(name="support", namespace="acme", manifest=None, flags=FLAGS)
    assert doc["apiVersion"] == "kubetune.io/v1alpha1" and doc["kind"] == "FineTuneJob"
    assert doc["metadata"] == {"name": "support", "namespace": "acme"}
    assert doc["spec"] == {
        "baseModel": {"uri": "s3://models/tiny/"},
        "dataset": {"train": "data/train.jsonl"},
        "output": {"uri": "s3://adapters/x/"},
    }
    assert ftj.local_datasets(doc) == {"train": "data/train.jsonl"}


def test_flags_override_the_manifest_and_keep_the_rest() -> None:
    manifest = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "support", "labels": {"team": "cx"}},
        "spec": {
            "baseModel": {"uri": "s3://models/llama/"},
            "dataset": {"train": "s3://datasets/v3/train.jsonl", "validationSplit": 0.1},
            "hyperparameters": {"epochs": 3, "learningRate": 2e-4},
            "evaluation": {"testSet": "test.jsonl"},
            "output": {"uri": "s3://adapters/support/"},
        },
    }
    flags = ftj.Flags(epochs=1, rank=32, train="v4.jsonl")
    doc = ftj.build(name=None, namespace="acme", manifest=manifest, flags=flags)
    spec = doc["spec"]
    assert doc["metadata"]["labels"] == {"team": "cx"}
    assert spec["hyperparameters"] == {"epochs": 1, "learningRate": 2e-4}
    assert spec["lora"] == {"rank": 32}
    assert spec["dataset"] == {"train": "v4.jsonl", "validationSplit": 0.1}
    assert ftj.local_datasets(doc) == {"train": "v4.jsonl", "test": "test.jsonl"}
    assert manifest["spec"]["hyperparameters"]["epochs"] == 3  # the input is not modified

    ftj.set_dataset(doc, "test", "s3://datasets/acme/support/abc/test.jsonl")
    assert spec["evaluation"]["testSet"] == "s3://datasets/acme/support/abc/test.jsonl"
    assert ftj.local_datasets(doc) == {"train": "v4.jsonl"}


@pytest.mark.parametrize(
    ("name", "manifest", "flags", "message"),
    [
        (None, None, FLAGS, "no name: pass NAME or set metadata.name"),
        (
            "x",
            None,
            ftj.Flags(train="t", output="s3://a/"),
            "spec.baseModel.uri is missing: pass --base-model",
        ),
        (
            "x",
            None,
            ftj.Flags(base_model="s3://m/", output="s3://a/"),
            "spec.dataset.train is missing: pass --train",
        ),
        (
            "x",
            None,
            ftj.Flags(base_model="s3://m/", train="t"),
            "spec.output.uri is missing: pass --output",
        ),
        (
            "x",
            {"kind": "AdapterDeployment"},
            FLAGS,
            "the manifest is a AdapterDeployment, not a FineTuneJob",
        ),
        (
            "x",
            {"kind": "FineTuneJob", "apiVersion": "kubetune.io/v2"},
            FLAGS,
            "apiVersion kubetune.io/v2",
        ),
        ("x", {"kind": "FineTuneJob", "metadata": {"namespace": "other"}}, FLAGS, "pass -n other"),
        (
            "x",
            {"kind": "FineTuneJob", "metadata": "x"},
            FLAGS,
            "metadata must be a mapping",
        ),
        (
            "x",
            {"kind": "FineTuneJob", "spec": {"dataset": "s3://x"}},
            ftj.Flags(base_model="s3://m/", output="s3://a/"),
            "spec.dataset must be a mapping",
        ),
        (
            "x",
            {"kind": "FineTuneJob", "spec": {"dataset": "nope"}},
            FLAGS,
            "spec.dataset must be a mapping",
        ),
    ],
)
def test_mistakes_name_the_field(
    name: str | None, manifest: dict | None, flags: ftj.Flags, message: str
) -> None:
    with pytest.raises(CliError, match=message.replace("(", r"\(")):
        ftj.build(name=name, namespace="acme", manifest=manifest, flags=flags)


def test_uploads_are_named_after_their_content() -> None:
    digest = "0123456789abcdef" + "f" * 48
    assert (
        ftj.dataset_uri("s3://datasets/acme/support/", role="train", sha256=digest)
        == "s3://datasets/acme/support/0123456789abcdef/train.jsonl"
    )
