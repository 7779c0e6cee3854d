"""Which kubeconfig the CLI uses (``kubetune.cli.kube.load_config``): KUBECONFIG lists merged
as kubectl merges them, paths relative to their file, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubetune.cli.errors import CliError
from kubetune.cli.kube import load_config, merge_kubeconfigs

pytestmark = pytest.mark.unit


def kubeconfig(path: Path, *, name: str, server: str, current: bool = True, **user: str) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": user or {"token": "t"}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": f"{name}-ns"}}
        ],
    }
    if current:
        doc["current-context"] = name
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_kubeconfig_list_is_merged_first_file_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = kubeconfig(tmp_path / "a", name="one", server="https://one:6443", current=False)
    b = kubeconfig(tmp_path / "b", name="two", server="https://two:6443")
    monkeypatch.setenv("KUBECONFIG", f"{a}:{tmp_path / 'missing'}:{b}")
    current = load_config(None, None)  # current-context comes from b, the first file setting it
    assert (current.context_name, current.cluster.server, current.namespace) == (
        "two",
        "https://two:6443",
        "two-ns",
    )
    assert load_config(None, "one").cluster.server == "https://one:6443"

    shadow = kubeconfig(tmp_path / "c", name="two", server="https://shadowed:6443")
    merged = merge_kubeconfigs([yaml.safe_load(b.read_text()), yaml.safe_load(shadow.read_text())])
    assert [c["cluster"]["server"] for c in merged["clusters"]] == ["https://two:6443"]


def test_relative_certificate_paths_are_relative_to_their_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cfg"
    folder.mkdir()
    path = kubeconfig(
        folder / "config",
        name="x",
        server="https://x:6443",
        **{"client-certificate": "admin.crt", "client-key": "admin.key"},
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(path))
    user = load_config(None, None).user
    assert user is not None
    assert str(user.client_cert) == str(folder / "admin.crt")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("clusters: [\n", "not valid YAML"),
        ("- just\n- a list\n", "not a kubeconfig"),
        (
            yaml.safe_dump({"clusters": [], "contexts": [], "users": []}),
            "sets no current-context: pass --context (none)",
        ),
        (
            yaml.safe_dump(
                {
                    "clusters": [],
                    "users": [],
                    "current-context": "x",
                    "contexts": [{"name": "x", "context": {"cluster": "gone"}}],
                }
            ),
            "refers to an undefined entry",
        ),
    ],
)
def test_broken_kubeconfigs_are_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, message: str
) -> None:
    path = tmp_path / "config"
    path.write_text(content)
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(CliError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, None)
