"""The end-to-end flow as reusable steps, shared by the e2e suite and `make demo`.

A ``Cluster`` is whatever cluster we were given: the local process cluster (default, brought
up by ``python -m kubetune.cluster up``) or any cluster reached through ``KUBECONFIG`` with an
object store in ``AWS_*`` (kind, see ``e2e/kind/``). Steps: install kubetune with Helm, seed the
object store with the CPU-tiny model and the sample golden examples, train, serve, ask.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
import yaml

from kubetune.cluster import polling
from kubetune.cluster.binaries import find_binary
from kubetune.cluster.kubectl import Kubectl

REPO = Path(__file__).resolve().parent.parent
RELEASE = "kubetune"
RELEASE_NAMESPACE = "kubetune-system"
S3_SECRET = "kubetune-s3"
OPERATOR_S3_SECRET = "kubetune-operator-s3"
MODEL_URI = "s3://models/tiny-llama/"
# Images: on the local cluster any tag maps to images/<name>/Dockerfile; on kind, the tag the
# images were built and loaded with (e2e/kind/up.sh).
IMAGE_TAG = os.environ.get("KUBETUNE_E2E_IMAGE_TAG", "0.1.0")
SERVING_IMAGE = f"kubetune/serving:{IMAGE_TAG}"
T = TypeVar("T")


def log(message: str) -> None:
    print(f"[kubetune] {message}", flush=True)


def eventually(probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
    return polling.eventually(probe, timeout=timeout, what=what, interval=1.0)


@dataclass
class Cluster:
    kubeconfig: Path
    env: dict[str, str]
    """AWS_* of the object store, as reachable from this machine and from pods."""
    state_dir: Path | None = None
    pod_s3_endpoint: str = ""
    """The object store as pods reach it, when that differs from AWS_ENDPOINT_URL (kind)."""
    kubectl: Kubectl = field(init=False)

    def __post_init__(self) -> None:
        self.kubectl = Kubectl(self.kubeconfig, timeout=900)

    @property
    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env.get("AWS_DEFAULT_REGION", "us-east-1"),
        )

    @property
    def endpoint_for_pods(self) -> str:
        return self.pod_s3_endpoint or self.env["AWS_ENDPOINT_URL"]

    def ns(self, namespace: str) -> Kubectl:
        return self.kubectl.with_namespace(namespace)

    def pod_log(self, namespace: str, pod: str, container: str | None = None) -> str:
        """A container's log (the local cluster keeps them in files; elsewhere kubectl logs)."""
        if self.state_dir is None:
            args = ["logs", pod, f"--namespace={namespace}"]
            if container:
                args += ["-c", container]
            return self.kubectl.run(*args, check=False).stdout
        args = [
            sys.executable,
            "-m",
            "kubetune.cluster",
            "logs",
            f"{namespace}/{pod}",
            f"--state-dir={self.state_dir}",
        ]
        if container:
            args += ["-c", container]
        return subprocess.run(args, capture_output=True, text=True, check=False).stdout


def _parse_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def local_cluster(state_dir: Path) -> Cluster:
    """Bring up (or reuse) the local process cluster whose state lives in ``state_dir``."""
    began = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "kubetune.cluster", "up", f"--state-dir={state_dir}"],
        check=True,
        cwd=REPO,
    )
    env = _parse_env_file(state_dir / "env")
    log(f"local cluster ready in {time.monotonic() - began:.1f}s ({state_dir})")
    return Cluster(kubeconfig=Path(env.pop("KUBECONFIG")), env=env, state_dir=state_dir)


def local_cluster_down(state_dir: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "kubetune.cluster", "down", f"--state-dir={state_dir}"],
        check=False,
        cwd=REPO,
    )


