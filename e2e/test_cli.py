"""The quick start, verbatim: `make demo`'s steps, then every command of docs/quickstart.md.

The demo part (``e2e.demo.run``) applies the FineTuneJob, follows it with ``kubetune watch``,
serves the adapter and asks it. Then each shell line of the quick start's CLI sections runs
as written (``source .kubetune/env`` becomes this cluster's environment; ``make`` lines are
what CI and the demo run): list, describe, watch, logs through the kubelet log API, metrics
with the PNG plot, adapters with the serving role, chat against the served adapter, and a
fine-tune of local files through ``data check`` and ``submit --watch`` on the real operator,
trainer and object store.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path

from e2e import demo, kit
from tests.cli_runner import KUBETUNE

QUICKSTART = kit.REPO / "docs" / "quickstart.md"


def quickstart_commands() -> list[str]:
    """Shell lines of the quick start's ```bash blocks after its first section."""
    text = QUICKSTART.read_text()
    explore = text[text.index("## Explore") :]
    blocks = re.findall(r"```bash\n(.*?)```", explore, flags=re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "source ", "make "))]


def run_line(cluster: kit.Cluster, line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(line)
    if argv[0] == "kubetune":
        argv[0] = KUBETUNE
    elif argv[0] == "python":
        argv[0] = sys.executable
    return subprocess.run(
        argv,
        cwd=cwd,
        env={**kit.kubetune_env(cluster, "default"), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_quickstart_runs_as_documented(
    cluster: kit.Cluster, seed: kit.Seed, tmp_path: Path
) -> None:
    demo.run(cluster, seed)

    outputs: dict[str, str] = {}
    for line in quickstart_commands():
        result = run_line(cluster, line, tmp_path)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        outputs[line] = result.stdout
        kit.log(f"$ {line}\n{result.stdout.rstrip()}")

    def out(prefix: str) -> str:
        """The output of the documented line ``prefix``, else of the one that starts with it."""
        if prefix in outputs:
            return outputs[prefix]
        (match,) = [v for k, v in outputs.items() if k.startswith(prefix + " ")]
        return match

    listed = out("kubetune -n demo list")
    assert re.search(r"support-assistant\s+Succeeded\s+support-assistant-g1", listed)
    described = out("kubetune -n demo describe")
    assert "Runs (newest first)" in described and "AdapterPublished" in described
    assert "✓ support-assistant-g1 Succeeded" in out("kubetune -n demo watch")
    assert "published s3://adapters/support-assistant/" in out("kubetune -n demo logs")
    assert "train loss │ 144" in out("kubetune -n demo metrics")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    adapters = out("kubetune -n demo adapters")
    assert "active on tiny-serving (1/1 ready) as support-assistant" in adapters
    answer = out("kubetune -n demo chat").strip()
    assert answer, "the adapter answered nothing"

    assert "160 records ready to train" in out("kubetune data check")
    submitted = out("kubetune -n demo submit my-assistant")
    assert "finetunejob demo/my-assistant created (generation 1)" in submitted
    assert "✓ my-assistant-g1 Succeeded" in submitted
    mine = out("kubetune -n demo adapters my-assistant")
    assert "my-assistant-g1" in mine and "support-assistant" not in mine

    # The uploaded dataset is the local file, byte for byte, and the job points at it.
    job = cluster.ns(demo.NAMESPACE).get("ftj", "my-assistant")
    bucket, _, key = job["spec"]["dataset"]["train"].removeprefix("s3://").partition("/")
    uploaded = cluster.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert uploaded == (tmp_path / "my-data" / "train.jsonl").read_bytes()
    versions = json.loads(kit.kubetune(cluster, demo.NAMESPACE, "adapters", "--json").stdout)
    assert {v["finetunejob"] for v in versions} == {"support-assistant", "my-assistant"}


def test_chat_interactively_and_from_stdin(cluster: kit.Cluster, seed: kit.Seed) -> None:
    """`kubetune chat ADAPTER` on a terminal keeps the conversation; piped stdin is one prompt."""
    demo.run(
        cluster, seed
    )  # idempotent: serves the demo's adapter (already done by the test above)
    binary = KUBETUNE
    env = kit.kubetune_env(cluster, demo.NAMESPACE)
    piped = subprocess.run(
        [binary, "chat", demo.JOB],
        input="Can I move my plan to a new address?\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert piped.returncode == 0 and piped.stdout.strip(), piped.stderr

    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [binary, "chat", demo.JOB, "--max-tokens", "24"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**env, "TERM": "dumb"},
    )
    os.close(terminal)
    transcript = b""
    answer = f"{demo.JOB}> ".encode()

    def wait_for(marker: bytes, count: int, timeout: float = 120) -> None:
        nonlocal transcript
        deadline = time.monotonic() + timeout
        while transcript.count(marker) < count and time.monotonic() < deadline:
            if select.select([controller], [], [], 1)[0]:
                transcript += os.read(controller, 4096)
        assert transcript.count(marker) >= count, transcript.decode(errors="replace")

    wait_for(b"you> ", 1)
    os.write(controller, b"Can I move my plan?\n")
    wait_for(answer, 1)
    wait_for(b"you> ", 2)
    os.write(controller, b"And my router?\n")
    wait_for(answer, 2)
    wait_for(b"you> ", 3)
    os.write(controller, b"\n")  # an empty line ends the conversation
    assert proc.wait(timeout=60) == 0
    os.close(controller)
    assert transcript.count(answer) == 2
