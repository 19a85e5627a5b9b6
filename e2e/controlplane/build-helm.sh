#!/usr/bin/env bash
# Builds helm (pinned in helm/go.mod) from its Go module, once, for the install
# suite (`helm lint` and `helm template` of charts/berth). Like build.sh, the
# binary lands in a cache folder named after the pins, so a change of pins
# rebuilds and nothing else does; it is kept apart from the control plane's
# folder so that bumping one never rebuilds the other. Prints the helm binary's
# path on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
key="$(cat "$here/build-helm.sh" "$here"/helm/go.{mod,sum} | sha256sum | cut -c1-16)"
cache="${BERTH_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/helm}"
bin="$cache/$key/bin"

if [[ -x "$bin/helm" ]]; then
  echo "$bin/helm"
  exit 0
fi

# go.sum is committed, so every download is verified against it; the checksum
# database itself is not reachable from every machine that builds this.
export GOSUMDB="${GOSUMDB:-off}" GOFLAGS="-mod=readonly" CGO_ENABLED=0
cd "$here/helm"
helm_version="$(go list -m -f '{{.Version}}' helm.sh/helm/v3)"
client_go="$(go list -m -f '{{.Version}}' k8s.io/client-go)"
# What helm's own Makefile stamps: its version, and the Kubernetes version its
# client libraries speak (client-go v0.N.x is Kubernetes 1.N), which `helm lint`
# checks deprecated APIs against and `helm template` reports as .Capabilities.
k8s_minor="$(echo "$client_go" | cut -d. -f2)"
stamp="-X helm.sh/helm/v3/internal/version.version=$helm_version"
stamp+=" -X helm.sh/helm/v3/internal/version.metadata="
stamp+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  stamp+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

staging="$cache/$key/staging"
rm -rf "$staging" && mkdir -p "$staging"
echo "building helm $helm_version into $bin (first build takes a few minutes)" >&2
GOBIN="$staging" go install -trimpath -ldflags "-s -w $stamp" tool
rm -rf "$bin" && mv "$staging" "$bin"
echo "$bin/helm"
