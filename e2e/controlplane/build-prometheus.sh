#!/usr/bin/env bash
# Builds Prometheus (pinned in prometheus/go.mod) from its Go module, once, for the
# metric-gate suite (e2e/tests/rollout_prometheus): a real server that scrapes the
# test's exporter and answers Berth's instant queries. Like build.sh, the binary
# lands in a cache folder named after the pins, so a change of pins rebuilds and
# nothing else does. No web UI assets are built in (the API is all the tests use).
# Prints the prometheus binary's path on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/progress.sh"
pins="$here/prometheus"
key="$(cat "$here/build-prometheus.sh" "$pins"/go.{mod,sum} | sha256sum | cut -c1-16)"
cache="${BERTH_PROMETHEUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/prometheus}"
bin="$cache/$key/bin"

if [[ -x "$bin/prometheus" ]]; then
  echo "$bin/prometheus"
  exit 0
fi

# go.sum is committed, so every download is verified against it; the checksum
# database itself is not reachable from every machine that builds this.
export GOSUMDB="${GOSUMDB:-off}" GOFLAGS="-mod=readonly" CGO_ENABLED=0
cd "$pins"
version="$(go list -m -f '{{.Version}}' github.com/prometheus/prometheus)"
# What Prometheus' own build (promu) stamps, so `prometheus --version` says what it is.
pkg=github.com/prometheus/common/version
stamp="-X $pkg.Version=${version#v} -X $pkg.Revision=$version -X $pkg.Branch=module -X $pkg.BuildUser=berth"

staging="$cache/$key/staging"
rm -rf "$staging" && mkdir -p "$staging"
echo "building Prometheus $version into $bin" >&2
total="$(go list -deps -f '{{if not .Standard}}x{{end}}' github.com/prometheus/prometheus/cmd/prometheus | grep -c x)"
echo "  (first build compiles $total Go packages: about 5-10 minutes on 2 cores, longer beside other builds; cached after)" >&2
go_build_with_progress "Prometheus" "$total" "$staging/build.log" \
  go build -v -trimpath -ldflags "-s -w $stamp" -o "$staging/prometheus" github.com/prometheus/prometheus/cmd/prometheus
rm -rf "$bin" && mv "$staging" "$bin"
echo "$bin/prometheus"
