"""The Helm chart as rendered by the real ``helm`` binary (no control plane needed).

Covers: ``helm lint --strict`` for the default and every scenario's values; values.schema.json
refuses unknown keys (top level and nested, naming the key) and bad values; the operator
Deployment (one replica, Recreate, liveness on /healthz, restricted security context, token
only for the operator, every setting in kubetune/operator/settings.py set from values, image
references by tag and by digest); the trainer egress rules reach the operator unchanged and
the operator's own settings parser accepts them; the NetworkPolicies (operator: DNS, API
server, object store; serving agents: same plus ingress to the API port only; none when
disabled); RBAC structure (no wildcards, nothing on Secrets, Roles per watched namespace,
the agent Role bound to one ConfigMap); the CRD templates equal crds/*.yaml with the keep
policy and switch off with crds.install; the Grafana dashboard queries the operator's
metric names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.chart.chartkit import (
    CHART,
    DIGEST,
    OBJECT_STORE_RULE,
    REPO,
    SCENARIOS,
    Helm,
    Rendering,
)


def render(renderer: Helm, tmp_path: Path, values: dict[str, Any] | None = None) -> Rendering:
    return renderer.render(values, values_dir=tmp_path)


def settings_env_names() -> set[str]:
    """The environment variables the operator reads (its settings module is the contract)."""
    text = (REPO / "operator" / "kubetune" / "operator" / "settings.py").read_text()
    names = set(re.findall(r"\b(KUBETUNE_[A-Z0-9_]+|AWS_[A-Z0-9_]+)\b", text))
    assert names, "no KUBETUNE_* variable found in settings.py"
    return names


# ------------------------------------------------------------------ lint and schema


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_strict(renderer: Helm, tmp_path: Path, scenario: str) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(SCENARIOS[scenario]))
    result = renderer.run(
        "lint",
        "--strict",
        str(CHART),
        f"--values={values}",
        f"--kube-version={renderer.kube_version}",
    )
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            {"replicas": 2}, ("additional properties 'replicas' not allowed",), id="top-level"
        ),
        pytest.param(
            {"operator": {"replicaCount": 2}},
            ("/operator", "'replicaCount' not allowed"),
            id="nested",
        ),
        pytest.param(
            {"networkPolicy": {"dns": {"to": [{"podSelecter": {}}]}}},
            ("/networkPolicy/dns/to/0", "'podSelecter' not allowed"),
            id="typo-in-peer",
        ),
        pytest.param(
            {"objectStore": {"egress": [{"to": [], "port": 443}]}},
            ("/objectStore/egress/0", "'port' not allowed"),
            id="typo-in-egress-rule",
        ),
        pytest.param(
            {"images": {"trainer": {"digest": "latest"}}},
            ("/images/trainer/digest",),
            id="bad-digest",
        ),
        pytest.param(
            {"operator": {"metricsPort": "8080"}}, ("/operator/metricsPort",), id="port-type"
        ),
        pytest.param(
            {"images": {"pullPolicy": "Sometimes"}}, ("/images/pullPolicy",), id="pull-policy"
        ),
        pytest.param(
            {"servingAgent": {"deployments": [{"namespace": "x", "deployment": "y"}]}},
            ("/servingAgent/deployments/0", "serviceAccount"),
            id="agent-without-account",
        ),
        pytest.param({"watchNamespaces": ["Team_A"]}, ("/watchNamespaces/0",), id="namespace-name"),
    ],
)
def test_schema_refuses_bad_values(
    renderer: Helm, tmp_path: Path, values: dict[str, Any], expected: tuple[str, ...]
) -> None:
    stderr = renderer.render_error(values, values_dir=tmp_path)
    assert "values don't meet the specifications of the schema" in stderr
    for text in expected:
        assert text in stderr, stderr


def test_template_needs_a_supported_kubernetes(tmp_path: Path) -> None:
    old = Helm(None, "v1.29.9")
    stderr = old.render_error({}, values_dir=tmp_path)
    assert "kubeVersion" in stderr


# ------------------------------------------------------------------ operator Deployment


def test_operator_deployment_is_one_restricted_replica(renderer: Helm, tmp_path: Path) -> None:
    deployment = render(renderer, tmp_path).deployment
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert "command" not in container, "the image's ENTRYPOINT runs python -m kubetune.operator"
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert probe == {"path": "/healthz", "port": "health"}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["resources"]["limits"]["memory"] == "512Mi"


def test_service_account_token_is_opt_in(renderer: Helm, tmp_path: Path) -> None:
    account = render(renderer, tmp_path).one("ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_every_operator_setting_is_set(renderer: Helm, tmp_path: Path) -> None:
    env = render(renderer, tmp_path).env()
    missing = settings_env_names() - set(env)
    assert not missing, f"settings.py reads {sorted(missing)} but the chart does not set them"
    assert env["KUBETUNE_WATCH_NAMESPACES"] == ""
    assert env["KUBETUNE_TRAINER_IMAGE"] == "kubetune/trainer:0.1.0"
    assert env["KUBETUNE_SERVING_IMAGE"] == "kubetune/serving:0.1.0"
    assert env["KUBETUNE_HEALTH_PORT"] == "8081"
    assert env["KUBETUNE_METRICS_PORT"] == "8080"
    assert env["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "kubetune-operator-s3", "key": "AWS_ACCESS_KEY_ID"}
    }


def test_settings_from_values(renderer: Helm, tmp_path: Path) -> None:
    rendering = render(renderer, tmp_path, SCENARIOS["object-store-and-agents"])
    env = rendering.env()
    assert env["KUBETUNE_S3_ENDPOINT"] == "http://object-store.storage.svc:8333"
    assert env["KUBETUNE_S3_REGION"] == "eu-central-1"
    assert env["KUBETUNE_S3_SECRET_NAME"] == "team-s3"
    assert env["AWS_CA_BUNDLE"] == "/etc/ssl/ca.pem"
    # Workload identity: no static credentials, the account carries the role annotation.
    assert "AWS_ACCESS_KEY_ID" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert rendering.one("ServiceAccount")["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/k"
    }
    container = rendering.deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--verbose"]
    assert rendering.env()["KUBETUNE_WATCH_NAMESPACES"] == ""
    watch = render(renderer, tmp_path, SCENARIOS["watch-namespaces"]).env()
    assert watch["KUBETUNE_WATCH_NAMESPACES"] == "team-a,team-b"


def test_image_references(renderer: Helm, tmp_path: Path) -> None:
    rendering = render(renderer, tmp_path, SCENARIOS["images-by-digest"])
    pod = rendering.deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == f"registry.acme.internal/kubetune/operator:0.1.0@{DIGEST}"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "acme-pull"}]
    env = rendering.env()
    assert (
        env["KUBETUNE_TRAINER_IMAGE"] == f"gpu.acme.internal/kubetune/trainer:0.1.0-cu13@{DIGEST}"
    )
    assert env["KUBETUNE_SERVING_IMAGE"] == "registry.acme.internal/ml/kubetune-serving:0.1.0"
    assert env["KUBETUNE_IMAGE_PULL_POLICY"] == "Always"


# ------------------------------------------------------------------ NetworkPolicies


def test_trainer_egress_is_handed_to_the_operator_unchanged(renderer: Helm, tmp_path: Path) -> None:
    env = render(renderer, tmp_path, SCENARIOS["object-store-and-agents"]).env()
    assert json.loads(env["KUBETUNE_TRAINER_EGRESS"]) == [OBJECT_STORE_RULE]
    assert json.loads(render(renderer, tmp_path).env()["KUBETUNE_TRAINER_EGRESS"]) == []
    # Trainers stay sealed when the chart's own policies are off.
    sealed = {"networkPolicy": {"enabled": False}, "objectStore": {"egress": [OBJECT_STORE_RULE]}}
    off = render(renderer, tmp_path, sealed)
    assert json.loads(off.env()["KUBETUNE_TRAINER_EGRESS"]) == [OBJECT_STORE_RULE]
    assert off.of_kind("NetworkPolicy") == []


def test_operator_settings_accept_the_chart_egress(renderer: Helm, tmp_path: Path) -> None:
    settings_mod = pytest.importorskip("kubetune.operator.settings")
    env = render(renderer, tmp_path, SCENARIOS["object-store-and-agents"]).env()
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    settings = settings_mod.Settings.from_env(plain)
    assert list(settings.trainer_egress) == [OBJECT_STORE_RULE]
    assert settings.health_port == 8081
    assert settings.metrics_port == 8080


def test_operator_network_policy(renderer: Helm, tmp_path: Path) -> None:
    rendering = render(renderer, tmp_path, SCENARIOS["object-store-and-agents"])
    (policy,) = rendering.of_kind("NetworkPolicy")[:1]
    assert policy["metadata"]["name"] == "kubetune-operator"
    spec = policy["spec"]
    assert (
        spec["podSelector"]["matchLabels"]
        == (rendering.deployment["spec"]["selector"]["matchLabels"])
    )
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 8081}]}
    ]
    dns, api, store = spec["egress"]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert api == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
    assert store == OBJECT_STORE_RULE


def test_serving_agent_network_policy(renderer: Helm, tmp_path: Path) -> None:
    rendering = render(renderer, tmp_path, SCENARIOS["object-store-and-agents"])
    agents = [
        p
        for p in rendering.of_kind("NetworkPolicy")
        if p["metadata"]["name"] != "kubetune-operator"
    ]
    assert len(agents) == 1, "one policy per namespace, however many Deployments it serves"
    (policy,) = agents
    assert policy["metadata"]["namespace"] == "serving"
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"kubetune.io/serving-agent": "true"}}
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    assert [rule.get("ports", [{}])[0].get("port") for rule in spec["egress"]] == [53, 443, 8333]


def test_no_agent_policy_without_agents(renderer: Helm, tmp_path: Path) -> None:
    names = [p["metadata"]["name"] for p in render(renderer, tmp_path).of_kind("NetworkPolicy")]
    assert names == ["kubetune-operator"]


# ------------------------------------------------------------------ RBAC


def rbac_rules(rendering: Rendering) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{m['kind']}/{m['metadata']['name']}", rule)
        for m in rendering.manifests
        if m["kind"] in ("ClusterRole", "Role")
        for rule in m.get("rules", [])
    ]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rbac_has_no_wildcards_and_no_secrets(
    renderer: Helm, tmp_path: Path, scenario: str
) -> None:
    rules = rbac_rules(render(renderer, tmp_path, SCENARIOS[scenario]))
    assert rules
    for owner, rule in rules:
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(key, []), f"{owner}: wildcard in {key}: {rule}"
        assert not {"secrets", "serviceaccounts/token"} & set(rule["resources"]), owner
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), owner
        assert not {"roles", "rolebindings", "clusterroles", "clusterrolebindings"} & set(
            rule["resources"]
        ), owner


def test_rbac_per_watched_namespace(renderer: Helm, tmp_path: Path) -> None:
    rendering = render(renderer, tmp_path, SCENARIOS["watch-namespaces"])
    roles = rendering.of_kind("Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = rendering.of_kind("RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    cluster_roles = {r["metadata"]["name"] for r in rendering.of_kind("ClusterRole")}
    # Only discovery and the aggregated user roles stay cluster-wide.
    assert cluster_roles == {
        "kubetune-operator-discovery",
        "kubetune-view",
        "kubetune-edit",
    }
    default_roles = {
        r["metadata"]["name"] for r in render(renderer, tmp_path).of_kind("ClusterRole")
    }
    assert "kubetune-operator" in default_roles
    assert (
        roles[0]["rules"]
        == render(renderer, tmp_path).one("ClusterRole", "kubetune-operator")["rules"]
    )


def test_every_rbac_rule_is_commented() -> None:
    sources = [
        CHART / "templates" / "_helpers.tpl",
        *sorted((CHART / "templates").glob("rbac-*.yaml")),
    ]
    checked = 0
    for path in sources:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if line.lstrip().startswith("- apiGroups:"):
                checked += 1
                above = lines[number - 1].strip()
                assert above.startswith("#"), f"{path.name}:{number + 1}: rule without a comment"
    assert checked >= 16


def test_aggregated_roles(renderer: Helm, tmp_path: Path) -> None:
    rendering = render(renderer, tmp_path)
    view = rendering.one("ClusterRole", "kubetune-view")
    edit = rendering.one("ClusterRole", "kubetune-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert set(view["rules"][0]["verbs"]) == {"get", "list", "watch"}
    assert not any(r.endswith("/status") for r in edit["rules"][0]["resources"])
    off = render(renderer, tmp_path, {"rbac": {"aggregatedRoles": False}})
    assert {r["metadata"]["name"] for r in off.of_kind("ClusterRole")} == {
        "kubetune-operator",
        "kubetune-operator-discovery",
    }


def test_serving_agent_role_names_one_configmap(renderer: Helm, tmp_path: Path) -> None:
    rendering = render(renderer, tmp_path, SCENARIOS["object-store-and-agents"])
    role = rendering.one("Role", "kubetune-agent-llama3")
    configmaps, pods = role["rules"]
    assert configmaps["resourceNames"] == ["kubetune-adapters-llama3"]
    assert set(configmaps["verbs"]) == {"get", "list", "watch"}
    assert pods["resources"] == ["pods"] and set(pods["verbs"]) == {"get", "patch"}
    binding = rendering.one("RoleBinding", "kubetune-agent-llama3")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "llama3", "namespace": "serving"}
    ]


# ------------------------------------------------------------------ CRDs and dashboard


def test_crd_templates_match_the_single_source(renderer: Helm, tmp_path: Path) -> None:
    rendered = {
        c["metadata"]["name"]: c
        for c in render(renderer, tmp_path).of_kind("CustomResourceDefinition")
    }
    sources = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    assert sorted(rendered) == sorted(s["metadata"]["name"] for s in sources)
    for source in sources:
        crd = rendered[source["metadata"]["name"]]
        assert crd["spec"] == source["spec"], f"{crd['metadata']['name']}: run `make chart-docs`"
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_crds_can_be_left_to_kubectl(renderer: Helm, tmp_path: Path) -> None:
    assert (
        render(renderer, tmp_path, {"crds": {"install": False}}).of_kind("CustomResourceDefinition")
        == []
    )
    unkept = render(renderer, tmp_path, {"crds": {"keep": False}}).of_kind(
        "CustomResourceDefinition"
    )
    assert unkept and all("annotations" not in c["metadata"] for c in unkept)


def test_monitoring_objects(renderer: Helm, tmp_path: Path) -> None:
    assert render(renderer, tmp_path).of_kind("ServiceMonitor") == []
    rendering = render(renderer, tmp_path, SCENARIOS["monitoring"])
    monitor = rendering.one("ServiceMonitor")
    service = rendering.one("Service")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert service["spec"]["selector"] == rendering.deployment["spec"]["selector"]["matchLabels"]
    dashboard = rendering.one("ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"folder": "ML"}
    board = json.loads(dashboard["data"]["kubetune-operator.json"])
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for metric in (
        "kubetune_reconcile_total",
        "kubetune_reconcile_duration_seconds_bucket",
        "kubetune_runs",
        "kubetune_run_duration_seconds_bucket",
    ):
        assert metric in exprs
    titles = {p["title"] for p in board["panels"]}
    assert {"Reconcile rate", "Reconcile errors", "Runs by phase", "Run duration"} <= titles