def given_cluster() -> Cluster:
    """The cluster named by KUBECONFIG and AWS_* (kind or any other real cluster)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    missing = {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} - env.keys()
    if missing:
        raise SystemExit(f"set {', '.join(sorted(missing))} for the cluster's object store")
    return Cluster(
        kubeconfig=Path(os.environ["KUBECONFIG"]),
        env=env,
        pod_s3_endpoint=os.environ.get("KUBETUNE_E2E_POD_S3_ENDPOINT", ""),
    )


# ---------------------------------------------------------------- install


def _secret(namespace: str, name: str, env: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
    }


def ensure_namespace(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        field_manager="kubetune-e2e",
    )


def install_kubetune(
    cluster: Cluster,
    *,
    workload_namespaces: list[str],
    serving_deployments: list[tuple[str, str]],
    progress_interval: int = 2,
    image_tag: str = IMAGE_TAG,
) -> float:
    """``helm upgrade --install`` the chart from the working tree; returns seconds taken."""
    began = time.monotonic()
    ensure_namespace(cluster, RELEASE_NAMESPACE)
    cluster.kubectl.apply(
        _secret(RELEASE_NAMESPACE, OPERATOR_S3_SECRET, cluster.env), field_manager="kubetune-e2e"
    )
    for namespace in workload_namespaces:
        ensure_namespace(cluster, namespace)
        cluster.kubectl.apply(
            _secret(namespace, S3_SECRET, cluster.env), field_manager="kubetune-e2e"
        )
    values = {
        "objectStore": {
            "endpoint": cluster.endpoint_for_pods,
            "region": cluster.env.get("AWS_DEFAULT_REGION", "us-east-1"),
            "secretName": S3_SECRET,
            "operatorCredentials": {"secretName": OPERATOR_S3_SECRET},
        },
        "operator": {"progressInterval": progress_interval},
        "servingAgent": {
            "deployments": [
                {"namespace": ns, "deployment": name, "serviceAccount": "default"}
                for ns, name in serving_deployments
            ]
        },
    }
    if image_tag:
        values["images"] = {name: {"tag": image_tag} for name in ("operator", "trainer", "serving")}
    values_file = (cluster.state_dir or Path("/tmp")) / "kubetune-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = subprocess.run(
        [
            str(find_binary("helm")),
            "upgrade",
            "--install",
            RELEASE,
            str(REPO / "charts/kubetune"),
            f"--namespace={RELEASE_NAMESPACE}",
            f"--kubeconfig={cluster.kubeconfig}",
            f"--values={values_file}",
            "--wait",
            "--timeout=5m",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm install failed:\n{result.stdout}\n{result.stderr}")
    took = time.monotonic() - began
    log(f"kubetune installed with helm in {took:.1f}s (operator running as a pod)")
    return took


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Seed:
    model_uri: str
    train_v1: str
    train_v2: str
    test: str
    broken: str
    prompts: list[str]


def _upload_tree(s3: Any, local: Path, uri: str) -> None:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    for path in sorted(local.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}{path.relative_to(local).as_posix()}")


def seed_object_store(cluster: Cluster, workdir: Path) -> Seed:
    """Build the CPU-tiny model and the sample golden examples, and upload them."""
    from kubetune.trainer import samples, tiny  # noqa: PLC0415 - torch only when seeding

    began = time.monotonic()
    s3 = cluster.s3
    files = samples.write_samples(workdir / "data")
    tiny.build_tiny_model(workdir / "model")
    _upload_tree(s3, workdir / "model", MODEL_URI)
    train = files["train"].read_text().splitlines()
    s3.put_object(
        Bucket="datasets", Key="support/v1/train.jsonl", Body=("\n".join(train) + "\n").encode()
    )
    # v2: a later export of the same examples in another order (the GitOps retrain
    # scenario): new bytes, no overlap with the held-out test set.
    v2 = train[20:] + train[:20]
    s3.put_object(
        Bucket="datasets", Key="support/v2/train.jsonl", Body=("\n".join(v2) + "\n").encode()
    )
    s3.upload_file(str(files["test"]), "datasets", "support/v1/test.jsonl")
    broken = [
        train[0],
        '{"messages": [{"role": "user", "content": "Refund?"}',
        json.dumps({"messages": [{"role": "robot", "content": "beep"}]}),
        train[1],
    ]
    s3.put_object(
        Bucket="datasets",
        Key="support/broken/train.jsonl",
        Body=("\n".join(broken) + "\n").encode(),
    )
    held_out = files["test"].read_text().splitlines()
    # Three questions spread over the held-out set (it is grouped by topic).
    prompts = [
        json.loads(line)["messages"][0]["content"]
        for line in held_out[:: max(1, len(held_out) // 3)][:3]
    ]
    log(
        f"seeded the object store with the tiny model and sample data in "
        f"{time.monotonic() - began:.1f}s"
    )
    return Seed(
        model_uri=MODEL_URI,
        train_v1="s3://datasets/support/v1/train.jsonl",
        train_v2="s3://datasets/support/v2/train.jsonl",
        test="s3://datasets/support/v1/test.jsonl",
        broken="s3://datasets/support/broken/train.jsonl",
        prompts=prompts,
    )


# ---------------------------------------------------------------- manifests


def finetunejob(name: str, *, seed: Seed, train: str, output: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": seed.model_uri},
            "dataset": {"train": train, "validationSplit": 0.1},
            "method": "lora",
            "lora": {"rank": 16, "alpha": 32, "targetModules": ["all-linear"]},
            "hyperparameters": {
                "epochs": 4,
                "learningRate": 1.0e-2,
                "batchSize": 8,
                "maxSeqLength": 256,
                "packing": True,
                "seed": 42,
            },
            "checkpointing": {"everySteps": 10, "everyMinutes": 1, "keep": 2},
            "resources": {"gpus": 0, "cpu": "2", "memory": "4Gi", "sharedMemory": "256Mi"},
            "evaluation": {
                "testSet": seed.test,
                "metrics": ["loss", "exactMatch"],
                "maxNewTokens": 48,
            },
            "output": {"uri": output},
        },
    }
    body["spec"].update(spec)
    return body


def kubetune_env(cluster: Cluster, namespace: str) -> dict[str, str]:
    """What a user's shell has after ``source .kubetune/env`` (plus the namespace)."""
    return {
        **os.environ,
        **cluster.env,
        "KUBECONFIG": str(cluster.kubeconfig),
        "KUBETUNE_NAMESPACE": namespace,
    }


