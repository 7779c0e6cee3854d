"""The Helm chart against the real control plane (kube-apiserver, controller-manager).

Covers: the rendering of every values scenario (defaults, watchNamespaces, monitoring on,
images by digest, NetworkPolicies off, object store + serving agents) is accepted by the API
server, CRDs included (server-side dry-run apply); the operator pod of the chart is admitted in
a namespace that enforces Pod Security "restricted" (its ReplicaSet creates it, with no
FailedCreate event), while the same pod with one restricted control removed is refused there;
the operator's ServiceAccount can do everything the operator needs and cannot read Secrets,
change or delete CRDs, create pods, use wildcard verbs or touch RBAC (`kubectl auth can-i`),
and a real token of that ServiceAccount gets the same answers; with watchNamespaces its
namespaced rights stop at those namespaces; the aggregated roles give users of the built-in
view/edit roles read/write access to FineTuneJobs and AdapterDeployments; the serving agent's
Role opens one ConfigMap and pod patches, nothing else; the trainer NetworkPolicy the operator
renders from the chart's egress rules is valid; `helm install`, `helm upgrade` and `helm
uninstall` work against the API server, adopting CRDs applied earlier with kubectl and keeping
them on uninstall.

Helpers for further tests (trainer Job and inference pod admission, the operator reconciling
with its chart identity): the fixtures in conftest.py (``restricted_namespace``, ``helm``,
``module_helm``) and ``chartkit.service_account_kubeconfig``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubetune.cluster.kubectl import Kubectl, KubectlError
from tests.integration.chart.chartkit import (
    CHART,
    OBJECT_STORE_RULE,
    RESTRICTED,
    SCENARIOS,
    Helm,
    Rendering,
    make_namespace,
    service_account_kubeconfig,
)


def can_i(
    kubectl: Kubectl,
    user: str,
    verb: str,
    resource: str,
    *,
    namespace: str | None = None,
    subresource: str | None = None,
) -> bool:
    """``kubectl auth can-i`` as ``user``; ``namespace=None`` asks for all namespaces."""
    args = ["auth", "can-i", verb, resource, f"--as={user}"]
    args.append(f"--namespace={namespace}" if namespace else "--all-namespaces")
    if subresource:
        args.append(f"--subresource={subresource}")
    result = kubectl.run(*args, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {args}: {result.stdout} {result.stderr}"
    return answer == "yes"


def eventually(probe: Any, *, timeout: float = 30, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.3)


# ------------------------------------------------------------------ dry-run per scenario


def localize(scenario: str, kubectl: Kubectl) -> dict[str, Any]:
    """The scenario's values with its namespaces replaced by fresh, existing ones."""
    values = copy.deepcopy(SCENARIOS[scenario])
    if "watchNamespaces" in values:
        values["watchNamespaces"] = [make_namespace(kubectl, n) for n in values["watchNamespaces"]]
    agents = values.get("servingAgent", {}).get("deployments", [])
    renamed: dict[str, str] = {}
    for agent in agents:
        ns = agent["namespace"]
        agent["namespace"] = renamed.setdefault(ns, make_namespace(kubectl, ns))
    return values


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_passes_server_side_dry_run(
    helm: Helm, monitoring_crds: Kubectl, namespace: str, tmp_path: Path, scenario: str
) -> None:
    values = localize(scenario, monitoring_crds)
    rendering = helm.render(values, namespace=namespace, values_dir=tmp_path)
    accepted = helm.dry_run(rendering.manifests)
    assert len(accepted) == len(rendering.manifests), "\n".join(accepted)
    assert all("(server dry run)" in line for line in accepted), "\n".join(accepted)
    kinds = {m["kind"] for m in rendering.manifests}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole"} <= kinds


# ------------------------------------------------------------------ an installed release


@dataclass
class Release:
    rendering: Rendering
    namespace: str
    service_account: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    @property
    def fullname(self) -> str:
        return self.service_account.removesuffix("-operator")


