"""`make demo`: fine-tune a CPU-tiny model on a local cluster and serve the adapter.

    python -m e2e.demo [--state-dir .kubetune] [--keep-going]

1. brings up the local cluster (a real control plane whose pods run as local processes, and
   an S3-compatible object store) — or reuses it;
2. installs kubetune from the working tree with `helm upgrade --install`;
3. builds the tiny base model and the sample golden examples into the object store;
4. applies a FineTuneJob and follows it with `kubetune watch` until the adapter is published;
5. deploys an inference Deployment (reference engine) and an AdapterDeployment;
6. asks the base model and the adapter the same held-out questions, side by side.

Re-running it works: every step is an apply, and a finished run is not trained again.
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
from pathlib import Path

from e2e import kit

NAMESPACE = "demo"
JOB = "support-assistant"
SERVING = "tiny-serving"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, default=kit.REPO / ".kubetune")
    args = parser.parse_args()
    began = time.monotonic()
    cluster = kit.local_cluster(args.state_dir.resolve())
    kit.install_kubetune(
        cluster, workload_namespaces=[NAMESPACE], serving_deployments=[(NAMESPACE, SERVING)]
    )
    with tempfile.TemporaryDirectory(prefix="kubetune-demo-") as tmp:
        seed = kit.seed_object_store(cluster, Path(tmp))
    run(cluster, seed)
    kit.log(f"demo finished in {time.monotonic() - began:.0f}s")
    kit.log(f"explore: source {args.state_dir}/env && kubetune -n {NAMESPACE} describe {JOB}")
    kit.log("stop the cluster with: make cluster-down")


def run(cluster: kit.Cluster, seed: kit.Seed) -> None:
    """Steps 4-6 on a cluster with kubetune installed for NAMESPACE and the store seeded."""
    k = cluster.ns(NAMESPACE)
    kit.log(f"applying FineTuneJob {NAMESPACE}/{JOB} (LoRA r16 on all linear layers, CPU)")
    k.apply(
        kit.finetunejob(JOB, seed=seed, train=seed.train_v1, output=f"s3://adapters/{JOB}/"),
        field_manager="kubetune-demo",
    )
    kit.log(f"kubetune -n {NAMESPACE} watch {JOB}")
    watched = kit.kubetune(cluster, NAMESPACE, "watch", JOB, capture=False)
    if watched.returncode != 0:
        raise SystemExit(f"training did not succeed (kubetune watch exited {watched.returncode})")

    kit.log(f"deploying inference Deployment {SERVING} and AdapterDeployment {JOB}")
    for manifest in kit.inference_deployment(SERVING, seed=seed, cluster=cluster):
        k.apply(manifest, field_manager="kubetune-demo")
    k.apply(kit.adapterdeployment(JOB, deployment=SERVING, job=JOB), field_manager="kubetune-demo")
    k.run("wait", "--for=condition=Ready", f"adep/{JOB}", "--timeout=600s")
    # Injecting the agent changed the pod template once: wait for that rollout to finish.
    k.run("rollout", "status", f"deployment/{SERVING}", "--timeout=600s")
    kit.log("adapter is being served")

    with kit.openai_client(cluster, namespace=NAMESPACE, service=SERVING) as client:
        for prompt in seed.prompts:
            base = kit.ask(client, "tiny-llama", prompt)
            tuned = kit.ask(client, JOB, prompt)
            print()
            print(f"  question : {prompt}")
            print(textwrap.indent(textwrap.fill(f"base     : {base}", 96), "  "))
            print(textwrap.indent(textwrap.fill(f"adapter  : {tuned}", 96), "  "))
    print()


if __name__ == "__main__":
    main()
