"""The node agent runs real pods as local processes against a real control plane.

Covers: a Job's pod runs (testbox image -> Dockerfile ENTRYPOINT + args) and the Job controller
marks the Job Complete; env from literals with $(VAR) expansion, ConfigMaps, Secrets, envFrom,
fieldRef and resourceFieldRef, and $(VAR) in args; configMap, secret, emptyDir (disk and
Memory), downwardAPI and the projected service-account token visible to the process through
env/arg path rewriting, KUBETUNE_PATH_MAP and the KUBETUNE_ROOT view, init containers in order,
and in-cluster API access with the pod's own token; exit codes and termination messages (File
and FallbackToLogsOnError) in the pod status and the Job's failure; restartPolicy OnFailure
restarts with lastState; a liveness probe restarts a container; a readiness probe gates Ready
and follows a ConfigMap update; deletion sends SIGTERM and SIGKILL after the grace period;
eviction yields DisruptionTarget and a Failed pod; Deployment pods become Ready and answer on
their pod IP:port (and through the Service's selector, the host-side stand-in for endpoints);
containers of one pod reach each other on localhost; processes a container daemonised die with
it; a sidecar (init container with restartPolicy Always) serves the pod and stops after it;
unknown images report ErrImagePull; hostPath is refused; GPU pods land on the GPU node with
their device; a PVC gets a directory that outlives its pods.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.services import service_urls
from tests.integration.cluster.cluster_helpers import (
    AgentHandle,
    condition,
    container_status,
    get_json,
    pod_phase,
    python_container,
    wait_for,
)


def create(k: Kubectl, manifest: dict[str, Any]) -> None:
    """Create once the namespace's default ServiceAccount exists (admission needs it)."""
    k.run("wait", "--for=create", "serviceaccount/default", "--timeout=30s")
    k.apply(manifest)


def finished(k: Kubectl, name: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (p := get_json(k, "pod", name))
            and p["status"].get("phase") in ("Succeeded", "Failed")
            and p
        ),
        what=f"pod {name} to finish",
    )


def job(agent: AgentHandle, name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {"spec": agent.pod_spec(*containers, restartPolicy="Never")},
        },
    }


