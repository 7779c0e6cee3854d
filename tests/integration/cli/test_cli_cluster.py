"""``kubetune`` against a real kube-apiserver (with the CRDs) and a real S3 server.

The test plays the operator and the trainer: it writes FineTuneJob status through the status
subresource and run files into the object store, exactly where they would. (The e2e suite
runs every command against the real operator, trainer and serving pods.) Covers: list, get,
describe; submit (check, upload under the content's SHA-256, create, unchanged, update,
refuse broken data, dry run, manifest with local paths); watch exit codes (Succeeded,
Failed, timeout) and a live run; metrics with the PNG plot; adapters with serving roles;
logs and chat error paths; every user mistake as one line: no kubeconfig, unreachable API
server, unknown names, unreachable object store, missing credentials.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from kubetune.cluster.controlplane import ControlPlane
from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.objectstore import ObjectStore
from tests.cli_runner import KUBETUNE, Run, run_kubetune

GOOD = [
    {
        "messages": [
            {"role": "user", "content": f"Q{i}?"},
            {"role": "assistant", "content": f"A{i}."},
        ]
    }
    for i in range(12)
]


@pytest.fixture
def env(control_plane: ControlPlane, object_store: ObjectStore, namespace: str) -> dict[str, str]:
    return {
        "KUBECONFIG": str(control_plane.kubeconfig),
        "KUBETUNE_NAMESPACE": namespace,
        **object_store.env,
    }


@pytest.fixture
def kubetune(env: dict[str, str], crds: Kubectl) -> Run:
    def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_kubetune(*args, env={**env, **kw.pop("env", {})}, **kw)

    return run


@pytest.fixture
def s3(object_store: ObjectStore) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=object_store.endpoint,
        aws_access_key_id=object_store.access_key,
        aws_secret_access_key=object_store.secret_key,
        region_name=object_store.region,
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def ftj(name: str, output: str = "s3://adapters/cli/") -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": "s3://models/tiny/"},
            "dataset": {"train": "s3://datasets/cli/train.jsonl"},
            "output": {"uri": output},
        },
    }


def set_status(k: Kubectl, name: str, status: dict[str, Any]) -> None:
    body = json.dumps({"status": status})
    k.run("patch", "ftj", name, "--subresource=status", "--type=merge", "-p", body)


def running(
    step: int, total: int = 144, *, generation: int = 1, loss: float | None = None
) -> dict[str, Any]:
    return {
        "phase": "Running",
        "observedGeneration": generation,
        "currentRun": {
            "name": f"support-g{generation}",
            "generation": generation,
            "phase": "Running",
            "startTime": "2026-11-28T11:50:00Z",
            "progress": {
                "step": step,
                "totalSteps": total,
                "percent": 100 * step // total,
                "loss": round(7.0 - step / 50, 4) if loss is None else loss,
                "etaSeconds": 2 * (total - step),
            },
        },
    }


def succeeded(digest: str = "sha256:" + "ab" * 32) -> dict[str, Any]:
    run = {
        "name": "support-g1",
        "generation": 1,
        "phase": "Succeeded",
        "reason": "AdapterPublished",
        "startTime": "2026-11-28T11:50:00Z",
        "completionTime": "2026-11-28T11:52:10Z",
        "metrics": {"trainLoss": 5.9, "evalLoss": 5.96},
        "adapter": {"uri": "s3://adapters/cli/support-g1/adapter/", "digest": digest},
    }
    return {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "currentRun": run,
        "runs": [run],
        "latestAdapter": {**run["adapter"], "run": "support-g1", "metrics": run["metrics"]},
    }


# ---------------------------------------------------------------- one-line errors


def test_missing_or_broken_cluster_config_is_one_line(kubetune: Run, tmp_path: Path) -> None:
    missing = kubetune("list", env={"KUBECONFIG": str(tmp_path / "nope")})
    assert (
        one_line_error(missing)
        == f"error: kubeconfig not found: KUBECONFIG points to {tmp_path / 'nope'}"
    )

    home = tmp_path / "home"
    home.mkdir()
    unset = run_kubetune("list", env={"KUBECONFIG": "", "HOME": str(home)})
    assert (
        "no kubeconfig" in one_line_error(unset)
        and "set KUBECONFIG or pass --kubeconfig" in unset.stderr
    )

    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    unreachable = kubetune("list", env={"KUBECONFIG": str(dead)})
    assert one_line_error(unreachable).startswith(
        "error: cannot reach the Kubernetes API at https://127.0.0.1:1"
    )
    context = kubetune("--context", "nope", "list")
    assert "kubeconfig has no context 'nope'" in one_line_error(context)


@pytest.mark.parametrize(
    "command",
    [
        ["get", "nope"],
        ["describe", "nope"],
        ["watch", "nope"],
        ["logs", "nope"],
        ["metrics", "nope"],
        ["adapters", "nope"],
    ],
)
def test_unknown_finetunejob_is_one_line(kubetune: Run, namespace: str, command: list[str]) -> None:
    result = kubetune(*command)
    assert one_line_error(result) == (
        f"error: finetunejob {namespace}/nope not found "
        f"(`kubetune list -n {namespace}` shows what exists)"
    )


# ---------------------------------------------------------------- list, get, describe


def test_list_get_and_describe_show_progress_runs_and_adapter(
    kubetune: Run, k: Kubectl, namespace: str
) -> None:
    assert "no FineTuneJobs in namespace" in kubetune("list").stderr
    k.apply(ftj("support"))
    k.apply(ftj("other"))
    set_status(k, "support", running(40))

    table = kubetune("list")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "NAME",
        "PHASE",
        "RUN",
        "PROGRESS",
        "LOSS",
        "EVAL",
        "LOSS",
        "ADAPTER",
        "AGE",
    ]
    support = next(r for r in rows if r.startswith("support"))
    assert support.split()[:6] == ["support", "Running", "support-g1", "40/144", "(27%)", "6.2"]
    assert next(r for r in rows if r.startswith("other")).split()[1] == "Pending"
    everywhere = kubetune("list", "-A")
    assert namespace in everywhere.stdout and everywhere.stdout.startswith("NAMESPACE")

    as_json = json.loads(kubetune("get", "support", "-o", "json").stdout)
    assert as_json["status"]["currentRun"]["progress"]["step"] == 40
    assert (
        yaml.safe_load(kubetune("get", "support", "-o", "yaml").stdout)["metadata"]["name"]
        == "support"
    )

    set_status(k, "support", succeeded())
    described = kubetune("describe", "support")
    assert described.returncode == 0, described.stderr
    out = described.stdout
    assert "FineTuneJob " + namespace + "/support  Succeeded" in out
    assert "base model       s3://models/tiny/" in out
    assert "Runs (newest first)" in out and "2m10s" in out and "abababababab" in out
    assert "Latest adapter s3://adapters/cli/support-g1/adapter/  version abababababab" in out
    assert "evalLoss 5.96" in out


# ---------------------------------------------------------------- submit


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_submit_checks_uploads_by_content_and_applies(
    kubetune: Run, k: Kubectl, namespace: str, s3: Any, tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", GOOD)
    args = [
        "submit",
        "support",
        "--base-model",
        "s3://models/tiny/",
        "--train",
        str(train),
        "--epochs",
        "2",
        "--rank",
        "8",
    ]

    created = kubetune(*args)
    assert created.returncode == 0, created.stderr
    assert f"finetunejob {namespace}/support created (generation 1)" in created.stdout
    digest = hashlib.sha256(train.read_bytes()).hexdigest()
    key = f"{namespace}/support/{digest[:16]}/train.jsonl"
    assert f"uploaded {train} (12 records) to s3://datasets/{key}" in created.stderr
    assert s3.get_object(Bucket="datasets", Key=key)["Body"].read() == train.read_bytes()
    spec = k.get("ftj", "support")["spec"]
    assert spec["dataset"]["train"] == f"s3://datasets/{key}"
    assert spec["output"]["uri"] == f"s3://adapters/{namespace}/support/"
    assert (spec["hyperparameters"]["epochs"], spec["lora"]["rank"]) == (2, 8)
    shown = k.run("get", "ftj", "support", "-o", "json", "--show-managed-fields").stdout
    managers = {m["manager"] for m in json.loads(shown)["metadata"]["managedFields"]}
    assert "kubetune-cli" in managers

    again = kubetune(*args)
    assert "already at" in again.stderr and "unchanged (generation 1): no new run" in again.stdout

    write_jsonl(
        train,
        [
            *GOOD,
            {
                "messages": [
                    {"role": "user", "content": "New?"},
                    {"role": "assistant", "content": "Yes."},
                ]
            },
        ],
    )
    updated = kubetune(*args)
    assert "updated to generation 2: a new run starts" in updated.stdout, updated.stderr
    assert k.get("ftj", "support")["spec"]["dataset"]["train"] != spec["dataset"]["train"]

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(GOOD[0]) + "\n" + '{"messages": [\n')
    refused = kubetune(
        "submit", "broken", "--base-model", "s3://models/tiny/", "--train", str(broken)
    )
    assert refused.returncode == 1
    assert "│    2 │ not valid JSON" in refused.stderr and "nothing was submitted" in refused.stderr
    assert "broken" not in kubetune("list").stdout

    missing = kubetune("submit", "x", "--train", str(train))
    assert (
        one_line_error(missing)
        == "error: spec.baseModel.uri is missing: pass --base-model or set it in the manifest"
    )
    no_file = kubetune("submit", "x", "--base-model", "s3://m/", "--train", "nope.jsonl")
    assert one_line_error(no_file) == "error: spec.dataset.train: nope.jsonl: no such file"


def test_submit_from_a_manifest_with_local_paths_and_dry_run(
    kubetune: Run, k: Kubectl, namespace: str, tmp_path: Path
) -> None:
    folder = tmp_path / "job"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", GOOD)
    write_jsonl(folder / "test.jsonl", GOOD[:3])
    manifest = ftj("from-file")
    manifest["spec"]["dataset"]["train"] = "train.jsonl"
    manifest["spec"]["evaluation"] = {"testSet": "test.jsonl", "metrics": ["loss", "exactMatch"]}
    (folder / "ftj.yaml").write_text(yaml.safe_dump(manifest))

    dry = kubetune(
        "submit", "-f", str(folder / "ftj.yaml"), "--dry-run", "--learning-rate", "0.001"
    )
    assert dry.returncode == 0, dry.stderr
    doc = yaml.safe_load(dry.stdout)
    assert doc["metadata"] == {"name": "from-file", "namespace": namespace}
    assert doc["spec"]["dataset"]["train"].startswith(f"s3://datasets/{namespace}/from-file/")
    assert doc["spec"]["evaluation"]["testSet"].endswith("/test.jsonl")
    assert doc["spec"]["hyperparameters"] == {"learningRate": 0.001}
    assert k.run("get", "ftj", "from-file", check=False).returncode != 0  # nothing applied

    applied = kubetune("submit", "-f", str(folder / "ftj.yaml"))
    assert applied.returncode == 0, applied.stderr
    assert (
        k.get("ftj", "from-file")["spec"]["evaluation"]["testSet"]
        == doc["spec"]["evaluation"]["testSet"]
    )

    (tmp_path / "two.yaml").write_text(yaml.safe_dump_all([manifest, manifest]))
    two = kubetune("submit", "-f", str(tmp_path / "two.yaml"))
    assert (
        one_line_error(two)
        == f"error: -f {tmp_path / 'two.yaml'}: expected one FineTuneJob, found 2"
    )


def test_submit_reports_what_the_api_server_refuses(kubetune: Run, tmp_path: Path) -> None:
    result = kubetune(
        "submit", "x", "--base-model", "https://hub/llama", "--train", "s3://datasets/t.jsonl"
    )
    line = one_line_error(result)
    assert line.startswith("error: the API server refused the manifest:")
    assert "spec.baseModel.uri" in line


# ---------------------------------------------------------------- watch


def test_watch_exit_code_follows_the_outcome(kubetune: Run, k: Kubectl) -> None:
    k.apply(ftj("done"))
    set_status(k, "done", succeeded())
    ok = kubetune("watch", "done")
    assert ok.returncode == 0, ok.stderr
    assert (
        "✓ support-g1 Succeeded in 2m10s: adapter s3://adapters/cli/support-g1/adapter/"
        in ok.stdout
    )

    k.apply(ftj("bad"))
    set_status(
        k,
        "bad",
        {
            "phase": "Failed",
            "observedGeneration": 1,
            "currentRun": {
                "name": "bad-g1",
                "phase": "Failed",
                "reason": "InvalidDataset",
                "message": "train.jsonl line 3: bad role",
            },
        },
    )
    failed = kubetune("watch", "bad")
    assert failed.returncode == 1
    assert "✗ bad-g1 Failed (InvalidDataset): train.jsonl line 3: bad role" in failed.stdout

    k.apply(ftj("slow"))
    set_status(k, "slow", running(10))
    timed_out = kubetune("watch", "slow", "--timeout", "1")
    assert timed_out.returncode == 3
    assert "is still Running after 1s (--timeout)" in timed_out.stderr


def test_watch_follows_a_live_run_until_it_succeeds(
    k: Kubectl, env: dict[str, str], s3: Any, namespace: str, crds: Kubectl
) -> None:
    k.apply(ftj("live", output=f"s3://adapters/{namespace}/"))
    set_status(k, "live", running(1, total=30))
    proc = subprocess.Popen(
        [KUBETUNE, "watch", "live", "--interval", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env, "COLUMNS": "160"},
    )
    history = []
    for step in range(2, 31, 4):
        # metrics.jsonl has every step; the status always shows the same loss, so a sparkline
        # longer than one mark can only come from the file.
        history += [
            json.dumps({"step": s, "loss": 7.0 - s / 10}) for s in range(step - 3, step + 1)
        ]
        s3.put_object(
            Bucket="adapters",
            Key=f"{namespace}/support-g1/metrics.jsonl",
            Body="\n".join(history).encode(),
        )
        set_status(k, "live", running(step, total=30, loss=6.5))
        time.sleep(1.2)
    set_status(k, "live", succeeded())
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert any("support-g1 Running  step" in line for line in lines)
    assert any("step 30/30" in line or "step 26/30" in line for line in lines)
    final = next((line for line in lines if "  support-g1 Succeeded  " in line), out)
    spark = final.split()[-1]
    assert len(spark) == 24 and spark[0] == "█" and spark[-1] == "▁", final
    assert lines[-2].startswith("✓ support-g1 Succeeded in 2m10s")


# ---------------------------------------------------------------- metrics, adapters, logs, chat


def test_metrics_table_json_and_png_plot(
    kubetune: Run, k: Kubectl, s3: Any, tmp_path: Path, namespace: str
) -> None:
    k.apply(ftj("support", output=f"s3://adapters/{namespace}/"))
    no_run = kubetune("metrics", "support")
    assert "has not started a run yet" in one_line_error(no_run)
    set_status(k, "support", running(3, total=3))
    not_yet = kubetune("metrics", "support")
    assert one_line_error(not_yet) == (
        "error: no metrics for run support-g1 yet: "
        f"s3://adapters/{namespace}/support-g1/metrics.jsonl does not exist"
    )
    records = [{"step": s, "loss": 7 - s * 0.5} for s in (1, 2, 3)] + [
        {"step": 3, "evalLoss": 5.9, "perplexity": 365.0}
    ]
    s3.put_object(
        Bucket="adapters",
        Key=f"{namespace}/support-g1/metrics.jsonl",
        Body="".join(json.dumps(r) + "\n" for r in records).encode(),
    )
    plot = tmp_path / "loss.png"
    result = kubetune("metrics", "support", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    assert "train loss │ 3" in result.stdout and "5.5000 (step 3)" in result.stdout
    assert "eval loss  │ 1" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    as_json = json.loads(kubetune("metrics", "support", "--json").stdout)
    assert as_json["eval"] == [{"step": 3, "evalLoss": 5.9}]

    unreachable = kubetune("--s3-endpoint", "http://127.0.0.1:1", "metrics", "support")
    assert one_line_error(unreachable).startswith(
        "error: cannot reach the object store at http://127.0.0.1:1"
    )
    no_credentials = kubetune(
        "metrics",
        "support",
        env={
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        },
    )
    assert "no object-store credentials" in one_line_error(no_credentials)


def test_adapters_lists_published_versions_and_serving_roles(
    kubetune: Run, k: Kubectl, s3: Any, namespace: str
) -> None:
    k.apply(ftj("support", output=f"s3://adapters/{namespace}/support/"))
    digests = []
    for run, loss, created in (
        ("support-g1", 6.0, "2026-11-28T10:00:00Z"),
        ("support-g2", 5.5, "2026-11-28T11:00:00Z"),
    ):
        manifest = json.dumps(
            {
                "run": run,
                "createdAt": created,
                "metrics": {"trainLoss": loss, "evalLoss": loss + 0.1, "exactMatch": 0.25},
            }
        ).encode()
        s3.put_object(
            Bucket="adapters", Key=f"{namespace}/support/{run}/adapter/manifest.json", Body=manifest
        )
        digests.append("sha256:" + hashlib.sha256(manifest).hexdigest())
    # A run that never published (no manifest) is not a version.
    s3.put_object(
        Bucket="adapters", Key=f"{namespace}/support/support-g3/progress.json", Body=b"{}"
    )
    k.apply(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "AdapterDeployment",
            "metadata": {"name": "support"},
            "spec": {
                "adapterName": "support-assistant",
                "source": {"fineTuneJobRef": {"name": "support"}},
                "target": {"deploymentName": "llama"},
            },
        }
    )
    status = {
        "status": {
            "phase": "Ready",
            "activeVersion": {"digest": digests[1]},
            "previousVersion": {"digest": digests[0]},
            "replicas": {"desired": 2, "ready": 2},
        }
    }
    k.run(
        "patch", "adep", "support", "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )

    result = kubetune("adapters")
    assert result.returncode == 0, result.stderr
    rows = [row.rstrip() for row in result.stdout.splitlines()[1:]]
    assert len(rows) == 2
    assert rows[0].split()[:6] == [
        "support",
        digests[1][7:19],
        "support-g2",
        "2026-11-28T11:00:00Z",
        "5.5",
        "5.6",
    ]
    assert rows[0].endswith("active on llama (2/2 ready) as support-assistant")
    assert rows[1].endswith("previous on llama as support-assistant")
    result = kubetune("adapters", "support", "--json")
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout)
    assert [v["digest"] for v in versions] == [digests[1], digests[0]]


def test_logs_and_chat_say_what_is_missing(kubetune: Run, k: Kubectl, namespace: str) -> None:
    k.apply(ftj("support"))
    assert "has not started a run yet" in one_line_error(kubetune("logs", "support"))
    set_status(k, "support", running(3))
    assert one_line_error(kubetune("logs", "support")) == (
        f"error: run support-g1 has no trainer pod of rank 0 in {namespace} "
        "(not scheduled yet, or its Job was removed)"
    )
    assert one_line_error(kubetune("chat", "support", "hi")) == (
        f"error: no AdapterDeployment named support or serving adapter support in {namespace}"
    )
    k.apply(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "AdapterDeployment",
            "metadata": {"name": "support"},
            "spec": {
                "adapterName": "support-assistant",
                "source": {"fineTuneJobRef": {"name": "support"}},
                "target": {"deploymentName": "llama"},
            },
        }
    )
    no_deployment = one_line_error(kubetune("chat", "support-assistant", "hi"))
    assert no_deployment.startswith(f"error: deployments {namespace}/llama not found")
    no_prompt = kubetune("chat", "support", stdin="")
    assert one_line_error(no_prompt) == "error: no prompt: pass PROMPT or write it to stdin"


def test_version_and_help(kubetune: Run) -> None:
    version = run_kubetune("--version")
    assert version.returncode == 0 and version.stdout.startswith("kubetune, version ")
    helped = run_kubetune("--help")
    for command in (
        "data",
        "submit",
        "list",
        "get",
        "describe",
        "watch",
        "logs",
        "metrics",
        "adapters",
        "chat",
    ):
        assert f"\n  {command} " in helped.stdout, command


def test_submit_checks_with_the_declared_format_and_dry_run_warns(
    kubetune: Run, tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", GOOD)
    manifest = ftj("declared")
    manifest["spec"]["dataset"] = {"train": "train.jsonl", "format": "completion"}
    (tmp_path / "ftj.yaml").write_text(yaml.safe_dump(manifest))
    refused = kubetune("submit", "-f", str(tmp_path / "ftj.yaml"))
    assert refused.returncode == 1  # chat records are not completion records: the trainer says so
    assert "expected a completion record ('text')" in refused.stderr
    assert "nothing was submitted" in refused.stderr

    dry = kubetune("submit", "plain", "--base-model", "s3://m/", "--train", str(train), "--dry-run")
    assert dry.returncode == 0
    assert "dry run: 1 local dataset file(s) not uploaded" in dry.stderr


def test_operational_change_is_not_announced_as_a_new_run(kubetune: Run, tmp_path: Path) -> None:
    manifest = ftj("queued")
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(manifest))
    assert "created" in kubetune("submit", "-f", str(tmp_path / "a.yaml")).stdout
    manifest["spec"]["queueName"] = "gpu-queue"
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(manifest))
    changed = kubetune("submit", "-f", str(tmp_path / "b.yaml"))
    assert "updated to generation 2: operational fields only, no new run" in changed.stdout


def test_watch_reports_a_refused_spec_not_the_previous_run(kubetune: Run, k: Kubectl) -> None:
    k.apply(ftj("refused"))
    status = succeeded()
    status["phase"] = "Failed"
    status["conditions"] = [
        {
            "type": "Failed",
            "status": "True",
            "reason": "InvalidSpec",
            "message": "spec.resources.gpus: qlora needs a GPU",
            "lastTransitionTime": "2026-11-28T12:00:00Z",
        }
    ]
    set_status(k, "refused", status)
    result = kubetune("watch", "refused")
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1] == (
        "✗ refused Failed (InvalidSpec): spec.resources.gpus: qlora needs a GPU"
    )


def test_adapters_of_one_job_exclude_a_sibling_prefix(
    kubetune: Run, k: Kubectl, s3: Any, namespace: str
) -> None:
    k.apply(ftj("support", output=f"s3://adapters/{namespace}/support"))  # no trailing slash
    for prefix in ("support", "support-v2"):
        s3.put_object(
            Bucket="adapters",
            Key=f"{namespace}/{prefix}/{prefix}-g1/adapter/manifest.json",
            Body=json.dumps({"run": f"{prefix}-g1", "metrics": {}}).encode(),
        )
    result = kubetune("adapters", "support", "--json")
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout)
    assert [v["run"] for v in versions] == ["support-g1"]
