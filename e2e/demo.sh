#!/usr/bin/env bash
# Berth's demo on a real local control plane: install the CRDs, apply the
# examples, and show what the apiserver now knows and refuses. Leaves the
# control plane running for you to explore; `just cluster-down` stops it.
# With Argo CD up beside it (`just demo --argocd`, or `just argocd-up` first), Argo CD
# applies what Berth commits, from a local app repository.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

with_argocd=false
for arg in "$@"; do
  case "$arg" in
    --argocd) with_argocd=true ;;
    *) echo "usage: just demo [--argocd]  (--argocd: a real Argo CD applies what Berth commits)" >&2; exit 2 ;;
  esac
done
up_args=(up --detach)
$with_argocd && up_args+=(--argocd)

step "Start a real kube-apiserver, etcd and kube-controller-manager on loopback"
if [[ ! -x target/debug/berth-controlplane || ! -x target/debug/berth ]]; then
  # A first run: Go builds the peers in the background while cargo compiles Berth (each build
  # has long serial phases, downloads and linking, that the other fills). Both are cached.
  echo "(first run: cargo compiles Berth and its control-plane launcher, about 10 minutes on 2 cores,"
  echo " while Go builds Kubernetes and etcd$($with_argocd && echo ' and Argo CD') beside it; all of it about"
  echo " $($with_argocd && echo 28 || echo 20-25) minutes on 2 cores, with progress; later runs start in seconds)"
  peers=()
  e2e/controlplane/build.sh > /dev/null & peers+=($!)
  if $with_argocd; then e2e/controlplane/build-argocd.sh > /dev/null & peers+=($!); fi
  # Two builds, as the steps below run them (one build of both would unify their
  # dependencies' features differently, and `cargo build --bin berth` would compile again).
  cargo build -p berth-e2e --bin berth-controlplane
  cargo build --bin berth
  for peer in "${peers[@]}"; do
    wait "$peer" || { echo "a Go build failed (its output is above)" >&2; exit 1; }
  done
fi
cargo run -q -p berth-e2e --bin berth-controlplane -- "${up_args[@]}"
source .berth/cluster/env.sh
argocd=false
grep -q '"argocd": {' .berth/cluster/cluster.json && argocd=true
if kubectl get namespace payments >/dev/null 2>&1; then
  # Rollouts happen once: a second run on the same objects would have nothing to show.
  echo "(an earlier demo ran on this control plane: starting a fresh one, about 10 s, a minute with Argo CD)"
  if [[ -f .berth/operator.pid ]]; then kill "$(cat .berth/operator.pid)" 2>/dev/null || true; rm -f .berth/operator.pid; fi
  cargo run -q -p berth-e2e --bin berth-controlplane -- down
  $argocd && up_args=(up --detach --argocd)
  cargo run -q -p berth-e2e --bin berth-controlplane -- "${up_args[@]}"
  source .berth/cluster/env.sh
fi

step "Install Berth's CRDs"
run kubectl apply --server-side -f crds/
# A just-created CRD may not have conditions yet; kubectl wait then errors instead of waiting.
for _ in $(seq 20); do kubectl wait --for=condition=Established --timeout=60s -f crds/ 2>/dev/null && break; sleep 0.25; done

step "Start the operator (berth run) with its admission webhook, committing to a local bare GitOps repository"
cargo build --bin berth
berth=target/debug/berth
run $berth dev-credentials --out .berth/webhook --host 127.0.0.1
if [[ -f .berth/operator.pid ]] && kill -0 "$(cat .berth/operator.pid)" 2>/dev/null; then
  kill "$(cat .berth/operator.pid)"; sleep 1
