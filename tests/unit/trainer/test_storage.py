"""URIs and the filesystem side of the store (``kubetune.trainer.storage``).

Covers: parsing s3://, pvc:// (mapped under KUBETUNE_PVC_ROOT) and absolute paths, refusing
anything else; joining URIs; local writes, reads, listing and deletion; the conditional
create used for manifests never overwrites; a missing object raises NotFoundError. The S3
side runs against the real object store in tests/integration/trainer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.trainer.storage import Location, NotFoundError, Store, join, parse_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://models/tiny/", Location("s3", "models", "tiny/")),
        ("s3://datasets/v3/train.jsonl", Location("s3", "datasets", "v3/train.jsonl")),
        ("pvc://shared/models/tiny/", Location("file", "", "/mnt/x/shared/models/tiny/")),
        ("pvc://shared/train.jsonl", Location("file", "", "/mnt/x/shared/train.jsonl")),
        ("/data/train.jsonl", Location("file", "", "/data/train.jsonl")),
    ],
)
def test_parse_uri(uri: str, expected: Location) -> None:
    assert parse_uri(uri, pvc_root="/mnt/x") == expected


def test_pvc_root_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETUNE_PVC_ROOT", "/volumes")
    assert parse_uri("pvc://claim/a.jsonl").key == "/volumes/claim/a.jsonl"
    monkeypatch.delenv("KUBETUNE_PVC_ROOT")
    assert parse_uri("pvc://claim/a.jsonl").key == "/mnt/pvc/claim/a.jsonl"


@pytest.mark.parametrize("uri", ["http://x/y", "relative/path", "s3:///key", "pvc:///x"])
def test_bad_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError):
        parse_uri(uri)


@pytest.mark.parametrize(
    ("prefix", "parts", "joined"),
    [
        ("s3://a/run/", ("adapter", "manifest.json"), "s3://a/run/adapter/manifest.json"),
        ("s3://a/run", ("checkpoints/",), "s3://a/run/checkpoints/"),
        ("/out/", ("r1", "/progress.json"), "/out/r1/progress.json"),
    ],
)
def test_join(prefix: str, parts: tuple[str, ...], joined: str) -> None:
    assert join(prefix, *parts) == joined


def test_local_round_trip_listing_and_deletion(tmp_path: Path) -> None:
    store = Store()
    root = f"{tmp_path}/run/"
    assert store.write_bytes(root + "a/one.json", b"1")
    source = tmp_path / "src.bin"
    source.write_bytes(b"22")
    store.upload_file(source, root + "b/two.bin")
    assert store.read_bytes(root + "a/one.json") == b"1"
    assert [(o.relative, o.size) for o in store.list(root)] == [("a/one.json", 1), ("b/two.bin", 2)]
    store.download_file(root + "b/two.bin", tmp_path / "copy" / "two.bin")
    assert (tmp_path / "copy" / "two.bin").read_bytes() == b"22"
    store.delete_prefix(root + "a/")
    assert [o.relative for o in store.list(root)] == ["b/two.bin"]
    assert store.list(f"{tmp_path}/nothing-here/") == []


def test_conditional_create_never_overwrites(tmp_path: Path) -> None:
    store = Store()
    uri = f"{tmp_path}/adapter/manifest.json"
    assert store.write_bytes(uri, b"first", if_absent=True) is True
    assert store.write_bytes(uri, b"second", if_absent=True) is False
    assert store.read_bytes(uri) == b"first"
    assert [p.name for p in (tmp_path / "adapter").iterdir()] == ["manifest.json"]


def test_missing_objects_raise_not_found(tmp_path: Path) -> None:
    store = Store()
    with pytest.raises(NotFoundError):
        store.read_bytes(f"{tmp_path}/missing.json")
    with pytest.raises(NotFoundError):
        store.head(f"{tmp_path}/missing.json")
    assert store.read_bytes_or_none(f"{tmp_path}/missing.json") is None
    assert not store.exists(f"{tmp_path}/missing.json")
