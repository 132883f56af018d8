#!/usr/bin/env bash
# Builds the control-plane binaries envtest needs (kube-apiserver, etcd), and a
# kubectl of the same release, from the Go module proxy into bin/k8s/<version>/. setup-envtest's download is not
# reachable from the build machines; building from source is, and the Go build
# cache makes a rebuild on the same machine cheap. Reused when present.
#
# Usage: hack/build-envtest.sh [BIN_DIR]   (prints the asset directory)
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.8}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/bin/k8s/$KUBE_VERSION}"
mkdir -p "$out"

# The Kubernetes binaries report the release they were built from (as release
# builds do), so version checks such as a Helm chart's kubeVersion see a real
# version. An older build without the stamp is rebuilt; with a warm Go cache
# that is a relink.
# The version is read into a variable first: with pipefail, `grep -q`
# exiting at its first match could fail the pipeline (SIGPIPE to the binary)
# and delete a current binary.
if [[ -x "$out/kube-apiserver" ]] && ! grep -qx "Kubernetes v$KUBE_VERSION" <<<"$("$out/kube-apiserver" --version 2>/dev/null || true)"; then
  rm -f "$out/kube-apiserver"
fi
if [[ -x "$out/kubectl" ]] && ! grep -qx "Client Version: v$KUBE_VERSION" <<<"$("$out/kubectl" version --client 2>/dev/null || true)"; then
  rm -f "$out/kubectl"
fi
if [[ -x "$out/kube-apiserver" && -x "$out/kubectl" && -x "$out/etcd" ]]; then
  echo "$out"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ ! -x "$out/kube-apiserver" || ! -x "$out/kubectl" ]]; then
  echo "building kube-apiserver and kubectl v$KUBE_VERSION (first time: about 12 min)" >&2
  mkdir -p "$work/kubernetes" && cd "$work/kubernetes"
  go mod init envtest-kubernetes >/dev/null 2>&1
  gomod="$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  # k8s.io/kubernetes replaces its staging modules with ./staging/...; those
  # replaces do not apply to a dependency, so pin each one to the matching tag.
  staging_version="v0.${KUBE_VERSION#1.}"
  {
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    grep -E '^[[:space:]]*k8s.io/[a-z0-9-]+ => ./staging/' "$gomod" |
      awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } >>go.mod
  GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
  minor="${KUBE_VERSION#*.}"
  ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=${KUBE_VERSION%%.*} -X $pkg.gitMinor=${minor%%.*} -X $pkg.gitTreeState=clean"
  done
  for bin in kube-apiserver kubectl; do
    if [[ ! -x "$out/$bin" ]]; then
      GOFLAGS=-mod=mod CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$out/$bin" "k8s.io/kubernetes/cmd/$bin"
    fi
  done
fi

if [[ ! -x "$out/etcd" ]]; then
  echo "building etcd v$ETCD_VERSION (first time: about 2 min)" >&2
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init envtest-etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1
  CGO_ENABLED=0 go build -o "$out/etcd" go.etcd.io/etcd/server/v3
fi

echo "$out"
