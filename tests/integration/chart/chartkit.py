"""Helpers to render the kubetune chart and install it on the test control plane.

Used by the fixtures in this folder's conftest.py and imported by its test modules; a module
of its own (not conftest) so that tests can import it by a unique name.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubetune.cluster.binaries import find_binary
from kubetune.cluster.kubectl import Kubectl

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "kubetune"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion): render-only tests use it.
MIN_KUBE_VERSION = "v1.30.0"

Manifest = dict[str, Any]


OBJECT_STORE_RULE = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "storage"}}}],
    "ports": [{"protocol": "TCP", "port": 8333}],
}
DIGEST = "sha256:" + "ab" * 32

# Values scenarios: rendered and linted in test_chart_render.py, dry-run against the API
# server in test_chart_cluster.py.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "watch-namespaces": {"watchNamespaces": ["team-a", "team-b"]},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "dashboard": {"labels": {"grafana_dashboard": "1"}, "annotations": {"folder": "ML"}},
        },
        "networkPolicy": {
            "metricsFrom": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
            ]
        },
    },
    "images-by-digest": {
        "images": {
            "registry": "registry.acme.internal",
            "pullPolicy": "Always",
            "pullSecrets": ["acme-pull"],
            "operator": {"digest": DIGEST},
            "trainer": {"registry": "gpu.acme.internal", "tag": "0.1.0-cu13", "digest": DIGEST},
            "serving": {"repository": "ml/kubetune-serving", "tag": "0.1.0"},
        }
    },
    "network-policy-off": {"networkPolicy": {"enabled": False}},
    "object-store-and-agents": {
        "objectStore": {
            "endpoint": "http://object-store.storage.svc:8333",
            "region": "eu-central-1",
            "secretName": "team-s3",
            "operatorCredentials": {"secretName": ""},
            "egress": [OBJECT_STORE_RULE],
        },
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/k"}},
        "servingAgent": {
            "deployments": [
                {"namespace": "serving", "deployment": "llama3", "serviceAccount": "llama3"},
                {"namespace": "serving", "deployment": "mistral", "serviceAccount": "mistral"},
            ]
        },
        "operator": {
            "extraArgs": ["--verbose"],
            "extraEnv": [{"name": "AWS_CA_BUNDLE", "value": "/etc/ssl/ca.pem"}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
        },
    },
}


class HelmError(RuntimeError):
    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)} failed ({returncode}): {stderr.strip()}")
        self.stderr = stderr


@dataclass
class Rendering:
    """The manifests of one ``helm template`` run, in order, and the text they came from."""

    text: str
    manifests: list[Manifest]
    release: str
    namespace: str

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> Manifest:
        found = [m for m in self.of_kind(kind) if name is None or m["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def without(self, *kinds: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] not in kinds]

    @property
    def deployment(self) -> Manifest:
        return self.one("Deployment")

    def env(self) -> dict[str, Any]:
        """The operator container's env, by name (value, or the valueFrom mapping)."""
        container = self.deployment["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@dataclass
class Helm:
    kubectl: Kubectl | None
    kube_version: str
    installed: list[list[Manifest]] = field(default_factory=list)
    # helm template output by (values, release, namespace): the same rendering is asked for
    # by many tests, and each helm run costs a few hundred milliseconds.
    _rendered: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(find_binary("helm")), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if check and result.returncode != 0:
            raise HelmError(list(args), result.returncode, result.stderr)
        return result

    def template_args(
        self, values: Mapping[str, Any], *, release: str, namespace: str, values_dir: Path
    ) -> list[str]:
        values_file = values_dir / f"values-{uuid.uuid4().hex[:8]}.yaml"
        values_file.write_text(yaml.safe_dump(dict(values)))
        return [
            "template",
            release,
            str(CHART),
            f"--namespace={namespace}",
            f"--kube-version={self.kube_version}",
            f"--values={values_file}",
        ]

    def render(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "kubetune",
        namespace: str = "kubetune-system",
        values_dir: Path,
    ) -> Rendering:
        key = json.dumps([values or {}, release, namespace], sort_keys=True)
        if key not in self._rendered:
            args = self.template_args(
                values or {}, release=release, namespace=namespace, values_dir=values_dir
            )
            self._rendered[key] = self.run(*args).stdout
        text = self._rendered[key]
        manifests = [m for m in yaml.safe_load_all(text) if m]
        return Rendering(text, manifests, release, namespace)

    def render_error(
        self, values: Mapping[str, Any], *, values_dir: Path, release: str = "kubetune"
    ) -> str:
        """stderr of a ``helm template`` that must fail."""
        args = self.template_args(
            values, release=release, namespace="kubetune-system", values_dir=values_dir
        )
        result = self.run(*args, check=False)
        assert result.returncode != 0, "helm template accepted values it should refuse"
        return result.stderr

    def _kubectl(self) -> Kubectl:
        assert self.kubectl is not None, "this Helm runner renders only (no control plane)"
        return self.kubectl

    def dry_run(self, manifests: list[Manifest]) -> list[str]:
        """Server-side dry-run apply; returns kubectl's one line per accepted object."""
        out = (
            self._kubectl()
            .run(
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=kubetune-chart-tests",
                "--dry-run=server",
                "-f",
                "-",
                stdin=yaml.safe_dump_all(manifests),
            )
            .stdout
        )
        return [line for line in out.splitlines() if line.strip()]

    def install(self, manifests: list[Manifest]) -> None:
        """Apply for real; ``cleanup()`` deletes what was applied (cluster-scoped objects too)."""
        self._kubectl().run(
            "apply",
            "--server-side",
            "--field-manager=kubetune-chart-tests",
            "-f",
            "-",
            stdin=yaml.safe_dump_all(manifests),
        )
        self.installed.append(manifests)

    def cleanup(self) -> None:
        for manifests in reversed(self.installed):
            self._kubectl().run(
                "delete",
                "--ignore-not-found",
                "--wait=false",
                "-f",
                "-",
                stdin=yaml.safe_dump_all(manifests),
                check=False,
            )
        self.installed.clear()


def make_namespace(kubectl: Kubectl, stem: str, labels: Mapping[str, str] | None = None) -> str:
    name = f"{re.sub(r'[^a-z0-9-]', '-', stem.lower())[:40].strip('-')}-{uuid.uuid4().hex[:5]}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": dict(labels or {})},
    }
    kubectl.apply(manifest, field_manager="kubetune-chart-tests")
    return name


RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def service_account_kubeconfig(
    kubectl: Kubectl, *, namespace: str, service_account: str, path: Path
) -> Path:
    """A kubeconfig that authenticates with a fresh token of ``service_account``.

    Unlike ``--as`` impersonation, requests made with it go through real token
    authentication, exactly as from the pod: use it to run the operator with its chart
    identity.
    """
    token = kubectl.run(
        "create", "token", service_account, f"--namespace={namespace}", "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(kubectl.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [
            {
                "name": "sa",
                "context": {"cluster": "local", "user": service_account, "namespace": namespace},
            }
        ],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
