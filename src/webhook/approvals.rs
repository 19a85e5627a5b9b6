//! `POST /v1/approvals`: an approver proves who they are with a bearer token and
//! gets a signed approval for one request's exact spec. Every decision is written
//! to the audit log (target `berth::audit`): who, which request, allowed or not,
//! why — never a token.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use k8s_openapi::jiff::Timestamp;

use super::state::WebhookState;
use crate::{
    approval::{
        Approver, RequestRef,
        digest::spec_digest,
        wire::{ApiError, ApprovalGranted, ApprovalRequest},
    },
    auth::{Caller, Role},
    policy::approval::{ApproverRefusal, may_approve},
};

fn refuse(status: StatusCode, reason: &str, message: String) -> Response {
    (status, Json(ApiError { reason: reason.to_owned(), message })).into_response()
}

/// One audit record per decision.
fn audit(caller: Option<&Caller>, target: &str, allowed: bool, reason: &str, message: &str) {
    tracing::info!(
        target: "berth::audit",
        action = "approve",
        caller = caller.map(|c| c.subject.as_str()).unwrap_or("<unauthenticated>"),
        groups = ?caller.map(|c| c.groups.clone()).unwrap_or_default(),
        request = target,
        allowed,
        reason,
        message,
        "approval decision"
    );
}

/// The handler.
pub async fn create(State(state): State<WebhookState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let (Some(bearer), Some(issuer)) = (&state.bearer, &state.issuer) else {
        let message = "approvals are not configured on this Berth (no signing key or no caller authentication)";
        audit(None, "-", false, "NotConfigured", message);
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "NotConfigured", message.to_owned());
    };
    let now = Timestamp::now();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = match bearer.authenticate(authorization, now) {
        Ok(caller) => caller,
        Err(e) => {
            audit(None, "-", false, e.reason(), &e.to_string());
            return refuse(StatusCode::UNAUTHORIZED, e.reason(), e.to_string());
        }
    };
    let asked: ApprovalRequest = match serde_json::from_slice(&body) {
        Ok(asked) => asked,
        Err(e) => {
            let message = format!("body must be {{namespace, name, spec}} of an EnvironmentRequest: {e}");
            audit(Some(&caller), "-", false, "BadRequest", &message);
            return refuse(StatusCode::BAD_REQUEST, "BadRequest", message);
        }
    };
    let target = format!("{}/{}", asked.namespace, asked.name);
    let refused = |status, reason: &str, message: String| {
        audit(Some(&caller), &target, false, reason, &message);
        refuse(status, reason, message)
    };
    if !caller.has_role(Role::Approver) {
        let message = format!(
            "{} has roles {:?}; approving needs the approver (or admin) role",
            caller.subject,
            caller.roles.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
        return refused(StatusCode::FORBIDDEN, "NotAnApprover", message);
    }
    let Some(class) = state.index.class(&asked.spec.class) else {
        let message = format!("EnvironmentClass {:?} does not exist", asked.spec.class);
        return refused(StatusCode::UNPROCESSABLE_ENTITY, "ClassNotFound", message);
    };
    let existing = state.index.request(&asked.namespace, &asked.name);
    if let Err(refusal) = may_approve(&caller.subject, &caller.groups, &class, &target, existing.as_deref()) {
        let status = match refusal {
            ApproverRefusal::NotRequired { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApproverRefusal::NotInApproverGroups { .. } | ApproverRefusal::SelfApproval { .. } => StatusCode::FORBIDDEN,
        };
        return refused(status, refusal.reason(), refusal.to_string());
    }
    let approver = Approver { subject: caller.subject.clone(), groups: caller.groups.clone() };
    let request = RequestRef { namespace: asked.namespace.clone(), name: asked.name.clone() };
    match issuer.issue(&approver, &request, &asked.spec, now) {
        Ok(token) => {
            audit(Some(&caller), &target, true, "Approved", "approval issued");
            let granted = ApprovalGranted { token, approver: caller.subject.clone(), digest: spec_digest(&asked.spec) };
            (StatusCode::OK, Json(granted)).into_response()
        }
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, "SigningFailed", e.to_string()),
    }
}