def job_pod(k: Kubectl, name: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        pods = json.loads(k.run("get", "pods", "-l", f"job-name={name}", "-o", "json").stdout)
        return pods["items"][0] if pods["items"] else None

    return wait_for(find, what=f"a pod of job {name}")


def test_job_pod_runs_and_job_completes(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    create(k, job(node_agent, "hello", python_container("print('hello from a job')")))
    k.run("wait", "--for=condition=Complete", "job/hello", "--timeout=60s")
    pod = job_pod(k, "hello")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["spec"]["nodeName"] == node_agent.cpu_node
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network("127.77.0.0/16")
    state = container_status(pod)["state"]["terminated"]
    assert (state["exitCode"], state["reason"]) == (0, "Completed")
    assert condition(pod, "Ready")["reason"] == "PodCompleted"
    assert condition(pod, "Initialized")["status"] == "True"
    assert node_agent.log(namespace, pod["metadata"]["name"]) == "hello from a job\n"


def test_image_defaults_come_from_the_dockerfile(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    # No command, no args: the testbox Dockerfile's ENTRYPOINT + CMD + ENV run as written.
    create(
        k,
        node_agent.pod(
            "defaults", {"name": "main", "image": "kubetune/testbox"}, restartPolicy="Never"
        ),
    )
    assert finished(k, "defaults")["status"]["phase"] == "Succeeded"
    assert node_agent.log(namespace, "defaults") == "hello from testbox\n"


def test_env_from_literals_configmaps_secrets_and_field_refs(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"MODE": "fast", "LEVEL": "3"},
        }
    )
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "data": {"TOKEN": base64.b64encode(b"s3cr3t").decode()},
        }
    )
    code = (
        "import json, os, sys; keep = {k: v for k, v in os.environ.items() "
        "if k.startswith(('E_', 'CM_', 'TOKEN'))}; keep['argv'] = sys.argv[1:]; "
        "print(json.dumps(keep))"
    )
    container = python_container(
        code,
        args=[code, "$(E_LITERAL)", "$$(E_LITERAL)", "$(E_UNDEFINED)"],
        env=[
            {"name": "E_LITERAL", "value": "plain"},
            {"name": "E_EXPANDED", "value": "$(E_LITERAL)-$(CM_MODE)-$(NOPE)"},
            {
                "name": "E_CM",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}},
            },
            {"name": "E_SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "TOKEN"}}},
            {
                "name": "E_OPTIONAL",
                "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "x", "optional": True}},
            },
            {"name": "E_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "E_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "E_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {
                "name": "E_LABEL",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}},
            },
            {
                "name": "E_NOTE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}},
            },
            {"name": "E_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "E_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {
                "name": "E_MEM_MI",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
        ],
        envFrom=[
            {"configMapRef": {"name": "settings"}, "prefix": "CM_"},
            {"secretRef": {"name": "creds"}},
        ],
        resources={"limits": {"memory": "64Mi", "cpu": "500m"}},
    )
    manifest = node_agent.pod("envs", container, restartPolicy="Never")
    manifest["metadata"].update(labels={"app": "demo"}, annotations={"note": "hi"})
    create(k, manifest)
    pod = finished(k, "envs")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    env = json.loads(node_agent.log(namespace, "envs"))
    assert env["argv"] == ["plain", "$(E_LITERAL)", "$(E_UNDEFINED)"]
    assert env["E_EXPANDED"] == "plain-fast-$(NOPE)"
    assert (env["E_CM"], env["E_SECRET"], env["TOKEN"]) == ("3", "s3cr3t", "s3cr3t")
    assert (env["CM_MODE"], env["CM_LEVEL"]) == ("fast", "3")
    assert "E_OPTIONAL" not in env
    assert (env["E_NAME"], env["E_NS"], env["E_UID"]) == (
        "envs",
        namespace,
        pod["metadata"]["uid"],
    )
    assert (env["E_LABEL"], env["E_NOTE"]) == ("demo", "hi")
    assert env["E_IP"] == pod["status"]["podIP"]
    assert env["E_NODE"] == node_agent.cpu_node
    assert env["E_MEM_MI"] == "64"


def test_missing_configmap_blocks_the_container_until_it_exists(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    container = python_container(
        "import os; print(os.environ['LATE'])",
        env=[{"name": "LATE", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "v"}}}],
    )
    create(k, node_agent.pod("late", container, restartPolicy="Never"))
    waiting = wait_for(
        lambda: (
            (p := get_json(k, "pod", "late"))
            and container_status(p).get("state", {}).get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
            and container_status(p)["state"]["waiting"]
        ),
        what="CreateContainerConfigError",
    )
    assert 'configmap "late" not found' in waiting["message"]
    assert pod_phase(k, "late") == "Pending"
    k.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}, "data": {"v": "ok"}}
    )
    assert finished(k, "late")["status"]["phase"] == "Succeeded"
    assert node_agent.log(namespace, "late") == "ok\n"


