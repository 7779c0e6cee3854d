"""The agent needs no ML stack: importing it pulls in neither torch, transformers, PEFT nor
the reference engine (the agent image stays small and starts in about a second), and nothing
in ``kubetune.serving`` imports the operator or the trainer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SERVING = Path(__file__).resolve().parents[3] / "serving" / "kubetune" / "serving"


def test_agent_imports_no_ml_stack() -> None:
    probe = (
        "import sys, kubetune.serving.agent.__main__\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'kubetune.serving.engine')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""


def test_serving_never_imports_operator_or_trainer() -> None:
    for path in SERVING.rglob("*.py"):
        text = path.read_text()
        assert "kubetune.operator" not in text, path
        assert "kubetune.trainer" not in text, path
