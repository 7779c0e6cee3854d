#!/usr/bin/env bash
# Run kubetune's e2e suite on kind (machines with Docker; not the default: `make test` uses the
# local process cluster). Creates the kind cluster, builds and loads the three images, starts an
# in-cluster object store, installs nothing else: the e2e session installs the chart itself.
#
#   e2e/kind/up.sh            # then, in the same shell:
#   source .kubetune-kind/env && .venv/bin/python -m pytest e2e
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER="${KIND_CLUSTER:-kubetune}"
TAG="${KUBETUNE_E2E_IMAGE_TAG:-e2e}"
STATE=.kubetune-kind
mkdir -p "$STATE"

command -v kind >/dev/null || { echo "kind not found (go install sigs.k8s.io/kind@latest)" >&2; exit 1; }
command -v docker >/dev/null || { echo "docker not found: use the local cluster (make test)" >&2; exit 1; }

kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kind get kubeconfig --name "$CLUSTER" > "$STATE/kubeconfig"
export KUBECONFIG="$PWD/$STATE/kubeconfig"

for name in operator trainer serving; do
  docker build -f "images/$name/Dockerfile" -t "kubetune/$name:$TAG" .
  kind load docker-image --name "$CLUSTER" "kubetune/$name:$TAG"
done

# Object store: versitygw (the same S3 server the local cluster runs) in namespace storage.
ACCESS="kt$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SECRET="$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')"
kubectl apply -f - <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: storage}
---
apiVersion: v1
kind: Secret
metadata: {name: object-store, namespace: storage}
stringData: {ROOT_ACCESS_KEY: "$ACCESS", ROOT_SECRET_KEY: "$SECRET"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: object-store, namespace: storage}
spec:
  selector: {matchLabels: {app: object-store}}
  template:
    metadata: {labels: {app: object-store}}
    spec:
      initContainers:
        - name: buckets
          image: busybox:1.36
          command: [sh, -c, "mkdir -p /data/models /data/datasets /data/adapters"]
          volumeMounts: [{name: data, mountPath: /data}]
      containers:
        - name: versitygw
          image: versity/versitygw:v1.8.0
          args: [--port, ":8333", posix, /data]
          envFrom: [{secretRef: {name: object-store}}]
          ports: [{containerPort: 8333}]
          volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: object-store, namespace: storage}
spec: {selector: {app: object-store}, ports: [{port: 8333, targetPort: 8333}]}
YAML
kubectl -n storage rollout status deployment/object-store --timeout=180s
# The suite seeds data from this machine through a port-forward; pods use the Service.
kubectl -n storage port-forward service/object-store 18333:8333 >"$STATE/port-forward.log" 2>&1 &
echo $! > "$STATE/port-forward.pid"

cat > "$STATE/env" <<ENV
export KUBECONFIG=$PWD/$STATE/kubeconfig
export AWS_ENDPOINT_URL=http://127.0.0.1:18333
export AWS_ACCESS_KEY_ID=$ACCESS
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_DEFAULT_REGION=us-east-1
export KUBETUNE_E2E_CLUSTER=given
export KUBETUNE_E2E_POD_S3_ENDPOINT=http://object-store.storage.svc:8333
export KUBETUNE_E2E_IMAGE_TAG=$TAG
ENV
echo "kind cluster $CLUSTER ready: source $STATE/env && .venv/bin/python -m pytest e2e"
