//! The static test users the local apiserver knows, each with a bearer token
//! and groups (`--token-auth-file`), and the kubeconfig that names them.

use std::path::Path;

use anyhow::{Context, Result};
use rand::{Rng, distr::Alphanumeric};
use serde::{Deserialize, Serialize};

use crate::pki::write_private;

/// Who the local control plane knows, and in which groups.
pub const USERS: &[(&str, &[&str])] = &[
    // Cluster admin: installs CRDs, creates tenants.
    ("admin", &["system:masters"]),
    // A developer on the payments team: requests environments.
    ("alice", &["team-payments"]),
    // A platform approver: approves production requests.
    ("bob", &["platform-approvers"]),
];

/// The controller manager's own identity.
const CONTROLLER_MANAGER: (&str, &[&str]) = ("system:kube-controller-manager", &["system:masters"]);

/// A user and the token that authenticates them.
#[derive(Clone, Serialize, Deserialize)]
pub struct TestUser {
    pub name: String,
    pub groups: Vec<String>,
    pub token: String,
}

impl std::fmt::Debug for TestUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestUser")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .field("token", &"[redacted]")
            .finish()
    }
}

fn new_user((name, groups): (&str, &[&str])) -> TestUser {
    let token = rand::rng().sample_iter(&Alphanumeric).take(40).map(char::from).collect();
    TestUser { name: name.to_owned(), groups: groups.iter().map(|g| (*g).to_owned()).collect(), token }
}

/// Fresh tokens for every user in [`USERS`], plus the controller manager's.
pub fn generate() -> (Vec<TestUser>, TestUser) {
    (USERS.iter().copied().map(new_user).collect(), new_user(CONTROLLER_MANAGER))
}

/// Writes the apiserver's static token file: `token,user,uid,"group1,group2"`.
pub fn write_token_file(path: &Path, users: &[&TestUser]) -> Result<()> {
    let lines: Vec<String> =
        users.iter().map(|u| format!("{},{},{},\"{}\"", u.token, u.name, u.name, u.groups.join(","))).collect();
    write_private(path, &(lines.join("\n") + "\n"))
}

/// Writes a kubeconfig with one context per user (named after the user); the
/// first user's context is current.
pub fn write_kubeconfig(path: &Path, server: &str, ca_pem: &str, users: &[&TestUser]) -> Result<()> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let first = users.first().context("a kubeconfig needs at least one user")?;
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "berth-local", "cluster": {
            "server": server,
            "certificate-authority-data": STANDARD.encode(ca_pem.as_bytes()),
        }}],
        "users": users.iter().map(|u| serde_json::json!({ "name": u.name, "user": { "token": u.token } })).collect::<Vec<_>>(),
        "contexts": users.iter().map(|u| serde_json::json!({
            "name": u.name,
            "context": { "cluster": "berth-local", "user": u.name },
        })).collect::<Vec<_>>(),
        "current-context": first.name,
    });
    let yaml = serde_yaml::to_string(&config).context("serializing the kubeconfig")?;
    write_private(path, &yaml)
}
