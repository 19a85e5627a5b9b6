#!/usr/bin/env bash
# Builds a real Argo CD (pinned in argocd-runtime/go.mod) from its Go module, once,
# for tier 3 (e2e/tests/argocd_real, `just argocd-up`): the one `argocd` binary,
# named per component by symlinks (it dispatches on its file name), and the
# argocd-redis stand-in (argocd-runtime/redis), beside upstream's
# git-verify-wrapper.sh, which the repo-server runs for every revision it reads
# (upstream's image ships it on PATH). Like build.sh, it lands in a
# cache folder named after the pins, so a change of pins rebuilds and nothing
# else does. The first build compiles ~2,000 Go packages: about 8–12 minutes on
# 2 cores, with progress on stderr. Prints the bin/ folder on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/progress.sh"
pins="$here/argocd-runtime"
key="$(cat "$here/build-argocd.sh" "$pins"/{go.mod,go.sum,redis/main.go} | sha256sum | cut -c1-16)"
cache="${BERTH_ARGOCD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/argocd}"
bin="$cache/$key/bin"

if [[ -x "$bin/argocd" && -x "$bin/argocd-redis" && -x "$bin/git-verify-wrapper.sh" ]]; then
  echo "$bin"
  exit 0
fi

# go.sum is committed, so every download is verified against it; the checksum
# database itself is not reachable from every machine that builds this.
export GOSUMDB="${GOSUMDB:-off}" GOFLAGS="-mod=readonly" CGO_ENABLED=0
cd "$pins"
version="$(go list -m -f '{{.Version}}' github.com/argoproj/argo-cd/v3)"
# The CRDs Berth's output is validated against (../argocd) must be the same release.
crd_version="$(cd "$here/argocd" && go list -m -f '{{.Version}}' github.com/argoproj/argo-cd/v3)"
if [[ "$version" != "$crd_version" ]]; then
  echo "argocd-runtime pins Argo CD $version but argocd (the CRDs) pins $crd_version: bump both" >&2
  exit 1
fi
client_go="$(go list -m -f '{{.Version}}' k8s.io/client-go)"
# What Argo CD's Makefile stamps.
pkg=github.com/argoproj/argo-cd/v3/common
stamp="-X $pkg.version=${version#v} -X $pkg.gitTag=$version -X $pkg.gitTreeState=clean"
stamp+=" -X $pkg.kubectlVersion=$client_go"

staging="$cache/$key/staging"
rm -rf "$staging" && mkdir -p "$staging"
echo "building Argo CD $version and argocd-redis into $bin" >&2
total="$(go list -deps -f '{{if not .Standard}}x{{end}}' github.com/argoproj/argo-cd/v3/cmd ./redis | grep -c x)"
echo "  (first build compiles $total Go packages: about 8-12 minutes on 2 cores, longer beside other builds; cached after)" >&2
go_build_with_progress "Argo CD" "$total" "$staging/build.log" \
  go build -v -trimpath -ldflags "-s -w $stamp" -o "$staging/argocd" github.com/argoproj/argo-cd/v3/cmd
nice -n 10 go build -trimpath -ldflags "-s -w" -o "$staging/argocd-redis" ./redis
module_dir="$(go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)"
install -m 0755 "$module_dir/hack/git-verify-wrapper.sh" "$staging/git-verify-wrapper.sh"
for name in argocd-application-controller argocd-repo-server argocd-git-ask-pass; do
  ln -s argocd "$staging/$name"
done
rm -rf "$bin" && mv "$staging" "$bin"
echo "$bin"
