//! Berth's admission webhook on the local control plane, set up the way a user
//! would with the `berth` binary: `berth dev-credentials` for certificates and keys,
//! `berth run` with the webhook flags, `berth webhook-config | kubectl apply -f -`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    fixture::Cluster,
    operator::{Operator, berth_binary},
};

/// Files and addresses of a webhook-enabled operator.
#[derive(Clone, Debug)]
pub struct WebhookSetup {
    /// Folder `berth dev-credentials` wrote into.
    pub credentials: PathBuf,
    /// The admission webhook, `https://127.0.0.1:<port>`: what the apiserver calls.
    pub url: String,
    /// The auth API, `https://127.0.0.1:<port>`: what `berth approve` calls.
    pub auth_url: String,
    /// CA of the client certificate the apiserver presents to webhooks; when set, the
    /// admission listener requires it (`BERTH_WEBHOOK_CLIENT_CA_FILE`).
    pub client_ca: Option<PathBuf>,
}

impl WebhookSetup {
    /// Credentials in `credentials`, admission and the auth API on free loopback ports.
    pub fn on_free_ports(credentials: PathBuf) -> Result<Self> {
        let url = |port: u16| format!("https://127.0.0.1:{port}");
        Ok(Self { credentials, url: url(free_port()?), auth_url: url(free_port()?), client_ca: None })
    }

    /// The admission webhook's port.
    pub fn port(&self) -> u16 {
        port_of(&self.url)
    }

    /// The auth API's port.
    pub fn auth_port(&self) -> u16 {
        port_of(&self.auth_url)
    }

    /// The CA that signed the serving certificate.
    pub fn ca(&self) -> PathBuf {
        self.credentials.join("ca.crt")
    }

    /// `berth run` settings for the webhook, approvals and the auth API.
    pub fn env(&self) -> Vec<(String, String)> {
        let file = |name: &str| self.credentials.join(name).display().to_string();
        let client_ca =
            self.client_ca.iter().map(|ca| ("BERTH_WEBHOOK_CLIENT_CA_FILE".into(), ca.display().to_string()));
        client_ca
            .chain([
                ("BERTH_WEBHOOK_LISTEN".into(), format!("127.0.0.1:{}", self.port())),
                ("BERTH_AUTH_LISTEN".into(), format!("127.0.0.1:{}", self.auth_port())),
                ("BERTH_WEBHOOK_CERT_FILE".into(), file("tls.crt")),
                ("BERTH_WEBHOOK_KEY_FILE".into(), file("tls.key")),
                ("BERTH_APPROVAL_SIGNING_KEY_FILE".into(), file("approval-signing.pem")),
                ("BERTH_AUTH_HS256_SECRET_FILE".into(), file("auth-hs256.secret")),
                ("BERTH_APPROVAL_REVOCATIONS".into(), self.revocations().display().to_string()),
            ])
            .collect()
    }

    /// The folder of revoked approval token ids Berth reads (one file per id, as a
    /// mounted ConfigMap); absent until a test revokes one.
    pub fn revocations(&self) -> PathBuf {
        self.credentials.join("revoked")
    }

    /// Revokes the approval token `token_id`, as a platform admin would by adding a key
    /// to the ConfigMap berth-approval-revocations.
    pub fn revoke(&self, token_id: &str) -> Result<()> {
        let folder = self.revocations();
        std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
        std::fs::write(folder.join(token_id), "revoked by the e2e").context("writing the revocation")
    }
}

/// The approval token in what `berth approve -o yaml` printed.
pub fn approval_token(approved: &str) -> Option<&str> {
    approved.lines().find_map(|l| l.trim().strip_prefix("token: ")).map(|t| t.trim().trim_matches(['"', '\'']))
}

/// A field of an approval token's header (`part` 0) or claims (`part` 1), read without
/// verifying anything: what a test needs to name the key or the token id.
pub fn token_field(token: &str, part: usize, field: &str) -> Option<String> {
    use base64::Engine;
    let encoded = token.split('.').nth(part)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    json.get(field)?.as_str().map(str::to_owned)
}

/// A loopback port nothing listens on now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).context("free port")?.port())
}

/// The port of one of [`WebhookSetup`]'s URLs (which always name one).
fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(443)
}

