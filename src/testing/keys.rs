//! Approval keys for tests: a fresh Ed25519 key per call, so no fixed token is valid.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::{
    api::EnvironmentRequest,
    approval::{Approver, Issuer, RequestRef, SigningKey, Verifier, generate_ed25519},
};

/// The approval tokens' issuer (`iss`).
pub const ISSUER: &str = "berth";
/// The approval tokens' audience (`aud`).
pub const AUDIENCE: &str = "berth.dev/approvals";
/// The approver group of `examples/environmentclass-production.yaml`.
pub const APPROVER_GROUP: &str = "platform-approvers";

/// An approval issuer and the verifier that accepts its tokens.
pub struct ApprovalKeys {
    pub issuer: Issuer,
    pub verifier: Verifier,
    /// The key's public half, SPKI PEM.
    pub public_pem: String,
}

/// A new Ed25519 approval key; its tokens live an hour.
pub fn approval_keys() -> ApprovalKeys {
    let (private, public_pem) = generate_ed25519().expect("an Ed25519 key");
    let signing = SigningKey::from_pem(private.as_bytes()).expect("the signing key");
    let issuer = Issuer::new(signing, ISSUER.into(), AUDIENCE.into(), Duration::from_secs(3600));
    let verifier = issuer.verifier();
    ApprovalKeys { issuer, verifier, public_pem }
}

impl ApprovalKeys {
    /// `approver`'s approval (as a member of [`APPROVER_GROUP`]) of `request` with its
    /// current spec, issued at `at`.
    pub fn approve(&self, request: &EnvironmentRequest, approver: &str, at: Timestamp) -> String {
        let approver = Approver { subject: approver.into(), groups: vec![APPROVER_GROUP.into()], ..Default::default() };
        let target = RequestRef {
            namespace: request.namespace().unwrap_or_default(),
            name: request.name_any(),
            uid: request.metadata.uid.clone().expect("a request approved in a test has a UID"),
        };
        self.issuer.issue(&approver, &target, &request.spec, at).expect("an approval")
    }
}