VOLUME_CHECK = r"""
import json, os, pathlib, ssl, sys, urllib.request
pm = json.loads(os.environ['KUBETUNE_PATH_MAP'])
def host(p):
    best = max((m for m in pm if p == m or p.startswith(m.rstrip('/') + '/')), key=len)
    return pm[best] + p[len(best):]
root = pathlib.Path(os.environ['KUBETUNE_ROOT'])
sa = host('/var/run/secrets/kubernetes.io/serviceaccount')
out = {
  'arg_config': pathlib.Path(sys.argv[1]).read_text(),
  'env_config': open(os.environ['CONFIG_FILE']).read(),
  'root_view': (root / 'etc/app/app.conf').read_text(),
  'items': sorted(os.listdir(host('/etc/app'))),
  'secret': open(host('/etc/creds/password')).read(),
  'secret_mode': oct(os.stat(host('/etc/creds/password')).st_mode & 0o777),
  'from_init': open(host('/scratch/init.txt')).read(),
  'memory_on_shm': host('/fast').startswith('/dev/shm/'),
  'labels': open(host('/podinfo/labels')).read(),
  'namespace': open(sa + '/namespace').read(),
  'token_is_jwt': open(sa + '/token').read().count('.') == 2,
  'has_ca': 'BEGIN CERTIFICATE' in open(sa + '/ca.crt').read(),
}
import yaml
cfg = yaml.safe_load(open(os.environ['KUBECONFIG']))
server = cfg['clusters'][0]['cluster']['server']
ctx = ssl.create_default_context(cafile=cfg['clusters'][0]['cluster']['certificate-authority'])
review = {'apiVersion': 'authentication.k8s.io/v1', 'kind': 'SelfSubjectReview'}
token = cfg['users'][0]['user']['token']
req = urllib.request.Request(
    server + '/apis/authentication.k8s.io/v1/selfsubjectreviews', method='POST',
    data=json.dumps(review).encode(),
    headers={'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token})
reply = json.load(urllib.request.urlopen(req, context=ctx))
out['whoami'] = reply['status']['userInfo']['username']
print(json.dumps(out))
"""