fn berth(args: &[&str]) -> Result<String> {
    let out = Command::new(berth_binary()?).args(args).output().context("running berth")?;
    if !out.status.success() {
        bail!("berth {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8(out.stdout).context("berth printed non-UTF-8")
}

/// Starts `berth run` with its webhook in `dir` and registers the webhook with the
/// cluster; returns once the apiserver gets answers from it.
pub async fn start_operator(cluster: &Cluster, dir: &Path) -> Result<(Operator, WebhookSetup)> {
    let credentials = dir.join("credentials");
    berth(&["dev-credentials", "--out", &credentials.display().to_string(), "--host", "127.0.0.1"])?;
    // As a hardened cluster would: admission serves the apiserver's certificate alone.
    let setup =
        WebhookSetup { client_ca: Some(cluster.info.webhook_client_ca()), ..WebhookSetup::on_free_ports(credentials)? };
    let operator = Operator::start_with_env(&cluster.info, dir, &dir.join("remote.git"), 200, setup.env())?;
    register(cluster, &setup).await?;
    wait_until_answering(cluster, &operator).await?;
    Ok((operator, setup))
}

/// `berth webhook-config --url … --ca-file … | kubectl apply -f -`.
pub async fn register(cluster: &Cluster, setup: &WebhookSetup) -> Result<()> {
    let yaml = berth(&["webhook-config", "--url", &setup.url, "--ca-file", &setup.ca().display().to_string()])?;
    let out = cluster.kubectl("admin", &["apply", "-f", "-"], Some(&yaml)).await;
    if !out.success {
        bail!("registering the webhook failed: {}", out.stderr);
    }
    Ok(())
}

/// Waits until a server-side dry run of a Tenant gets through the webhook.
pub async fn wait_until_answering(cluster: &Cluster, operator: &Operator) -> Result<()> {
    let probe = "apiVersion: berth.dev/v1alpha1
kind: Tenant
metadata: {name: webhook-probe}
spec:
  owners: [{kind: User, name: admin}]
";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cluster.kubectl("admin", &["apply", "--dry-run=server", "-f", "-"], Some(probe)).await;
        if out.success {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the webhook never answered: {}\noperator log:\n{}", out.stderr, operator.log_text());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `berth token` for a user of the local cluster, written to a file for `berth approve`.
pub fn bearer_token_file(setup: &WebhookSetup, user: &str, groups: &[&str], roles: &[&str]) -> Result<PathBuf> {
    let secret = setup.credentials.join("auth-hs256.secret").display().to_string();
    let mut args = vec!["token", "--secret-file", &secret, "--subject", user];
    for group in groups {
        args.extend(["--group", group]);
    }
    for role in roles {
        args.extend(["--role", role]);
    }
    let token = berth(&args)?;
    let path = setup.credentials.join(format!("{user}.token"));
    std::fs::write(&path, token.trim()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs `berth approve` with `args` as the holder of `token_file`; stdout on success,
/// stderr on failure.
pub fn approve(setup: &WebhookSetup, token_file: &Path, args: &[&str]) -> Result<String, String> {
    approve_reading(setup, None, token_file, args)
}

/// [`approve`] for what `berth approve` reads from the cluster itself (`berth approve
/// rollout`): through `kubeconfig`.
pub fn approve_reading(
    setup: &WebhookSetup,
    kubeconfig: Option<&Path>,
    token_file: &Path,
    args: &[&str],
) -> Result<String, String> {
    run_approve(setup, kubeconfig, &["--token-file", &token_file.display().to_string()], args)
}

/// Runs `berth approve` the default way: as the user of `context` in `kubeconfig`,
/// with no token file (Berth asks the apiserver who that is).
pub fn approve_as(setup: &WebhookSetup, kubeconfig: &Path, context: &str, args: &[&str]) -> Result<String, String> {
    run_approve(setup, Some(kubeconfig), &["--context", context], args)
}

fn run_approve(setup: &WebhookSetup, kubeconfig: Option<&Path>, who: &[&str], args: &[&str]) -> Result<String, String> {
    let binary = berth_binary().map_err(|e| e.to_string())?;
    let mut command = Command::new(binary);
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    let out = command
        .arg("approve")
        .args(["--server", &setup.auth_url, "--ca-file", &setup.ca().display().to_string()])
        .args(who)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