def kubetune(
    cluster: Cluster, namespace: str, *args: str, capture: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run the ``kubetune`` command installed next to this interpreter."""
    binary = Path(sys.executable).parent / "kubetune"
    return subprocess.run(
        [str(binary), *args],
        env=kubetune_env(cluster, namespace),
        capture_output=capture,
        text=True,
        timeout=timeout,
        check=False,
    )


def ftj_status(k: Kubectl, name: str) -> dict[str, Any]:
    return dict(k.get("ftj", name).get("status") or {})


def follow_finetunejob(
    k: Kubectl,
    name: str,
    *,
    until: tuple[str, ...] = ("Succeeded", "Failed"),
    timeout: float = 900,
    run: str | None = None,
) -> dict[str, Any]:
    """Wait until the latest spec's run (or ``run``) reaches a phase in ``until``; the status.

    Scenarios that need a phase other than the final ones use this; `kubetune watch` is the
    user-facing way to follow a run (the demo and the CLI scenario use it).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = k.get("ftj", name)
        st = dict(obj.get("status") or {})
        current = st.get("currentRun", {})
        seen = st.get("observedGeneration", 0) >= obj["metadata"]["generation"]
        if seen and st.get("phase") in until and (run is None or current.get("name") == run):
            return st
        time.sleep(1)
    raise TimeoutError(f"{name} did not reach {until} in {timeout}s: {ftj_status(k, name)}")


def inference_deployment(
    name: str, *, seed: Seed, cluster: Cluster, replicas: int = 1
) -> list[dict[str, Any]]:
    """An inference Deployment running the reference engine on the tiny base model.

    An init container stages the base model from the object store into an emptyDir, as a
    production pod would from its own storage; the AdapterDeployment adds the agent.
    """
    labels = {"app": name}
    restricted = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    s3_env = [
        {"name": "AWS_ENDPOINT_URL", "value": cluster.endpoint_for_pods},
        {"name": "AWS_DEFAULT_REGION", "value": cluster.env.get("AWS_DEFAULT_REGION", "us-east-1")},
        *(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ),
    ]
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "initContainers": [
                            {
                                "name": "stage-model",
                                "image": SERVING_IMAGE,
                                "command": ["python", "-m", "kubetune.serving.stage_model"],
                                "args": [seed.model_uri, "/models/base"],
                                "env": s3_env,
                                "securityContext": restricted,
                                "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                            }
                        ],
                        "containers": [
                            {
                                "name": "engine",
                                "image": SERVING_IMAGE,
                                "command": ["python", "-m", "kubetune.serving.engine"],
                                "args": [
                                    "--model=/models/base",
                                    "--served-model-name=tiny-llama",
                                    "--host=0.0.0.0",
                                    "--port=8000",
                                    "--threads=1",
                                ],
                                "ports": [{"name": "engine", "containerPort": 8000}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/health", "port": 8000},
                                    "periodSeconds": 2,
                                },
                                "securityContext": restricted,
                                "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                            }
                        ],
                        "volumes": [{"name": "models", "emptyDir": {}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            # Clients reach the adapter agent (servingPort 8080), which routes to the engine.
            "spec": {
                "selector": labels,
                "ports": [{"name": "openai", "port": 80, "targetPort": 8080}],
            },
        },
    ]


def adapterdeployment(name: str, *, deployment: str, job: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "AdapterDeployment",
        "metadata": {"name": name},
        "spec": {
            "adapterName": name,
            "source": {"fineTuneJobRef": {"name": job}},
            "target": {"deploymentName": deployment, "engine": "kubetune"},
        },
    }
    body["spec"].update(spec)
    return body


# ---------------------------------------------------------------- clients


@contextmanager
def openai_client(cluster: Cluster, *, namespace: str, service: str) -> Iterator[Any]:
    """The official OpenAI client pointed at the inference Service.

    On the local cluster, pods have loopback addresses this machine reaches directly; on any
    other cluster, through ``kubectl port-forward`` to the Service.
    """
    from openai import OpenAI  # noqa: PLC0415 - only the clients need it

    from kubetune.cluster.controlplane import free_port  # noqa: PLC0415
    from kubetune.cluster.services import service_urls  # noqa: PLC0415

    forward: subprocess.Popen[str] | None = None
    if cluster.state_dir is not None:
        urls = eventually(
            lambda: service_urls(cluster.kubectl, namespace=namespace, service=service, port=80),
            timeout=300,
            what=f"a ready pod behind service {service}",
        )
        base_url = urls[0]
    else:
        port = free_port()
        forward = subprocess.Popen(
            [
                str(find_binary("kubectl")),
                f"--kubeconfig={cluster.kubeconfig}",
                f"--namespace={namespace}",
                "port-forward",
                f"service/{service}",
                f"{port}:80",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        base_url = f"http://127.0.0.1:{port}"
        time.sleep(2)
    client = OpenAI(base_url=f"{base_url}/v1", api_key="not-needed", max_retries=2, timeout=60)
    try:
        yield client
    finally:
        client.close()
        if forward is not None:
            forward.terminate()


def ask(client: Any, model: str, prompt: str, *, max_tokens: int = 48) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
    )
    return str(reply.choices[0].message.content or "").strip()
