#!/usr/bin/env bash
# Builds git-ssh (git-ssh/main.go: a git host over SSH on golang.org/x/crypto/ssh,
# pinned in git-ssh/go.mod) once, for the suite that swaps Berth's SSH key under a
# running `berth run` (e2e/tests/gitops_ssh_key). Like build.sh, the binary lands
# in a cache folder named after its sources, so a change rebuilds and nothing else
# does; a few seconds on 2 cores. Prints the binary's path on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pins="$here/git-ssh"
key="$(cat "$here/build-git-ssh.sh" "$pins"/{go.mod,go.sum,main.go} | sha256sum | cut -c1-16)"
cache="${BERTH_GIT_SSH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/git-ssh}"
bin="$cache/$key/bin"

if [[ -x "$bin/git-ssh" ]]; then
  echo "$bin/git-ssh"
  exit 0
fi

# go.sum is committed, so every download is verified against it; the checksum
# database itself is not reachable from every machine that builds this.
export GOSUMDB="${GOSUMDB:-off}" GOFLAGS="-mod=readonly" CGO_ENABLED=0
cd "$pins"
staging="$cache/$key/staging"
rm -rf "$staging" && mkdir -p "$staging"
echo "building git-ssh into $bin (a few seconds)" >&2
go build -trimpath -ldflags "-s -w" -o "$staging/git-ssh" .
rm -rf "$bin" && mv "$staging" "$bin"
echo "$bin/git-ssh"
