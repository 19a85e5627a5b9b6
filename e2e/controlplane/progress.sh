# Sourced by the build scripts: runs a `go build -v`/`go install -v` in the
# background and says every 30 s how many of its packages it has compiled, so a
# first build (minutes) is never silent. Go's -v names each package on stderr as
# it compiles it; that log is counted.
#
#   go_build_with_progress LABEL TOTAL LOG COMMAND...
go_build_with_progress() {
  local label="$1" total="$2" log="$3" started=$SECONDS build
  shift 3
  # nice: the Go build shares the machine with cargo builds running beside it.
  nice -n 10 "$@" 2>"$log" &
  build=$!
  while kill -0 "$build" 2>/dev/null; do
    sleep 30
    if kill -0 "$build" 2>/dev/null; then
      # Packages already in Go's build cache are not listed; linking comes last.
      echo "  ... $label: $(grep -vc '^#' "$log" || true) of $total packages compiled (cached ones skipped), $((SECONDS - started))s" >&2
    fi
  done
  if ! wait "$build"; then
    grep -v '^[a-zA-Z0-9_./-]*$' "$log" >&2 || cat "$log" >&2
    echo "building $label failed (log: $log)" >&2
    return 1
  fi
  rm -f "$log"
  echo "built $label in $((SECONDS - started))s" >&2
}
