#!/usr/bin/env bash
# Prints the folder holding a peer's own CRDs from its Go module, pinned in the
# go.mod of folder <pins> next to this script, downloading it once (verified
# against the committed go.sum). Used for Argo CD's and cert-manager's CRDs.
#   module-crds.sh <pins> <module> <crds folder in the module> <a file that must be there>
set -euo pipefail
pins="$1" module="$2" crds="$3" marker="$4"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/$pins"
export GOSUMDB="${GOSUMDB:-off}" GOFLAGS="-mod=readonly"
dir="$(go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ ! -f "$dir/$crds/$marker" ]]; then
  echo "$module's CRDs were not found in the module download ($dir)" >&2
  exit 1
fi
echo "$dir/$crds"
