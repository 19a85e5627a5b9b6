//! `berth token`: a bearer token for the auth API, signed with the local-development
//! HS256 secret.

use std::path::PathBuf;

use clap::Args;

use super::read_file;
use crate::{
    api::GoDuration,
    auth::{Role, dev_token},
};

/// Flags of `berth token`.
#[derive(Args)]
pub struct TokenArgs {
    /// File holding the HS256 secret Berth runs with (`--auth-hs256-secret-file`).
    #[arg(long, env = "BERTH_AUTH_HS256_SECRET_FILE")]
    secret_file: PathBuf,
    /// Who the token speaks for: the same name the cluster knows you by.
    #[arg(long)]
    subject: String,
    /// Groups, e.g. `platform-approvers`.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Roles: viewer, requester, approver, admin.
    #[arg(long = "role")]
    roles: Vec<Role>,
    /// Audience Berth expects (`--auth-audience`).
    #[arg(long, default_value = "berth")]
    audience: String,
    /// How long the token is valid, e.g. `1h`.
    #[arg(long, default_value = "1h")]
    lifetime: GoDuration,
}

/// Prints the token.
pub fn token(args: &TokenArgs) -> Result<(), String> {
    let secret = read_file(&args.secret_file)?;
    let secret = secret.strip_suffix(b"\n").unwrap_or(&secret);
    let lifetime = args.lifetime.parse().map_err(|e| e.to_string())?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let token = dev_token(secret, &args.subject, &args.groups, &args.roles, &args.audience, lifetime, now)
        .map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}
