// Pins the Argo CD release whose own CRDs (Application, AppProject) Berth's
// rendered output is validated against. Only the module's manifests are used.
module berth.dev/e2e/controlplane/argocd

go 1.24.0

require github.com/argoproj/argo-cd/v3 v3.5.7
