#!/usr/bin/env bash
# Builds the real control plane Berth's tests run against — kube-apiserver,
# kube-controller-manager, kubectl (Kubernetes, pinned in kubernetes/go.mod) and
# etcd (pinned in etcd/go.mod) — from their Go modules, once. The binaries land in
# a cache folder named after the pins, so a change of pins rebuilds and nothing
# else does. Prints that folder's bin/ path on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/progress.sh"
key="$(cat "$here/build.sh" "$here"/kubernetes/go.{mod,sum} "$here"/etcd/{go.mod,go.sum,main.go} | sha256sum | cut -c1-16)"
cache="${BERTH_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/controlplane}"
bin="$cache/$key/bin"

if [[ -x "$bin/kube-apiserver" && -x "$bin/kube-controller-manager" && -x "$bin/kubectl" && -x "$bin/etcd" ]]; then
  echo "$bin"
  exit 0
fi

# go.sum is committed, so every download is verified against it; the checksum
# database itself is not reachable from every machine that builds this.
export GOSUMDB="${GOSUMDB:-off}" GOFLAGS="-mod=readonly" CGO_ENABLED=0
k8s_version="$(grep -oE '^\s*k8s.io/kubernetes v[0-9.]+' "$here/kubernetes/go.mod" | awk '{ print $2 }')"
minor="$(echo "$k8s_version" | cut -d. -f2)"
stamp="-X k8s.io/component-base/version.gitVersion=$k8s_version"
stamp+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
stamp+=" -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version"
stamp+=" -X k8s.io/component-base/version.gitTreeState=clean"

staging="$cache/$key/staging"
rm -rf "$staging" && mkdir -p "$staging"
echo "building Kubernetes $k8s_version and etcd into $bin: the first build downloads their modules," >&2
echo "  then compiles them, about 10-15 minutes on 2 cores (longer beside other builds); cached after" >&2
total="$(cd "$here/kubernetes" && go list -deps -f '{{if not .Standard}}x{{end}}' tool | grep -c x)"
(cd "$here/kubernetes" && export GOBIN="$staging" && go_build_with_progress "Kubernetes $k8s_version" "$total" \
  "$staging/build.log" go install -v -trimpath -ldflags "-s -w $stamp" tool)
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$staging/etcd" .)
rm -rf "$bin" && mv "$staging" "$bin"
echo "$bin"
