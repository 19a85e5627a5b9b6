#!/usr/bin/env bash
# Prints the folder holding Argo CD's own CRDs (Application, AppProject, …) from
# the Argo CD Go module pinned in argocd/go.mod, downloading it once (verified
# against the committed go.sum).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/argocd"
export GOSUMDB="${GOSUMDB:-off}" GOFLAGS="-mod=readonly"
dir="$(go mod download -json github.com/argoproj/argo-cd/v3 | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ ! -f "$dir/manifests/crds/application-crd.yaml" ]]; then
  echo "Argo CD's CRDs were not found in the module download ($dir)" >&2
  exit 1
fi
echo "$dir/manifests/crds"
