//! Berth installed the way a cluster admin installs it: `config/` through kubectl's
//! built-in kustomize, or the Helm chart, and `berth run` as the ServiceAccount those
//! manifests create, with nothing but the RBAC they grant.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{ClusterInfo, fixture::Cluster, repo_root, users::TestUser};

/// The helm binary built from `e2e/controlplane/helm` (once; cached by its pins).
/// `BERTH_HELM` points at another one instead.
pub fn helm_binary() -> Result<PathBuf> {
    if let Some(helm) = std::env::var_os("BERTH_HELM") {
        return Ok(PathBuf::from(helm));
    }
    crate::path_printed_by(&repo_root().join("e2e/controlplane/build-helm.sh"), &[])
}

/// Folder of cert-manager's own CRDs, from the module pinned in `e2e/controlplane/certmanager`.
pub fn certmanager_crds_dir() -> Result<PathBuf> {
    let args =
        ["certmanager", "github.com/cert-manager/cert-manager", "deploy/crds", "cert-manager.io_certificates.yaml"];
    crate::path_printed_by(&repo_root().join("e2e/controlplane/module-crds.sh"), &args)
}

/// Runs `program` with `args` in the repository root; stdout on success.
fn run(program: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!("{} {} failed:\n{}", program.display(), args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8(out.stdout).context("non-UTF-8 output")
}

/// `kubectl kustomize <dir>` (kubectl's built-in kustomize), `dir` relative to the repository.
pub fn kustomize(kubectl: &Path, dir: &str) -> Result<String> {
    run(kubectl, &["kustomize", dir])
}

/// `helm template <release> charts/berth --namespace <namespace> <args…>`.
pub fn helm_template(release: &str, namespace: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["template", release, "charts/berth", "--namespace", namespace];
    all.extend_from_slice(args);
    run(&helm_binary()?, &all)
}

/// `helm lint --strict charts/berth <args…>`; its report on success.
pub fn helm_lint(args: &[&str]) -> Result<String> {
    let mut all = vec!["lint", "--strict", "charts/berth"];
    all.extend_from_slice(args);
    run(&helm_binary()?, &all)
}

/// The objects in a YAML stream, as JSON (empty documents skipped).
pub fn documents(yaml: &str) -> Result<Vec<Value>> {
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value: Value = serde::Deserialize::deserialize(document).context("parsing a YAML document")?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// The one object of `kind` in `objects`.
pub fn the<'a>(objects: &'a [Value], kind: &str) -> Result<&'a Value> {
    let mut found = objects.iter().filter(|o| o["kind"] == kind);
    let first = found.next().with_context(|| format!("no {kind}"))?;
    if found.next().is_some() {
        bail!("more than one {kind}");
    }
    Ok(first)
}

/// `kind namespace/name` of an object, to compare what two renderings hold.
pub fn key(object: &Value) -> String {
    let meta = &object["metadata"];
    format!(
        "{} {}/{}",
        object["kind"].as_str().unwrap_or(""),
        meta["namespace"].as_str().unwrap_or(""),
        meta["name"].as_str().unwrap_or("")
    )
}

/// The webhook configurations among `objects`, pointed at `url` (a webhook outside the
/// cluster, as the local control plane has no Service network) with `ca_pem` trusted,
/// each webhook keeping its path and everything else as shipped. A YAML stream for
/// `kubectl apply`.
pub fn webhooks_at(objects: &[Value], url: &str, ca_pem: &str) -> Result<String> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let mut out = String::new();
    let kinds = ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"];
    for object in objects.iter().filter(|o| kinds.iter().any(|k| o["kind"] == *k)) {
        let mut object = object.clone();
        let webhooks = object["webhooks"].as_array_mut().context("webhooks")?;
        for webhook in webhooks {
            let config = &mut webhook["clientConfig"];
            let path = config["service"]["path"].as_str().context("a webhook without a service path")?.to_owned();
            *config = serde_json::json!({ "url": format!("{url}{path}"), "caBundle": STANDARD.encode(ca_pem) });
        }
        out.push_str(&serde_yaml::to_string(&object).context("serializing")?);
        out.push_str("---\n");
    }
    Ok(out)
}

/// A kubeconfig at `path` for the ServiceAccount `namespace/name`, with a token from
/// the TokenRequest API (`kubectl create token`), as a pod would have mounted.
pub async fn service_account_kubeconfig(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    path: &Path,
) -> Result<PathBuf> {
    let token = cluster.kubectl("admin", &["create", "token", name, "-n", namespace, "--duration=2h"], None).await;
    if !token.success {
        bail!("kubectl create token {name} failed: {}", token.stderr);
    }
    let ca = std::fs::read_to_string(cluster.info.dir.join("pki/ca.crt")).context("reading the cluster CA")?;
    let user = TestUser { name: name.to_owned(), groups: Vec::new(), token: token.stdout.trim().to_owned() };
    crate::users::write_kubeconfig(path, &cluster.info.server, &ca, &[&user])?;
    Ok(path.to_owned())
}

/// `info` with `kubeconfig` instead of the admin's, for [`crate::operator::Operator`].
pub fn as_identity(info: &ClusterInfo, kubeconfig: &Path) -> ClusterInfo {
    ClusterInfo { kubeconfig: kubeconfig.to_owned(), ..info.clone() }
}
