"""Run the installed ``kubetune`` command as a user would: a subprocess, output captured.

Shared by the CLI's unit tests (local files) and integration tests (real control plane and
object store); the e2e suite runs it against the local cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

KUBETUNE = shutil.which("kubetune", path=str(Path(sys.executable).parent)) or "kubetune"
Run = Callable[..., subprocess.CompletedProcess[str]]


def run_kubetune(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    merged = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [KUBETUNE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=merged,
        input=stdin,
        timeout=300,
        check=False,
    )
