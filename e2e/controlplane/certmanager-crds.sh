#!/usr/bin/env bash
# Prints the folder holding cert-manager's own CRDs (Issuer, Certificate, …) from
# the cert-manager Go module pinned in certmanager/go.mod, downloading it once
# (verified against the committed go.sum).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/certmanager"
export GOSUMDB="${GOSUMDB:-off}" GOFLAGS="-mod=readonly"
dir="$(go mod download -json github.com/cert-manager/cert-manager | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ ! -f "$dir/deploy/crds/cert-manager.io_certificates.yaml" ]]; then
  echo "cert-manager's CRDs were not found in the module download ($dir)" >&2
  exit 1
fi
echo "$dir/deploy/crds"