def test_volumes_are_visible_through_path_rewriting_and_the_path_map(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app"},
            "data": {"app.conf": "threads=4\n", "other": "x"},
        }
    )
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db"},
            "stringData": {"password": "hunter2"},
        }
    )
    append = "import sys; open(sys.argv[1], 'a').write(sys.argv[2])"
    inits = [
        python_container(
            append,
            name=name,
            args=[append, "/scratch/init.txt", text],
            volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
        )
        for name, text in (("first", "written by "), ("second", "init"))
    ]
    main = python_container(
        VOLUME_CHECK,
        args=[VOLUME_CHECK, "/etc/app/app.conf"],
        env=[{"name": "CONFIG_FILE", "value": "/etc/app/app.conf"}],
        volumeMounts=[
            {"name": "config", "mountPath": "/etc/app"},
            {"name": "secret", "mountPath": "/etc/creds", "readOnly": True},
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "fast", "mountPath": "/fast"},
            {"name": "podinfo", "mountPath": "/podinfo"},
        ],
    )
    manifest = node_agent.pod(
        "volumes",
        main,
        restartPolicy="Never",
        initContainers=inits,
        volumes=[
            {"name": "config", "configMap": {"name": "app"}},
            {
                "name": "secret",
                "secret": {
                    "secretName": "db",
                    "items": [{"key": "password", "path": "password", "mode": 0o400}],
                },
            },
            {"name": "scratch", "emptyDir": {}},
            {"name": "fast", "emptyDir": {"medium": "Memory"}},
            {
                "name": "podinfo",
                "downwardAPI": {
                    "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                },
            },
        ],
    )
    manifest["metadata"]["labels"] = {"app": "volumes", "tier": "test"}
    create(k, manifest)
    pod = finished(k, "volumes")
    assert pod["status"]["phase"] == "Succeeded", node_agent.log(namespace, "volumes", "main")
    for init in pod["status"]["initContainerStatuses"]:
        assert init["state"]["terminated"]["exitCode"] == 0
    seen = json.loads(node_agent.log(namespace, "volumes", "main"))
    assert seen["arg_config"] == seen["env_config"] == seen["root_view"] == "threads=4\n"
    assert seen["items"] == ["app.conf", "other"]
    assert (seen["secret"], seen["secret_mode"]) == ("hunter2", "0o400")
    assert seen["from_init"] == "written by init"  # both init containers, in order
    assert seen["labels"] == 'app="volumes"\ntier="test"'
    assert seen["namespace"] == namespace
    assert seen["token_is_jwt"] and seen["has_ca"]
    assert seen["whoami"] == f"system:serviceaccount:{namespace}:default"


def test_exit_codes_and_termination_messages_fail_the_job(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    writes_message = python_container(
        "import os, sys; open(os.environ['KUBETUNE_TERMINATION_LOG'], 'w')"
        '.write(\'{"reason": "InvalidDataset"}\'); sys.exit(3)',
        name="writer",
    )
    falls_back = python_container(
        "import sys; print('line one'); print('the real error'); sys.exit(4)",
        name="logger",
        terminationMessagePolicy="FallbackToLogsOnError",
    )
    create(k, job(node_agent, "fails", writes_message, falls_back))
    k.run("wait", "--for=condition=Failed", "job/fails", "--timeout=60s")
    pod = job_pod(k, "fails")
    assert pod["status"]["phase"] == "Failed"
    writer = container_status(pod, "writer")["state"]["terminated"]
    assert (writer["exitCode"], writer["reason"]) == (3, "Error")
    assert writer["message"] == '{"reason": "InvalidDataset"}'
    logger = container_status(pod, "logger")["state"]["terminated"]
    assert logger["exitCode"] == 4
    assert logger["message"].splitlines() == ["line one", "the real error"]
    job_obj = get_json(k, "job", "fails")
    assert job_obj is not None
    assert condition(job_obj, "Failed")["reason"] == "BackoffLimitExceeded"


def test_on_failure_restarts_until_success(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    code = (
        "import pathlib, sys; f = pathlib.Path(sys.argv[1]); n = int(f.read_text() or 0) "
        "if f.exists() else 0; f.write_text(str(n + 1)); print('attempt', n + 1); "
        "sys.exit(0 if n + 1 >= 3 else 5)"
    )
    container = python_container(
        code,
        args=[code, "/state/count"],
        volumeMounts=[{"name": "state", "mountPath": "/state"}],
    )
    create(
        k,
        node_agent.pod(
            "flaky",
            container,
            restartPolicy="OnFailure",
            volumes=[{"name": "state", "emptyDir": {}}],
        ),
    )
    pod = finished(k, "flaky")
    assert pod["status"]["phase"] == "Succeeded"
    status = container_status(pod)
    assert status["restartCount"] == 2
    assert status["lastState"]["terminated"]["exitCode"] == 5
    assert node_agent.log(namespace, "flaky") == "attempt 3\n"
    assert node_agent.log(namespace, "flaky", previous=True) == "attempt 2\n"


def test_liveness_probe_failure_restarts_the_container(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    container = python_container(
        "import time; print('up', flush=True); time.sleep(600)",
        livenessProbe={
            "exec": {"command": ["python3", "-c", "import sys; sys.exit(1)"]},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
    )
    create(k, node_agent.pod("unhealthy", container, terminationGracePeriodSeconds=1))
    pod = wait_for(
        lambda: (
            (p := get_json(k, "pod", "unhealthy"))
            and container_status(p).get("restartCount", 0) >= 1
            and p
        ),
        what="a liveness restart",
    )
    assert pod["status"]["phase"] == "Running"
    last = container_status(pod)["lastState"]["terminated"]
    assert last["exitCode"] in (137, 143)
    k.run("delete", "pod", "unhealthy", "--wait=false")


READY_SERVER = r"""
import http.server, os, sys
flag = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ready = open(flag).read().strip() == 'yes'
        if self.path == '/ready':
            print('ready?', 'yes' if ready else 'no', flush=True)
        body = os.environ['HOSTNAME'].encode()
        self.send_response(200 if ready or self.path != '/ready' else 503)
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(('0.0.0.0', 8080), H).serve_forever()
"""


def server_container(flag_mount: bool = True) -> dict[str, Any]:
    return python_container(
        READY_SERVER,
        args=[READY_SERVER, "/flags/ready"],
        ports=[{"containerPort": 8080, "name": "http"}],
        readinessProbe={"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
        volumeMounts=[{"name": "flags", "mountPath": "/flags"}] if flag_mount else [],
    )


def test_readiness_probe_gates_ready_and_follows_configmap_updates(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flags"},
            "data": {"ready": "no"},
        }
    )
    create(
        k,
        node_agent.pod(
            "gated", server_container(), volumes=[{"name": "flags", "configMap": {"name": "flags"}}]
        ),
    )
    wait_for(
        lambda: (
            node_agent.log(namespace, "gated").count("ready? no") >= 2
            if pod_phase(k, "gated") == "Running"
            else None
        ),
        what="two failed readiness probes",
    )
    pod = get_json(k, "pod", "gated")
    assert pod is not None
    assert condition(pod, "Ready")["status"] == "False"
    assert container_status(pod)["ready"] is False
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flags"},
            "data": {"ready": "yes"},
        }
    )
    pod = wait_for(
        lambda: (
            (p := get_json(k, "pod", "gated"))
            and condition(p, "Ready").get("status") == "True"
            and p
        ),
        what="Ready after the ConfigMap update",
    )
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080/", timeout=5) as resp:
        assert resp.read().decode() == "gated"


def test_deployment_pods_become_ready_and_answer_on_their_pod_ips(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flags"},
            "data": {"ready": "yes"},
        }
    )
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": node_agent.pod_spec(
            server_container(), volumes=[{"name": "flags", "configMap": {"name": "flags"}}]
        ),
    }
    create(
        k,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": template,
            },
        },
    )
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        }
    )
    k.run("rollout", "status", "deployment/web", "--timeout=90s")
    pods = json.loads(k.run("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2  # both listen on 8080: one loopback address each
    answers = set()
    for ip in ips:
        with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as resp:
            answers.add(resp.read().decode())
    assert answers == {p["metadata"]["name"] for p in pods}
    urls = service_urls(k, namespace=namespace, service="web", port="http")
    assert sorted(urls) == sorted(f"http://{ip}:8080" for ip in ips)


def test_containers_of_a_pod_reach_each_other_on_localhost(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flags"},
            "data": {"ready": "yes"},
        }
    )
    client = python_container(
        "import time, urllib.request\n"
        "for _ in range(100):\n"
        "    try:\n"
        "        print(urllib.request.urlopen('http://localhost:8080/').read().decode()); break\n"
        "    except OSError: time.sleep(0.2)\n",
        name="client",
    )
    create(
        k,
        node_agent.pod(
            "pair",
            server_container(),
            client,
            restartPolicy="Never",
            volumes=[{"name": "flags", "configMap": {"name": "flags"}}],
        ),
    )
    wait_for(
        lambda: (
            (p := get_json(k, "pod", "pair"))
            and container_status(p, "client").get("state", {}).get("terminated")
        ),
        what="the client container to finish",
    )
    assert node_agent.log(namespace, "pair", "client") == "pair\n"
    k.run("delete", "pod", "pair", "--wait=false")


def test_delete_sends_sigterm_then_sigkill_after_the_grace_period(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    graceful = python_container(
        "import signal, sys, time\n"
        "def bye(*_): print('got SIGTERM', flush=True); sys.exit(7)\n"
        "signal.signal(signal.SIGTERM, bye); print('ready', flush=True)\n"
        "while True: time.sleep(1)\n",
        name="graceful",
    )
    stubborn = python_container(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: print('ignoring SIGTERM', flush=True))\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(1)\n",
        name="stubborn",
    )
    manifest = node_agent.pod("doomed", graceful, stubborn, terminationGracePeriodSeconds=2)
    manifest["metadata"]["finalizers"] = ["kubetune.io/test-hold"]
    create(k, manifest)
    wait_for(
        lambda: (
            all(
                node_agent.log(namespace, "doomed", c).startswith("ready")
                for c in ("graceful", "stubborn")
            )
            if pod_phase(k, "doomed") == "Running"
            else None
        ),
        what="both containers running",
    )
    k.run("delete", "pod", "doomed", "--wait=false")
    try:
        pod = wait_for(
            lambda: (
                (p := get_json(k, "pod", "doomed")) and p["status"].get("phase") == "Failed" and p
            ),
            what="the deleted pod's final status",
        )
        graceful_state = container_status(pod, "graceful")["state"]["terminated"]
        stubborn_state = container_status(pod, "stubborn")["state"]["terminated"]
        assert graceful_state["exitCode"] == 7
        assert stubborn_state["exitCode"] == 137  # SIGKILL after the grace period
        assert "got SIGTERM" in node_agent.log(namespace, "doomed", "graceful")
        assert "ignoring SIGTERM" in node_agent.log(namespace, "doomed", "stubborn")
    finally:
        k.run("patch", "pod", "doomed", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait_for(lambda: get_json(k, "pod", "doomed") is None, what="the pod object to go")


def test_eviction_marks_disruption_target_and_fails_the_pod(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    manifest = node_agent.pod(
        "evictee", python_container("import time; print('ready', flush=True); time.sleep(600)")
    )
    manifest["metadata"]["finalizers"] = ["kubetune.io/test-hold"]
    create(k, manifest)
    wait_for(lambda: pod_phase(k, "evictee") == "Running", what="Running")
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "evictee", "namespace": namespace},
    }
    k.run(
        "create",
        "--raw",
        f"/api/v1/namespaces/{namespace}/pods/evictee/eviction",
        "-f",
        "-",
        stdin=json.dumps(eviction),
    )
    try:
        pod = wait_for(
            lambda: (
                (p := get_json(k, "pod", "evictee")) and p["status"].get("phase") == "Failed" and p
            ),
            what="the evicted pod to fail",
        )
        target = condition(pod, "DisruptionTarget")
        assert (target["status"], target["reason"]) == ("True", "EvictionByEvictionAPI")
        assert container_status(pod)["state"]["terminated"]["exitCode"] in (137, 143)
        assert condition(pod, "Ready")["status"] == "False"
    finally:
        k.run("patch", "pod", "evictee", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')


def test_unknown_image_reports_err_image_pull(node_agent: AgentHandle, k: Kubectl) -> None:
    create(k, node_agent.pod("nope", {"name": "main", "image": "docker.io/library/busybox:1.36"}))
    waiting = wait_for(
        lambda: (
            (p := get_json(k, "pod", "nope"))
            and container_status(p).get("state", {}).get("waiting", {}).get("reason")
            in ("ErrImagePull", "ImagePullBackOff")
            and container_status(p)["state"]["waiting"]
        ),
        what="ErrImagePull",
    )
    assert "kubetune/<name>" in waiting["message"]
    assert pod_phase(k, "nope") == "Pending"


def test_host_path_volumes_are_refused(node_agent: AgentHandle, k: Kubectl) -> None:
    create(
        k,
        node_agent.pod(
            "hostpath",
            python_container("print(1)", volumeMounts=[{"name": "h", "mountPath": "/h"}]),
            volumes=[{"name": "h", "hostPath": {"path": "/etc"}}],
        ),
    )
    pod = finished(k, "hostpath")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "UnsupportedVolume"
    assert "hostPath" in pod["status"]["message"]


def test_gpu_pods_land_on_the_gpu_node_with_their_device(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    code = "import os; print(repr(os.environ['CUDA_VISIBLE_DEVICES']))"
    gpu = python_container(code, resources={"limits": {"nvidia.com/gpu": "1"}})
    create(k, node_agent.pod("gpu", gpu, gpu=True, restartPolicy="Never"))
    create(k, node_agent.pod("cpu", python_container(code), restartPolicy="Never"))
    assert finished(k, "gpu")["spec"]["nodeName"] == node_agent.gpu_node
    assert finished(k, "cpu")["spec"]["nodeName"] == node_agent.cpu_node
    assert node_agent.log(namespace, "gpu") == "'0'\n"
    assert node_agent.log(namespace, "cpu") == "''\n"


@pytest.mark.parametrize("claim", ["data"])
def test_persistent_volume_claims_get_a_directory_that_outlives_pods(
    node_agent: AgentHandle, k: Kubectl, namespace: str, claim: str
) -> None:
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )
    volume = [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]
    mount = [{"name": "d", "mountPath": "/data", "subPath": "run"}]
    write = python_container(
        "import sys; open(sys.argv[1], 'w').write('kept')",
        args=["import sys; open(sys.argv[1], 'w').write('kept')", "/data/file"],
        volumeMounts=mount,
    )
    create(k, node_agent.pod("writer", write, restartPolicy="Never", volumes=volume))
    assert finished(k, "writer")["status"]["phase"] == "Succeeded"
    k.run("delete", "pod", "writer", "--wait=true", "--timeout=30s")
    read = python_container(
        "import sys; print(open(sys.argv[1]).read())",
        args=["import sys; print(open(sys.argv[1]).read())", "/data/file"],
        volumeMounts=mount,
    )
    create(k, node_agent.pod("reader", read, restartPolicy="Never", volumes=volume))
    assert finished(k, "reader")["status"]["phase"] == "Succeeded"
    assert node_agent.log(namespace, "reader") == "kept\n"
    pvc = get_json(k, "pvc", claim)
    assert pvc is not None and pvc["status"]["phase"] == "Bound"
    pv = get_json(k, "pv", pvc["spec"]["volumeName"])
    assert pv is not None
    assert pv["spec"]["hostPath"]["path"].startswith(str(node_agent.workdir / "pvcs"))


def test_processes_a_container_leaves_behind_die_with_it(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    code = (
        "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(600)'], start_new_session=True); print(p.pid)"
    )
    create(k, node_agent.pod("spawner", python_container(code), restartPolicy="Never"))
    assert finished(k, "spawner")["status"]["phase"] == "Succeeded"
    pid = int(node_agent.log(namespace, "spawner"))
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what=f"the daemonised pid {pid} to die")


def test_sidecar_init_containers_serve_the_pod_and_stop_after_it(
    node_agent: AgentHandle, k: Kubectl, namespace: str
) -> None:
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flags"},
            "data": {"ready": "yes"},
        }
    )
    sidecar = {**server_container(), "name": "sidecar", "restartPolicy": "Always"}
    client = python_container(
        "import time, urllib.request\n"
        "for _ in range(100):\n"
        "    try:\n"
        "        print(urllib.request.urlopen('http://localhost:8080/').read().decode()); break\n"
        "    except OSError: time.sleep(0.2)\n",
        name="client",
    )
    create(
        k,
        node_agent.pod(
            "with-sidecar",
            client,
            restartPolicy="Never",
            initContainers=[sidecar],
            volumes=[{"name": "flags", "configMap": {"name": "flags"}}],
        ),
    )
    pod = finished(k, "with-sidecar")
    assert pod["status"]["phase"] == "Succeeded"
    assert node_agent.log(namespace, "with-sidecar", "client") == "with-sidecar\n"
    side = pod["status"]["initContainerStatuses"][0]
    assert "terminated" in side["state"]  # stopped once the app container finished