def install(
    module_helm: Helm, kubectl: Kubectl, values: dict[str, Any], namespace: str, tmp: Path
) -> Release:
    release = f"kt{uuid.uuid4().hex[:6]}"
    # The session already holds the CRDs from crds/; a stale chart copy must not replace them.
    values = {**values, "crds": {"install": False}}
    rendering = module_helm.render(values, release=release, namespace=namespace, values_dir=tmp)
    module_helm.install(rendering.manifests)
    account = rendering.one("ServiceAccount")["metadata"]["name"]
    return Release(rendering, namespace, account)


@pytest.fixture(scope="module")
def restricted_release(
    module_helm: Helm, crds: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """The chart with default values, installed for real in a "restricted" namespace."""
    namespace = make_namespace(crds, "kubetune-system", RESTRICTED)
    yield install(module_helm, crds, {}, namespace, tmp_path_factory.mktemp("values"))
    crds.run("delete", "namespace", namespace, "--wait=false", check=False)


def test_operator_pod_is_admitted_under_restricted(
    restricted_release: Release, kubectl: Kubectl
) -> None:
    k = kubectl.with_namespace(restricted_release.namespace)
    selector = ",".join(
        f"{key}={value}"
        for key, value in restricted_release.rendering.deployment["spec"]["selector"][
            "matchLabels"
        ].items()
    )

    def pods() -> list[dict[str, Any]]:
        return json.loads(k.run("get", "pods", "-l", selector, "-o", "json").stdout)["items"]

    (pod,) = eventually(pods, timeout=60, what="the ReplicaSet to create the operator pod")
    assert pod["spec"]["serviceAccountName"] == restricted_release.service_account
    failed = json.loads(
        k.run("get", "events", "--field-selector=reason=FailedCreate", "-o", "json").stdout
    )["items"]
    assert failed == [], [e["message"] for e in failed]


def test_restricted_namespace_really_enforces(
    restricted_release: Release, kubectl: Kubectl
) -> None:
    """The operator pod passes a server dry-run; without seccomp or with root it is refused."""
    template = restricted_release.rendering.deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "psa-probe", "namespace": restricted_release.namespace},
        "spec": template["spec"],
    }
    k = kubectl.with_namespace(restricted_release.namespace)
    k.run("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(pod))

    for mutate in (
        lambda s: s["securityContext"].pop("seccompProfile"),
        lambda s: s["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
        lambda s: s["containers"][0]["securityContext"].update(runAsUser=0),
        lambda s: s["containers"][0]["securityContext"].pop("capabilities"),
    ):
        weakened = copy.deepcopy(pod)
        mutate(weakened["spec"])
        with pytest.raises(KubectlError, match="violates PodSecurity"):
            k.run("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(weakened))


# (verb, resource, subresource, namespaced) the operator needs.
OPERATOR_CAN = [
    ("list", "finetunejobs.kubetune.io", None, False),
    ("watch", "adapterdeployments.kubetune.io", None, False),
    ("patch", "finetunejobs.kubetune.io", None, True),
    ("patch", "finetunejobs.kubetune.io", "status", True),
    ("update", "adapterdeployments.kubetune.io", "status", True),
    ("create", "jobs.batch", None, True),
    ("delete", "jobs.batch", None, True),
    ("patch", "jobs.batch", None, True),
    ("create", "configmaps", None, True),
    ("delete", "configmaps", None, True),
    ("create", "services", None, True),
    ("watch", "pods", None, False),
    ("create", "events", None, True),
    ("patch", "events.events.k8s.io", None, True),
    ("patch", "deployments.apps", None, True),
    ("create", "networkpolicies.networking.k8s.io", None, True),
    ("list", "namespaces", None, False),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", None, False),
]

# (verb, resource, subresource, namespaced) the operator must never be able to do.
OPERATOR_CANNOT = [
    ("get", "secrets", None, False),
    ("list", "secrets", None, False),
    ("watch", "secrets", None, False),
    ("get", "secrets", None, True),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", None, False),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", None, False),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io", None, False),
    ("*", "*", None, False),
    ("*", "finetunejobs.kubetune.io", None, True),
    ("*", "jobs.batch", None, True),
    ("update", "finetunejobs.kubetune.io", None, True),
    ("create", "finetunejobs.kubetune.io", None, True),
    ("delete", "adapterdeployments.kubetune.io", None, True),
    ("create", "pods", None, True),
    ("delete", "pods", None, True),
    ("create", "pods", "exec", True),
    ("create", "deployments.apps", None, True),
    ("delete", "deployments.apps", None, True),
    ("delete", "networkpolicies.networking.k8s.io", None, True),
    ("create", "roles.rbac.authorization.k8s.io", None, True),
    ("create", "rolebindings.rbac.authorization.k8s.io", None, True),
    ("bind", "clusterroles.rbac.authorization.k8s.io", None, False),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", None, False),
    ("impersonate", "serviceaccounts", None, True),
    ("create", "serviceaccounts", "token", True),
    ("delete", "namespaces", None, False),
    ("patch", "nodes", None, False),
]


def rbac_id(case: tuple[str, str, str | None, bool]) -> str:
    verb, resource, sub, namespaced = case
    return (
        f"{verb}-{resource.split('.')[0]}{'/' + sub if sub else ''}-{'ns' if namespaced else 'all'}"
    )


@pytest.mark.parametrize("case", OPERATOR_CAN, ids=rbac_id)
def test_operator_can(
    restricted_release: Release, kubectl: Kubectl, case: tuple[str, str, str | None, bool]
) -> None:
    verb, resource, sub, namespaced = case
    # Any namespace: the ClusterRole is cluster-wide.
    ns = "some-team" if namespaced else None
    assert can_i(kubectl, restricted_release.user, verb, resource, namespace=ns, subresource=sub)


@pytest.mark.parametrize("case", OPERATOR_CANNOT, ids=rbac_id)
def test_operator_cannot(
    restricted_release: Release, kubectl: Kubectl, case: tuple[str, str, str | None, bool]
) -> None:
    verb, resource, sub, namespaced = case
    ns = restricted_release.namespace if namespaced else None
    assert not can_i(
        kubectl, restricted_release.user, verb, resource, namespace=ns, subresource=sub
    )


def test_operator_token_authenticates_with_least_privilege(
    restricted_release: Release, kubectl: Kubectl, tmp_path: Path
) -> None:
    """The same answers with a real token of the chart's ServiceAccount (no impersonation)."""
    config = service_account_kubeconfig(
        kubectl,
        namespace=restricted_release.namespace,
        service_account=restricted_release.service_account,
        path=tmp_path / "operator.kubeconfig",
    )
    operator = Kubectl(config)
    whoami = json.loads(operator.run("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == restricted_release.user
    operator.run("get", "finetunejobs.kubetune.io", "--all-namespaces")
    operator.run("get", "jobs.batch,configmaps,pods", "--all-namespaces")
    with pytest.raises(KubectlError, match="Forbidden"):
        operator.run("get", "secrets", "--all-namespaces")
    with pytest.raises(KubectlError, match="Forbidden"):
        operator.run("delete", "crd", "finetunejobs.kubetune.io", "--dry-run=server")


def test_aggregated_roles_reach_builtin_view_and_edit(
    restricted_release: Release, kubectl: Kubectl, namespace: str
) -> None:
    k = kubectl.with_namespace(namespace)
    k.run("create", "rolebinding", "viewer", "--clusterrole=view", "--user=alice")
    k.run("create", "rolebinding", "editor", "--clusterrole=edit", "--user=bob")

    def alice_reads() -> bool:
        return can_i(kubectl, "alice", "list", "finetunejobs.kubetune.io", namespace=namespace)

    def bob_writes() -> bool:
        return can_i(
            kubectl, "bob", "create", "adapterdeployments.kubetune.io", namespace=namespace
        )

    eventually(alice_reads, what="the aggregation controller to extend the view role")
    eventually(bob_writes, what="the aggregation controller to extend the edit role")
    assert can_i(kubectl, "alice", "get", "adapterdeployments.kubetune.io", namespace=namespace)
    assert not can_i(kubectl, "alice", "create", "finetunejobs.kubetune.io", namespace=namespace)
    assert can_i(kubectl, "bob", "delete", "finetunejobs.kubetune.io", namespace=namespace)
    assert not can_i(
        kubectl,
        "bob",
        "patch",
        "finetunejobs.kubetune.io",
        namespace=namespace,
        subresource="status",
    )
    assert not can_i(kubectl, "carol", "list", "finetunejobs.kubetune.io", namespace=namespace)


# ------------------------------------------------------------------ watchNamespaces + agents


@dataclass
class Scoped:
    release: Release
    watched: list[str]
    unwatched: str
    agent_namespace: str


@pytest.fixture(scope="module")
def scoped_release(
    module_helm: Helm, crds: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scoped]:
    """The chart with watchNamespaces and one serving agent, installed for real."""
    home = make_namespace(crds, "kubetune-home")
    watched = [make_namespace(crds, "team-a"), make_namespace(crds, "team-b")]
    unwatched = make_namespace(crds, "team-c")
    values = {
        "watchNamespaces": watched,
        "objectStore": {"egress": [OBJECT_STORE_RULE]},
        "servingAgent": {
            "deployments": [
                {"namespace": watched[0], "deployment": "llama3", "serviceAccount": "llama3"}
            ]
        },
    }
    release = install(module_helm, crds, values, home, tmp_path_factory.mktemp("values"))
    yield Scoped(release, watched, unwatched, watched[0])
    for ns in (home, *watched, unwatched):
        crds.run("delete", "namespace", ns, "--wait=false", check=False)


def test_watch_namespaces_bound_the_operator(scoped_release: Scoped, kubectl: Kubectl) -> None:
    user = scoped_release.release.user
    for ns in scoped_release.watched:
        assert can_i(kubectl, user, "watch", "finetunejobs.kubetune.io", namespace=ns)
        assert can_i(kubectl, user, "create", "jobs.batch", namespace=ns)
        assert can_i(kubectl, user, "create", "networkpolicies.networking.k8s.io", namespace=ns)
    other = scoped_release.unwatched
    assert not can_i(kubectl, user, "watch", "finetunejobs.kubetune.io", namespace=other)
    assert not can_i(kubectl, user, "create", "jobs.batch", namespace=other)
    assert not can_i(kubectl, user, "list", "finetunejobs.kubetune.io")  # all namespaces
    # Discovery stays cluster-wide.
    assert can_i(kubectl, user, "watch", "namespaces")
    assert can_i(kubectl, user, "list", "customresourcedefinitions.apiextensions.k8s.io")


def test_serving_agent_role(scoped_release: Scoped, kubectl: Kubectl) -> None:
    ns = scoped_release.agent_namespace
    agent = f"system:serviceaccount:{ns}:llama3"
    assert can_i(kubectl, agent, "get", "configmaps/kubetune-adapters-llama3", namespace=ns)
    assert can_i(kubectl, agent, "watch", "configmaps/kubetune-adapters-llama3", namespace=ns)
    assert not can_i(kubectl, agent, "get", "configmaps/kubetune-adapters-other", namespace=ns)
    assert not can_i(kubectl, agent, "list", "configmaps", namespace=ns)
    assert not can_i(kubectl, agent, "patch", "configmaps/kubetune-adapters-llama3", namespace=ns)
    assert can_i(kubectl, agent, "patch", "pods", namespace=ns)
    assert not can_i(kubectl, agent, "delete", "pods", namespace=ns)
    assert not can_i(kubectl, agent, "create", "pods", subresource="exec", namespace=ns)
    assert not can_i(kubectl, agent, "get", "secrets", namespace=ns)
    assert not can_i(kubectl, agent, "patch", "pods", namespace=scoped_release.unwatched)


def test_trainer_policy_rendered_by_the_operator_is_valid(
    scoped_release: Scoped, kubectl: Kubectl
) -> None:
    """Chart egress values -> KUBETUNE_TRAINER_EGRESS -> operator's NetworkPolicy -> API server."""
    render_trainer = pytest.importorskip("kubetune.operator.render_trainer")
    settings_mod = pytest.importorskip("kubetune.operator.settings")
    env = {k: v for k, v in scoped_release.release.rendering.env().items() if isinstance(v, str)}
    settings = settings_mod.Settings.from_env(env)
    ns = scoped_release.watched[1]
    policy = render_trainer.render_network_policy(namespace=ns, settings=settings)
    assert OBJECT_STORE_RULE in policy["spec"]["egress"]
    out = kubectl.run(
        "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=json.dumps(policy)
    ).stdout
    assert "(server dry run)" in out


# ------------------------------------------------------------------ helm install / uninstall


CRD_NAMES = ("finetunejobs.kubetune.io", "adapterdeployments.kubetune.io")


def test_helm_install_upgrade_uninstall_keeps_crds(
    crds: Kubectl, namespace: str, kube_version: str
) -> None:
    """The documented lifecycle with the real `helm` against the API server.

    The session's CRDs were applied with kubectl, as a platform team that installed them by
    hand would have; they are annotated for adoption (the documented way), so the release
    takes them over, upgrades them, and leaves them behind on uninstall (resource policy keep).
    """
    spec = importlib.util.spec_from_file_location(
        "chart_crds", Path(__file__).resolve().parents[3] / "hack" / "chart-crds.py"
    )
    assert spec and spec.loader
    chart_crds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chart_crds)
    if chart_crds.stale_files():
        pytest.skip("the chart's CRD copy is stale (test_chart_sources fails); not applying it")

    release = f"kt{uuid.uuid4().hex[:6]}"
    helm = Helm(crds, kube_version)
    kubeconfig = f"--kubeconfig={crds.kubeconfig}"
    adoption = [
        f"meta.helm.sh/release-name={release}",
        f"meta.helm.sh/release-namespace={namespace}",
    ]
    for name in CRD_NAMES:
        crds.run("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
        crds.run("annotate", "--overwrite", "crd", name, *adoption)
    try:
        installed = helm.run("install", release, str(CHART), kubeconfig, f"--namespace={namespace}")
        assert "STATUS: deployed" in installed.stdout
        assert f"kubetune 0.1.0 is installed in namespace {namespace}" in installed.stdout
        upgraded = helm.run(
            "upgrade",
            release,
            str(CHART),
            kubeconfig,
            f"--namespace={namespace}",
            "--set=operator.progressInterval=30",
        )
        assert "STATUS: deployed" in upgraded.stdout
        deployment = crds.with_namespace(namespace).get(
            "deployment", f"{release}-kubetune-operator"
        )
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["KUBETUNE_PROGRESS_INTERVAL"] == "30"
        removed = helm.run("uninstall", release, kubeconfig, f"--namespace={namespace}")
        assert "kept due to the resource policy" in removed.stdout + removed.stderr
        for name in CRD_NAMES:
            crd = crds.get("crd", name)
            assert crd["metadata"].get("deletionTimestamp") is None
        assert (
            crds.run("get", "clusterrole", f"{release}-kubetune-operator", check=False).returncode
            != 0
        )
    finally:
        helm.run("uninstall", release, kubeconfig, f"--namespace={namespace}", check=False)
        for name in CRD_NAMES:
            crds.run(
                "annotate",
                "crd",
                name,
                "meta.helm.sh/release-name-",
                "meta.helm.sh/release-namespace-",
                check=False,
            )
            crds.run("label", "crd", name, "app.kubernetes.io/managed-by-", check=False)
