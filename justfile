# Berth's developer commands. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

controlplane := "cargo run -q -p berth-e2e --bin berth-controlplane --"

# List the recipes
default:
    @just --list

# The whole test suite: lint, unit tests and e2e against a real control plane (and every
# benchmark's smoke run: those of berth here, the operator one on the control plane)
test: lint controlplane
    cargo test --workspace --locked

# The fast loop: Berth's unit tests, tests/ and the benchmarks' smoke runs that need no
# control plane; no lint, no e2e
unit:
    cargo test -p berth --locked

# Formatting and clippy, warnings as errors
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# cargo-fuzz (libFuzzer) on the nightly toolchain, installed here if it is missing; `just fuzz 600`
# for longer runs. Seeds come from fuzz/corpus/<target>/; what the fuzzer finds goes to the
# ignored fuzz/target/corpus/<target>/, so the seeds stay as committed. A crash stops the run
# and lands in fuzz/artifacts/<target>/: replay it with
# `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>`. tests/fuzz_smoke.rs runs the
# same harness on stable Rust in `cargo test`.
# Fuzz admission reviews, approval tokens and bearer tokens, each for `seconds` seconds
fuzz seconds="60":
    command -v cargo-fuzz > /dev/null || cargo install --locked cargo-fuzz
    for target in admission_review approval_token bearer_token; do \
        mkdir -p "fuzz/target/corpus/$target"; \
        dict=(); [ -f "fuzz/$target.dict" ] && dict=("-dict=fuzz/$target.dict"); \
        cargo +nightly fuzz run "$target" "fuzz/target/corpus/$target" "fuzz/corpus/$target" -- \
            -max_total_time={{seconds}} "${dict[@]}"; \
    done

# Regenerate crds/ (and the chart's copy) from the Rust types
crds:
    cargo run -q --bin berth -- crdgen --out crds
    cargo run -q --bin berth -- crdgen --out charts/berth/crds

# Build kube-apiserver, kube-controller-manager, kubectl, etcd, helm, Argo CD, Prometheus and git-ssh from their Go modules (cached)
controlplane:
    e2e/controlplane/build.sh > /dev/null
    e2e/controlplane/build-helm.sh > /dev/null
    e2e/controlplane/build-argocd.sh > /dev/null
    e2e/controlplane/build-prometheus.sh > /dev/null
    e2e/controlplane/build-git-ssh.sh > /dev/null

# The pinned helm, e.g. `just helm template berth charts/berth --set gitops.remote=…`
helm *args:
    @"$(e2e/controlplane/build-helm.sh)" {{args}}

# Start a local control plane in the background and print how to use it
cluster-up:
    {{controlplane}} up --detach

# Like cluster-up, with a real Argo CD (application controller, repo-server, Redis) beside it
argocd-up:
    {{controlplane}} up --detach --argocd

# Stop the local control plane (and the demo's operator); leaves no process behind
cluster-down:
    -@[ -f .berth/operator.pid ] && kill "$(cat .berth/operator.pid)" 2>/dev/null; rm -f .berth/operator.pid
    {{controlplane}} down

# Show Berth on a local control plane (leaves it running; `just cluster-down` stops it);
# `just demo --argocd` has a real Argo CD apply what Berth commits
demo *args:
    e2e/demo.sh {{args}}

# For people with Docker: a kind cluster with Berth's CRDs
kind-up:
    kind create cluster --name berth --config kind-config.yaml
    kubectl --context kind-berth apply --server-side -f crds/
    for _ in $(seq 20); do kubectl --context kind-berth wait --for=condition=Established --timeout=60s -f crds/ && break; sleep 0.5; done

# Delete the kind cluster
kind-down:
    kind delete cluster --name berth

# Every benchmark; reports land in target/bench/
bench: bench-gitops bench-admission bench-budget bench-rollout bench-operator bench-argocd

# Commit → Synced latency with a real Argo CD, with refresh after push and without.
# Argo CD's seconds dominate, so a debug build of Berth is enough (no release build).
bench-argocd: controlplane
    cargo build --bin berth
    cargo test -p berth-e2e --bench argocd -- --bench "$PWD/target/bench/argocd.md"
    @cat target/bench/argocd.md

# Operator on the loopback control plane: latency, burst of 1,000 vs raw create rate, commits, peak RSS
bench-operator:
    cargo build --release --bin berth
    cargo bench -p berth-e2e --bench operator -- "$PWD/target/bench/operator.md"
    @cat target/bench/operator.md

# GitOps writer: commit time as the repository grows, and a 100-environment batch
bench-gitops:
    cargo bench --bench gitops -- target/bench/gitops.md
    @cat target/bench/gitops.md

# Budget decisions: CPU per decision in a tenant of 10,000 requests (target ≤ 1 ms)
bench-budget:
    cargo bench --bench budget -- target/bench/budget.md
    @cat target/bench/budget.md

# Rollouts: the controller's own cost (planning 10,000 environments, status size at 1,000 and
# 10,000), then the operator on the control plane (bench-rollout-operator)
bench-rollout: && bench-rollout-operator
    cargo bench --bench rollout -- target/bench/rollout.md
    @cat target/bench/rollout.md

# Rollouts through the operator on the loopback control plane: 1,000 environments in 10 batches
# (start → Succeeded, gate passed → next push, writes per environment), a rolled-back batch,
# memory with 10,000 in flight
bench-rollout-operator:
    cargo build --release --bin berth
    cargo bench -p berth-e2e --bench rollout -- "$PWD/target/bench/rollout-operator.md"
    @cat target/bench/rollout-operator.md

# Admission webhook over loopback HTTPS: p50/p99 latency and reviews/s, one server core
bench-admission:
    cargo bench --bench admission -- target/bench/admission.md
    @cat target/bench/admission.md
