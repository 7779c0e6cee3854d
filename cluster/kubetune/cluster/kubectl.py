"""A thin ``kubectl`` runner bound to one kubeconfig, for tests, the demo and scripts.

kubectl is what users type, so tests that go through it see exactly the errors users see.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubetune.cluster.binaries import find_binary


class KubectlError(RuntimeError):
    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed ({returncode}): {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class Kubectl:
    kubeconfig: Path
    namespace: str | None = None
    timeout: float = 60.0

    def with_namespace(self, namespace: str) -> Kubectl:
        return Kubectl(self.kubeconfig, namespace, self.timeout)

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(find_binary("kubectl")), f"--kubeconfig={self.kubeconfig}"]
        if self.namespace:
            argv.append(f"--namespace={self.namespace}")
        argv.extend(args)
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=self.timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(args, result.returncode, result.stderr)
        return result

    def apply(
        self,
        manifest: dict[str, Any] | str,
        *,
        server_side: bool = True,
        field_manager: str = "kubetune-tests",
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        args = ["apply", "-f", "-"]
        if server_side:
            args += ["--server-side", f"--field-manager={field_manager}"]
        return self.run(*args, stdin=text, check=check)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        out = self.run("get", kind, name, "-o", "json").stdout
        return dict(json.loads(out))
