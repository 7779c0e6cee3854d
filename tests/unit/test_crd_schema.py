"""The CRD definitions in kubetune.api.crds: documentation, drift and shape.

Covers: every field of both CRDs has a description; crds/ matches the Python source;
short names, category, printer columns and the status subresource are declared; the
rank enum is the engines' set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubetune.api import constants
from kubetune.api.crdgen import stale_files
from kubetune.api.crds import all_crds
from kubetune.api.schema import undocumented_fields

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_every_field_is_documented(name: str) -> None:
    crd = all_crds()[name]
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert undocumented_fields(root) == []


def test_committed_crds_match_the_python_source() -> None:
    assert stale_files(REPO / "crds") == [], "run `make crds`"


def test_committed_crds_are_valid_yaml_crds() -> None:
    for path in (REPO / "crds").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        assert doc["kind"] == "CustomResourceDefinition"
        assert doc["spec"]["group"] == constants.GROUP


@pytest.mark.parametrize(
    ("name", "short", "columns"),
    [
        ("kubetune.io_finetunejobs.yaml", "ftj", {"Phase", "Progress", "Run", "Adapter", "Age"}),
        (
            "kubetune.io_adapterdeployments.yaml",
            "adep",
            {"Phase", "Model", "Active", "Version", "Ready", "Desired", "Age"},
        ),
    ],
)
def test_names_and_columns(name: str, short: str, columns: set[str]) -> None:
    spec = all_crds()[name]["spec"]
    assert spec["names"]["shortNames"] == [short]
    assert spec["names"]["categories"] == ["kubetune"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert {c["name"] for c in version["additionalPrinterColumns"]} == columns


def test_rank_enum_is_the_engines_set() -> None:
    spec = all_crds()["kubetune.io_finetunejobs.yaml"]["spec"]["versions"][0]
    rank = spec["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["lora"][
        "properties"
    ]["rank"]
    assert rank["enum"] == list(constants.SUPPORTED_LORA_RANKS)
    assert rank["default"] in rank["enum"]


def test_undocumented_fields_finds_gaps() -> None:
    schema = {"properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}}}
    assert undocumented_fields(schema) == ["a", "a.b"]
