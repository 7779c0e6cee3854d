"""The Argo CD health checks published in docs/gitops.md, executed as Lua 5.1.

Covers: the argocd-cm snippet in the guide is valid YAML with one health script per kind;
each script maps every phase to the documented Argo CD status (FineTuneJob: Succeeded
Healthy, Running/Pending Progressing, Failed Degraded, Suspended Suspended; AdapterDeployment:
Ready Healthy, Progressing/Pending Progressing, Degraded/Blocked Degraded), reports a status
that is older than the object's generation, or missing, as Progressing, and carries the
matching condition's message. Runs only where the `lupa` package (Lua for Python, the same
5.1 dialect Argo CD embeds) is installed; it is not a project dependency.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
lua51 = pytest.importorskip("lupa.lua51", reason="lupa (Lua for Python) is not installed")


def health_scripts() -> dict[str, str]:
    text = (REPO / "docs" / "gitops.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        doc = yaml.safe_load(block)
        if isinstance(doc, dict) and doc.get("metadata", {}).get("name") == "argocd-cm":
            prefix = "resource.customizations.health."
            return {k.removeprefix(prefix): v for k, v in doc["data"].items()}
    raise AssertionError("docs/gitops.md has no argocd-cm block")


def to_lua(lua: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([to_lua(lua, v) for v in value])
    return value


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    check = lua.eval(f"function(obj)\n{health_scripts()[f'kubetune.io_{kind}']}\nend")
    result = check(to_lua(lua, obj))
    return result["status"], result["message"]


def obj(phase: str | None, *, generation: int = 2, observed: int | None = 2, **conds: str) -> Any:
    status: dict[str, Any] = {}
    if phase is not None:
        status = {"phase": phase, "conditions": []}
        if observed is not None:
            status["observedGeneration"] = observed
        for type_, message in conds.items():
            status["conditions"].append({"type": type_, "status": "True", "message": message})
    return {"metadata": {"name": "x", "generation": generation}, "status": status or None}


def test_snippet_has_both_kinds() -> None:
    assert set(health_scripts()) == {"kubetune.io_FineTuneJob", "kubetune.io_AdapterDeployment"}


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Succeeded", "Healthy"),
        ("Running", "Progressing"),
        ("Pending", "Progressing"),
        ("Failed", "Degraded"),
        ("Suspended", "Suspended"),
    ],
)
def test_finetunejob_phases(phase: str, expected: str) -> None:
    assert health("FineTuneJob", obj(phase))[0] == expected


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Ready", "Healthy"),
        ("Progressing", "Progressing"),
        ("Pending", "Progressing"),
        ("Degraded", "Degraded"),
        ("Blocked", "Degraded"),
    ],
)
def test_adapterdeployment_phases(phase: str, expected: str) -> None:
    assert health("AdapterDeployment", obj(phase))[0] == expected


@pytest.mark.parametrize("kind", ["FineTuneJob", "AdapterDeployment"])
def test_status_of_an_older_generation_is_progressing(kind: str) -> None:
    done = "Succeeded" if kind == "FineTuneJob" else "Ready"
    status, message = health(kind, obj(done, generation=3, observed=2))
    assert status == "Progressing"
    assert "Generation 3" in message
    assert health(kind, obj(done, observed=None))[0] == "Progressing"
    assert health(kind, obj(None))[0] == "Progressing"


def test_messages_come_from_conditions() -> None:
    failed = obj("Failed", Failed="line 12 of train.jsonl: missing 'messages'")
    assert health("FineTuneJob", failed) == (
        "Degraded",
        "line 12 of train.jsonl: missing 'messages'",
    )
    blocked = obj("Blocked", Blocked="evalLoss 1.9 > gate 1.5")
    assert health("AdapterDeployment", blocked) == ("Degraded", "evalLoss 1.9 > gate 1.5")
    assert health("FineTuneJob", obj("Running")) == ("Progressing", "FineTuneJob is Running")
