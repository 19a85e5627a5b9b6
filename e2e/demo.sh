#!/usr/bin/env bash
# Berth's demo on a real local control plane: install the CRDs, apply the
# examples, and show what the apiserver now knows and refuses. Leaves the
# control plane running for you to explore; `just cluster-down` stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "Start a real kube-apiserver, etcd and kube-controller-manager on loopback"
cargo run -q -p berth-e2e --bin berth-controlplane -- up --detach
source .berth/cluster/env.sh

step "Install Berth's CRDs"
run kubectl apply --server-side -f crds/
run kubectl wait --for=condition=Established --timeout=60s -f crds/

step "A tenant's request namespace (the Tenant controller will create it; by hand for now)"
kubectl create namespace payments --dry-run=client -o yaml | kubectl label --local -f - berth.dev/tenant=payments -o yaml | kubectl apply -f -

step "Apply the examples: three classes, a tenant, three requests and a rollout"
run kubectl apply -f examples/

step "Everything Berth knows, in one list"
run kubectl get berth -A

step "The request's fields are documented for kubectl explain"
run kubectl explain environmentrequest.spec.app

step "The apiserver itself refuses what a CEL rule forbids: changing a request's class"
if kubectl patch environmentrequest checkout-pr-1234 -n payments --type merge -p '{"spec":{"class":"production"}}'; then
  echo "unexpected: the class change was accepted" >&2
  exit 1
fi

step "Test users are real: alice (team-payments) may not create classes, admin may"
run kubectl --context alice auth can-i create environmentclasses.berth.dev -A || true
run kubectl --context admin auth can-i create environmentclasses.berth.dev -A

cat <<MSG

The control plane is still running. To use it from your shell:
  source .berth/cluster/env.sh
  kubectl get berth -A
Stop it with: just cluster-down
MSG