def test_kubectl_logs_reads_containers_through_the_kubelet_api(
    node_agent: AgentHandle, k: Kubectl
) -> None:
    """The API server proxies pods/log to the agent's kubelet API (TLS both ways, local CA)."""
    code = (
        "import sys, time\n"
        "for i in range(5):\n"
        "    print(f'line {i}', flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "time.sleep(3)\n"
        "print('after the pause', flush=True)\n"
    )
    create(k, node_agent.pod("talker", python_container(code), restartPolicy="Never"))
    wait_for(lambda: "line 4" in node_agent.log(k.namespace, "talker"), what="the first lines")
    # A client that connects and never speaks TLS must not stall the server for others.
    node = get_json(k, "node", node_agent.cpu_node)
    assert node is not None
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    silent = socket.create_connection(("127.0.0.1", port))

    # --follow streams until the container exits, including what it prints later.
    followed = k.run("logs", "talker", "--follow", "--request-timeout=60s").stdout
    assert followed.splitlines() == [
        "line 0",
        "line 1",
        "line 2",
        "line 3",
        "line 4",
        "to stderr",
        "after the pause",
    ]
    assert k.run("logs", "talker", "--tail=2").stdout == "to stderr\nafter the pause\n"
    assert k.run("logs", "talker", "--limit-bytes=6").stdout == "line 0"

    missing = k.run("logs", "talker", "-c", "nope", check=False)
    assert missing.returncode != 0
    assert "nope" in missing.stderr
    previous = k.run("logs", "talker", "--previous", check=False)
    assert previous.returncode != 0
    assert "has not restarted" in previous.stderr
    silent.close()