fi
rm -rf .berth/gitops-remote.git .berth/gitops-clone
git init -q --bare --initial-branch=main .berth/gitops-remote.git
# Commits a file (path, content) to a bare repository's main, as a person would push it.
push_file() {
  local repo path="$2" content="$3" work
  repo="$(cd "$1" && pwd)"
  work="$(mktemp -d)"
  git init -q --initial-branch=main "$work"
  mkdir -p "$work/$(dirname "$path")" && printf '%s' "$content" > "$work/$path"
  git -C "$work" add -A && git -C "$work" -c user.name=platform -c user.email=platform@example.com commit -qm "add $path"
  git -C "$work" push -q "$repo" main
  rm -rf "$work"
}
# Commits files (path content ...) on top of a bare repository's main and pushes the commit as
# tag $2 only, as an app team tags a release.
tag_files() {
  local repo tag="$2" work
  repo="$(cd "$1" && pwd)"
  shift 2
  work="$(mktemp -d)"
  git clone -q "$repo" "$work"
  while (($#)); do
    mkdir -p "$work/$(dirname "$1")" && printf '%s' "$2" > "$work/$1"
    shift 2
  done
  git -C "$work" add -A && git -C "$work" -c user.name=app-team -c user.email=app@example.com commit -qm "checkout $tag"
  git -C "$work" tag "$tag" && git -C "$work" push -q origin "$tag"
  rm -rf "$work"
}
# Only without Argo CD, where the demo says so: plays Argo CD's application controller for request
# $1. Applies the Application Berth committed for it and writes the status Argo CD would report:
# Synced, health $2, having compared the source (and revision) the committed Application names.
play_argocd() {
  local name="$1" health="$2" folder app source destination revision
  folder="$(kubectl get environmentrequest "$name" -n payments -o jsonpath='{.status.gitops.path}')"
  app="$(kubectl get environmentrequest "$name" -n payments -o jsonpath='{.status.namespace}')"
  # Berth's Applications carry Argo CD's own finalizer, which kubectl warns about.
  git --git-dir .berth/gitops-remote.git show "main:$folder/application.yaml" \
    | kubectl apply -f - 2>&1 >/dev/null | { grep -v '^Warning: metadata.finalizers' >&2 || true; }
  source="$(kubectl get application "$app" -n argocd -o jsonpath='{.spec.source}')"
  destination="$(kubectl get application "$app" -n argocd -o jsonpath='{.spec.destination}')"
  revision="$(kubectl get application "$app" -n argocd -o jsonpath='{.spec.source.targetRevision}')"
  printf '(playing Argo CD) %s: Synced, %s at %s\n' "$app" "$health" "$revision"
  kubectl patch application "$app" -n argocd --type merge -p "{\"status\": {\"sync\": {\"status\": \"Synced\",
    \"revision\": \"$revision\", \"comparedTo\": {\"source\": $source, \"destination\": $destination}},
    \"health\": {\"status\": \"$health\"}}}" >/dev/null
}
# Not --strict (the chart's and config/'s default): the demo's bearer tokens are
# HS256, minted by `berth token` from a shared secret.
BERTH_GITOPS_REMOTE="file://$PWD/.berth/gitops-remote.git" BERTH_GITOPS_WORKDIR="$PWD/.berth/gitops-clone" \
  BERTH_LISTEN=127.0.0.1:18080 BERTH_LOG_FORMAT=text \
  BERTH_WEBHOOK_LISTEN=127.0.0.1:18443 BERTH_AUTH_LISTEN=127.0.0.1:18444 \
  BERTH_WEBHOOK_CERT_FILE=.berth/webhook/tls.crt BERTH_WEBHOOK_KEY_FILE=.berth/webhook/tls.key \
  BERTH_APPROVAL_SIGNING_KEY_FILE=.berth/webhook/approval-signing.pem \
  BERTH_AUTH_HS256_SECRET_FILE=.berth/webhook/auth-hs256.secret \
  nohup $berth run > .berth/operator.log 2>&1 &
echo $! > .berth/operator.pid
for _ in $(seq 50); do curl -sf 127.0.0.1:18080/readyz >/dev/null && break; sleep 0.2; done
run curl -s 127.0.0.1:18080/readyz; echo

step "Register the webhook with the apiserver (failurePolicy Fail, only Berth's kinds)"
$berth webhook-config --url https://127.0.0.1:18443 --ca-file .berth/webhook/ca.crt | run kubectl apply -f -
for _ in $(seq 50); do curl -sf --cacert .berth/webhook/ca.crt https://127.0.0.1:18443/healthz >/dev/null && break; sleep 0.2; done

step "Platform team: three classes and the payments tenant (Berth creates its namespace and RBAC)"
run kubectl apply -f examples/environmentclass-preview.yaml -f examples/environmentclass-staging.yaml \
  -f examples/environmentclass-production.yaml -f examples/tenant-payments.yaml
for _ in $(seq 50); do kubectl get namespace payments >/dev/null 2>&1 && break; sleep 0.2; done
run kubectl get namespace payments --show-labels
run kubectl --context alice auth can-i create environmentrequests.berth.dev -n payments

if $argocd; then
  step "Argo CD: one root Application applies everything Berth commits for this cluster"
  cat > .berth/berth-root.yaml <<YAML
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: berth-root, namespace: argocd}
spec:
  project: default
  source: {repoURL: 'file://$PWD/.berth/gitops-remote.git', targetRevision: main, path: clusters/in-cluster, directory: {recurse: true}}
  destination: {name: in-cluster, namespace: argocd}
  syncPolicy:
    automated: {prune: true, allowEmpty: true}
    syncOptions: [ApplyOutOfSyncOnly=true]
YAML
  run kubectl apply -f .berth/berth-root.yaml
  # The app the preview deploys: a ConfigMap (no nodes here, so no Pods) at tag pr-1234.
  rm -rf .berth/app-checkout.git && git init -q --bare --initial-branch=main .berth/app-checkout.git
  push_file .berth/app-checkout.git deploy/overlays/preview/settings.yaml \
    $'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: checkout-settings}\ndata: {greeting: hello from pr-1234}\n'
  git --git-dir .berth/app-checkout.git tag pr-1234 main
fi

step "Alice asks for a preview environment"
if $argocd; then
  echo "(its app from the local repository .berth/app-checkout.git instead of git.example.com)"
  sed "s#https://git.example.com/payments/checkout.git#file://$PWD/.berth/app-checkout.git#" \
    examples/environmentrequest-preview.yaml | run kubectl --context alice apply -f -
  # Ready once Argo CD has synced it: it looks at git every 10 s here.
  run kubectl wait --for=jsonpath='{.status.phase}'=Ready environmentrequest/checkout-pr-1234 -n payments --timeout=180s
else
  run kubectl --context alice apply -f examples/environmentrequest-preview.yaml
  run kubectl wait --for=jsonpath='{.status.phase}'=Ready environmentrequest/checkout-pr-1234 -n payments --timeout=60s
fi
run kubectl get environmentrequest checkout-pr-1234 -n payments -o jsonpath='{.metadata.annotations}'; echo

step "Alice asks for production: admitted, it waits for an approval (nothing is committed until then)"
run kubectl --context alice apply -f examples/environmentrequest-production.yaml
run kubectl wait --for=jsonpath='{.status.phase}'=AwaitingApproval environmentrequest/checkout-prod -n payments --timeout=60s
run kubectl get environmentrequest checkout-prod -n payments \
  -o jsonpath='{.status.conditions[?(@.type=="Approved")].message}'; echo

step "Alice cannot approve it herself; bob, a platform approver, can (the approval is bound to this request's UID)"
$berth token --secret-file .berth/webhook/auth-hs256.secret --subject alice --group team-payments --role requester > .berth/webhook/alice.token
$berth token --secret-file .berth/webhook/auth-hs256.secret --subject bob --group platform-approvers --role approver > .berth/webhook/bob.token
export BERTH_URL=https://127.0.0.1:18444 BERTH_CA_FILE=.berth/webhook/ca.crt
if BERTH_TOKEN_FILE=.berth/webhook/alice.token $berth approve -f examples/environmentrequest-production.yaml; then
  echo "unexpected: alice approved" >&2
  exit 1
fi
printf '$ BERTH_TOKEN_FILE=.berth/webhook/bob.token berth approve -f examples/environmentrequest-production.yaml -o yaml > .berth/checkout-prod.yaml\n'
BERTH_TOKEN_FILE=.berth/webhook/bob.token $berth approve -f examples/environmentrequest-production.yaml -o yaml > .berth/checkout-prod.yaml
run kubectl --context alice apply -f .berth/checkout-prod.yaml
if $argocd; then
  # Its cluster, prod-eu-west-1, is not this Argo CD's: committed, it waits for an Argo CD that applies it.
  run kubectl wait --for=condition=Committed environmentrequest/checkout-prod -n payments --timeout=60s
else
  run kubectl wait --for=jsonpath='{.status.phase}'=Ready environmentrequest/checkout-prod -n payments --timeout=60s
fi
run kubectl get environmentrequest checkout-prod -n payments \
  -o jsonpath='{.status.conditions[?(@.type=="Approved")].message}'; echo
run kubectl get berth -A

step "A rollout: checkout's previews to v1.9.0, a canary first, then the rest in two batches (each batch one commit)"
# Two more previews of checkout; checkout-pr-1234 is the canary.
for pr in 1235 1236; do
  sed -e "s/checkout-pr-1234/checkout-pr-$pr/" -e "s/revision: pr-1234/revision: pr-$pr/" \
    examples/environmentrequest-preview.yaml > ".berth/checkout-pr-$pr.yaml"
  if $argocd; then
    sed -i "s#https://git.example.com/payments/checkout.git#file://$PWD/.berth/app-checkout.git#" ".berth/checkout-pr-$pr.yaml"
    git --git-dir .berth/app-checkout.git tag -f "pr-$pr" main >/dev/null
  fi
  run kubectl --context alice apply -f ".berth/checkout-pr-$pr.yaml"
done
run kubectl label environmentrequest checkout-pr-1234 -n payments ring=canary
if $argocd; then
  git --git-dir .berth/app-checkout.git tag -f v1.9.0 main >/dev/null
  gate='{}'   # Argo CD synced and healthy at v1.9.0, live objects matching the commit
  wait_s=300
else
  # Nothing reports sync here: the gate only waits until each batch's commit is recorded.
  gate='{requireSynced: false, requireNoDrift: false}'
  wait_s=60
fi
for pr in 1235 1236; do
  kubectl wait --for=jsonpath='{.status.phase}'=Ready "environmentrequest/checkout-pr-$pr" -n payments --timeout=${wait_s}s >/dev/null
done
cat > .berth/rollout-previews.yaml <<YAML
apiVersion: berth.dev/v1alpha1
kind: Rollout
metadata: {name: checkout-previews-v1-9-0, namespace: payments}
spec:
  app: checkout
  revision: v1.9.0
  selector: {matchLabels: {app: checkout}}
  stages:
    - {name: canary, classes: [preview], selector: {matchLabels: {ring: canary}}, healthGate: $gate}
    - {name: previews, classes: [preview], batchSize: 1, healthGate: $gate}
YAML
run kubectl --context alice apply -f .berth/rollout-previews.yaml
echo "(checkout-prod is selected too, but no stage takes production: it is skipped and counted)"
run kubectl wait --for=jsonpath='{.status.phase}'=Succeeded rollout/checkout-previews-v1-9-0 -n payments --timeout=${wait_s}s
run kubectl get rollouts -n payments
run kubectl get environmentrequests -n payments -l app=checkout \
  -o custom-columns='NAME:.metadata.name,SPEC:.spec.app.revision,PROMOTED:.status.promotion.revision,STATE:.status.promotion.state,PHASE:.status.phase'
run git --git-dir .berth/gitops-remote.git log -3 --format='%h %s%n%(trailers:key=Berth-Rollout-Step,key=Berth-Revision)' main

step "Production needs bob: a rollout stage that touches production waits for a signed approval"
echo "(the production class requires an approval from platform-approvers: any stage that touches it waits for"
echo " one, whatever the Rollout says; checkout-prod's cluster has no Argo CD here, so its gate waits only"
echo " for the commit)"
cat > .berth/rollout-prod.yaml <<YAML
apiVersion: berth.dev/v1alpha1
kind: Rollout
metadata: {name: checkout-prod-v1-9-0, namespace: payments}
spec:
  app: checkout
  revision: v1.9.0
  selector: {matchLabels: {app: checkout}}
  stages:
    - {name: production, classes: [production], healthGate: {requireSynced: false, requireNoDrift: false}}
YAML
run kubectl --context alice apply -f .berth/rollout-prod.yaml
kubectl wait --for=jsonpath='{.status.reason}'=AwaitingApproval rollout/checkout-prod-v1-9-0 -n payments --timeout=60s >/dev/null
run $berth rollout status checkout-prod-v1-9-0 -n payments
stage=(approve rollout checkout-prod-v1-9-0 -n payments --stage production -o token)
if BERTH_TOKEN_FILE=.berth/webhook/alice.token $berth "${stage[@]}" > /dev/null; then
  echo "unexpected: alice approved a production stage" >&2
  exit 1
fi
printf '$ BERTH_TOKEN_FILE=.berth/webhook/bob.token berth %s > .berth/prod-stage.token\n' "${stage[*]}"
BERTH_TOKEN_FILE=.berth/webhook/bob.token $berth "${stage[@]}" > .berth/prod-stage.token
# The token is a credential: shown as a placeholder, applied as it is.
printf '$ kubectl --context alice patch rollout checkout-prod-v1-9-0 -n payments --type merge -p %s\n' \
  "'{\"spec\":{\"approvals\":[{\"stage\":\"production\",\"token\":\"<.berth/prod-stage.token>\"}]}}'"
kubectl --context alice patch rollout checkout-prod-v1-9-0 -n payments --type merge \
  -p "{\"spec\":{\"approvals\":[{\"stage\":\"production\",\"token\":\"$(cat .berth/prod-stage.token)\"}]}}"
run kubectl wait --for=jsonpath='{.status.phase}'=Succeeded rollout/checkout-prod-v1-9-0 -n payments --timeout=120s
run $berth rollout status checkout-prod-v1-9-0 -n payments

step "A revision that goes Degraded is rolled back: checkout's previews to v2.0.0-bad, onFailure: Rollback"
canary_ns="$(kubectl get environmentrequest checkout-pr-1234 -n payments -o jsonpath='{.status.namespace}')"
canary_folder="$(kubectl get environmentrequest checkout-pr-1234 -n payments -o jsonpath='{.status.gitops.path}')"
if $argocd; then
  echo "The app team tags v2.0.0-bad: a new greeting and a Deployment whose Pod no node will ever run (this"
  echo "control plane has none): kube-controller-manager gives up on it after its 10 s progress deadline,"
  echo "and Argo CD's own health check reports the Application Degraded."
  tag_files .berth/app-checkout.git v2.0.0-bad \
    deploy/overlays/preview/settings.yaml \
    $'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: checkout-settings}\ndata: {greeting: hello from v2.0.0-bad}\n' \
    deploy/overlays/preview/deployment.yaml \
    $'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: checkout}\nspec:\n  replicas: 1\n  progressDeadlineSeconds: 10\n  selector: {matchLabels: {app: checkout}}\n  template:\n    metadata: {labels: {app: checkout}}\n    spec: {containers: [{name: checkout, image: registry.invalid/checkout:v2.0.0-bad}]}\n'
  run git --git-dir .berth/app-checkout.git show --stat --format='%h %s' v2.0.0-bad
else
  echo "Without Argo CD nothing reports health. For this act only, the demo plays Argo CD's part: it installs"
  echo "Argo CD's Application CRD (Berth notices it), applies the Applications Berth committed and writes"
  echo "the status Argo CD would report: the previews Synced and Healthy now, the canary Degraded at v2.0.0-bad."
  argocd_crds="$(e2e/controlplane/module-crds.sh argocd github.com/argoproj/argo-cd/v3 manifests/crds application-crd.yaml)"
  kubectl create namespace argocd --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  run kubectl apply --server-side -f "$argocd_crds/application-crd.yaml"
  for _ in $(seq 20); do kubectl wait --for=condition=Established --timeout=60s -f "$argocd_crds/application-crd.yaml" 2>/dev/null && break; sleep 0.25; done
  for pr in 1234 1235 1236; do play_argocd "checkout-pr-$pr" Healthy; done
  echo "(from here checkout-prod, committed for cluster prod-eu-west-1, waits for an Argo CD there to sync it, as with Argo CD up)"
  for pr in 1234 1235 1236; do
    kubectl wait --for=jsonpath='{.status.sync.health}'=Healthy "environmentrequest/checkout-pr-$pr" -n payments --timeout=60s >/dev/null
  done
fi
before="$(git --git-dir .berth/gitops-remote.git rev-parse main)"
cat > .berth/rollout-bad.yaml <<YAML
apiVersion: berth.dev/v1alpha1
kind: Rollout
metadata: {name: checkout-previews-v2-0-0-bad, namespace: payments}
spec:
  app: checkout
  revision: v2.0.0-bad
  selector: {matchLabels: {app: checkout}}
  onFailure: Rollback
  stages:
    - {name: canary, classes: [preview], selector: {matchLabels: {ring: canary}}, healthGate: {progressDeadline: 3m}}
    - {name: previews, classes: [preview], batchSize: 1, healthGate: {progressDeadline: 3m}}
YAML
run kubectl --context alice apply -f .berth/rollout-bad.yaml
if $argocd; then
  echo "(about 15-60 s: Argo CD syncs the canary's commit, the Deployment gets 10 s, Argo CD reports Degraded,"
  echo " Berth commits the rollback)"
else
  # The canary's batch commit first; then Argo CD's part, played.
  canary_committed() {
    git --git-dir .berth/gitops-remote.git show "main:$canary_folder/application.yaml" 2>/dev/null \
      | grep -q 'targetRevision: v2.0.0-bad'
  }
  for _ in $(seq 150); do canary_committed && break; sleep 0.2; done
  if ! canary_committed; then
    echo "the canary's batch commit did not land within 30 s; see .berth/operator.log" >&2
    exit 1
  fi
  play_argocd checkout-pr-1234 Degraded
  echo "(a few seconds: Berth sees Degraded at v2.0.0-bad and commits the rollback)"
fi
run kubectl wait --for=jsonpath='{.status.phase}'=RolledBack rollout/checkout-previews-v2-0-0-bad -n payments --timeout=300s
run kubectl get rollouts -n payments
run $berth rollout status checkout-previews-v2-0-0-bad -n payments
run git --git-dir .berth/gitops-remote.git log -2 --format='%h %s%n%(trailers)' main
printf '$ git diff --stat %s main -- %s\n' "${before:0:7}" "$canary_folder"
if git --git-dir .berth/gitops-remote.git diff --exit-code --stat "$before" main -- "$canary_folder"; then
  echo "(no difference: the canary's folder holds the exact bytes it held before the rollout)"
fi
if $argocd; then
  echo "Argo CD syncs v1.9.0 again and prunes the Deployment (about 10-30 s)"
  run kubectl wait --for=jsonpath='{.status.sync.comparedTo.source.targetRevision}'=v1.9.0 "application/$canary_ns" -n argocd --timeout=180s
  run kubectl wait --for=jsonpath='{.status.health.status}'=Healthy "application/$canary_ns" -n argocd --timeout=180s
  run kubectl get configmap checkout-settings -n "$canary_ns" -o jsonpath='{.data.greeting}'; echo
  run kubectl get deployments -n "$canary_ns"
else
  play_argocd checkout-pr-1234 Healthy
fi
run kubectl wait --for=jsonpath='{.status.sync.comparedTo.targetRevision}'=v1.9.0 environmentrequest/checkout-pr-1234 -n payments --timeout=60s
run kubectl wait --for=jsonpath='{.status.phase}'=Ready environmentrequest/checkout-pr-1234 -n payments --timeout=60s
run kubectl get environmentrequests -n payments -l app=checkout \
  -o custom-columns='NAME:.metadata.name,SPEC:.spec.app.revision,PROMOTED:.status.promotion.revision,STATE:.status.promotion.state,ARGOCD:.status.sync.comparedTo.targetRevision,HEALTH:.status.sync.health,PHASE:.status.phase'

step "What Berth committed to the GitOps repository"
run git --git-dir .berth/gitops-remote.git log --stat -1 main

env_ns="$(kubectl get environmentrequest checkout-pr-1234 -n payments -o jsonpath='{.status.namespace}')"
if $argocd; then
  step "Argo CD applied what Berth committed: the environment's namespace, quota, ... and the app"
  run kubectl get namespaces -l berth.dev/tenant=payments
  run kubectl -n argocd get applications
  run kubectl get resourcequota,limitrange,networkpolicy,rolebindings,configmap -n "$env_ns"
  step "Drift: edit the live quota by hand (the preview class lets Argo CD heal it)"
else
  step "Drift: apply the committed folder (Argo CD's job), then edit the live quota by hand"
  folder="clusters/in-cluster/tenants/payments/checkout-pr-1234"
  git --git-dir .berth/gitops-remote.git show "main:$folder/namespace.yaml" | kubectl apply -f -
  for file in resourcequota limitrange networkpolicy rolebindings; do
    git --git-dir .berth/gitops-remote.git show "main:$folder/$file.yaml" | kubectl apply -f -
  done
fi
run kubectl patch resourcequota berth-quota -n "$env_ns" --type merge -p '{"spec":{"hard":{"pods":"99"}}}'
sleep 2
run kubectl get environmentrequest checkout-pr-1234 -n payments -o jsonpath='{.status.drift}'; echo
if $argocd; then
  for _ in $(seq 30); do
    [[ "$(kubectl get resourcequota berth-quota -n "$env_ns" -o jsonpath='{.spec.hard.pods}')" != 99 ]] && break
    sleep 1
  done
  pods="$(kubectl get resourcequota berth-quota -n "$env_ns" -o jsonpath='{.spec.hard.pods}')"
  if [[ "$pods" != 99 ]]; then echo "pods: $pods again: Argo CD healed the quota"; else echo "pods: still 99 (Argo CD has not healed it yet)"; fi
fi

step "Everything Berth knows, in one list"
run kubectl get berth -A

step "The request's fields are documented for kubectl explain"
run kubectl explain environmentrequest.spec.app

step "The apiserver itself refuses what a CEL rule forbids: changing a request's class"
if kubectl patch environmentrequest checkout-pr-1234 -n payments --type merge -p '{"spec":{"class":"production"}}'; then
  echo "unexpected: the class change was accepted" >&2
  exit 1
fi

cat <<MSG

The control plane and the operator are still running (operator log: .berth/operator.log,
metrics: curl 127.0.0.1:18080/metrics, webhook: https://127.0.0.1:18443, auth API: https://127.0.0.1:18444). The GitOps repository is .berth/gitops-remote.git. To use it from your shell:
  source .berth/cluster/env.sh
  kubectl get berth -A
Stop both with: just cluster-down
MSG
if $argocd; then
  echo "Argo CD runs beside them: kubectl -n argocd get applications; its logs: .berth/cluster/logs/argocd-*.log"
fi
