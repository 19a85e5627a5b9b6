// Pins the cert-manager release whose own CRDs (Issuer, Certificate) the install
// suite checks config/certmanager and the chart's certificate against. Only the
// module's deploy/crds manifests are used; nothing is built.
module berth.dev/e2e/controlplane/certmanager

go 1.24.0

require github.com/cert-manager/cert-manager v1.21.2
