#!/usr/bin/env bash
# Build (or reuse) the native binaries kubetune's tests, local cluster and demo run:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm and versitygw
# (the S3-compatible object store).
#
# Everything is built with the Go toolchain from the Go module proxy inside the small
# tools modules under hack/tools/, and cached OUTSIDE the clone, keyed by version:
#   ${KUBETUNE_CACHE:-$HOME/.cache/kubetune}/bin/<tool>-<version>/
# A cold build takes tens of minutes on 2 cores; a warm run returns at once.
#
# Prebuilt binaries: set KUBETUNE_ASSETS (or KUBEBUILDER_ASSETS, e.g. an envtest assets
# directory) to a folder holding the binaries; anything found there is used as-is and
# only the missing ones are built.
#
# Usage: hack/build-binaries.sh [tool ...]   (default: all)   Prints the bin dir last.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="$HERE/tools"
CACHE="${KUBETUNE_CACHE:-$HOME/.cache/kubetune}"
# One folder of symlinks that the Python side puts on PATH.
BIN="$CACHE/bin/current"

modver() { # modver <tools-dir> <module>: the version the tools module pins
  awk -v m="$2" '$1==m {print $2; exit} $1=="require" && $2==m {print $3; exit}' "$TOOLS/$1/go.mod"
}
K8S_VERSION="$(modver kube k8s.io/kubernetes)"
ETCD_VERSION="$(modver etcd go.etcd.io/etcd/server/v3)"
HELM_VERSION="$(modver helm helm.sh/helm/v3)"
VERSITYGW_VERSION="$(modver versitygw github.com/versity/versitygw)"

log() { printf '[build-binaries] %s\n' "$*" >&2; }

prebuilt() { # prebuilt <binary>: path of a user-supplied binary, if any
  local d
  for d in "${KUBETUNE_ASSETS:-}" "${KUBEBUILDER_ASSETS:-}"; do
    if [[ -n "$d" && -x "$d/$1" ]]; then echo "$d/$1"; return 0; fi
  done
  return 1
}

gobin_name() { # the file name `go build -o dir/` gives a main package: its last path element,
  # or the one before it when the last is a major-version suffix (go.etcd.io/etcd/server/v3).
  local last="${1##*/}" rest="${1%/*}"
  if [[ "$last" =~ ^v[0-9]+$ ]]; then echo "${rest##*/}"; else echo "$last"; fi
}

build() { # build <tools-dir> <version-key> <ldflags> <name>=<pkg> ... : go build into the cache
  local tooldir="$1" key="$2" ldflags="$3"; shift 3
  local out="$CACHE/bin/$key"
  local missing=() names=() spec name pkg
  for spec in "$@"; do
    name="${spec%%=*}"; pkg="${spec#*=}"
    if prebuilt "$name" >/dev/null; then ln -sf "$(prebuilt "$name")" "$BIN/$name"; continue; fi
    if [[ -x "$out/$name" ]]; then ln -sf "$out/$name" "$BIN/$name"; continue; fi
    missing+=("$pkg"); names+=("$name")
  done
  if ((${#missing[@]} == 0)); then log "$key: cached in $out"; return 0; fi
  log "$key: building ${names[*]} (cold builds take a while; progress below)"
  local start=$SECONDS tmp i
  mkdir -p "$CACHE/bin"
  tmp="$(mktemp -d "$CACHE/bin/.build-XXXXXX")"
  (
    cd "$TOOLS/$tooldir"
    # readonly: the committed go.mod/go.sum are authoritative; a build never rewrites them.
    CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${missing[@]}" 2>&1 \
      | sed 's/^/[go] /' >&2 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
      sleep 30
      if kill -0 "$pid" 2>/dev/null; then log "$key: still building ($((SECONDS - start))s)"; fi
    done
    wait "$pid"
  )
  mkdir -p "$out"
  for i in "${!missing[@]}"; do
    local produced="$tmp/$(gobin_name "${missing[$i]}")"
    [[ -x "$produced" ]] || { log "ERROR: ${names[$i]} was not produced (see [go] lines above)"; exit 1; }
    mv "$produced" "$out/${names[$i]}"
    ln -sf "$out/${names[$i]}" "$BIN/${names[$i]}"
  done
  rm -rf "$tmp"
  log "$key: built in $((SECONDS - start))s"
}

mkdir -p "$BIN"
want=("$@"); ((${#want[@]})) || want=(kube etcd helm versitygw)
for t in "${want[@]}"; do
  case "$t" in
    kube)
      minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
      v="k8s.io/component-base/version"
      build kube "kubernetes-$K8S_VERSION" \
        "-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
        kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
        kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
        kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler kubectl=k8s.io/kubernetes/cmd/kubectl ;;
    etcd)
      build etcd "etcd-$ETCD_VERSION" "-s -w" etcd=go.etcd.io/etcd/server/v3 ;;
    helm)
      build helm "helm-$HELM_VERSION" \
        "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm=helm.sh/helm/v3/cmd/helm ;;
    versitygw)
      build versitygw "versitygw-$VERSITYGW_VERSION" \
        "-s -w -X main.Version=$VERSITYGW_VERSION" versitygw=github.com/versity/versitygw/cmd/versitygw ;;
    *) log "unknown tool $t"; exit 2 ;;
  esac
done
echo "$BIN"
