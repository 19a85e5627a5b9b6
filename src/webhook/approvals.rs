//! `POST /v1/approvals`: an approver proves who they are with a bearer token and
//! gets a signed approval for one request's exact spec, or for one stage of a
//! rollout's exact spec (a body with a `stage`). Every decision is written
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
        Approver, Issuer, RequestRef, StageRef,
        digest::rollout_digest,
        digest::spec_digest,
        wire::{ApiError, ApprovalBody, ApprovalGranted, ApprovalRequest, StageApprovalRequest},
    },
    auth::{Caller, Role},
    policy::{
        approval::{ApproverRefusal, may_approve},
        stage_approval,
    },
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
    if let Some(limit) = &state.approval_limit
        && let Err(limited) = limit.check(&caller.subject)
    {
        let message = format!(
            "{} asked for approvals more than {} times in a minute; try again in {}s",
            caller.subject,
            limit.rate(),
            limited.retry_after
        );
        // Once a minute per caller: a flood of refusals must not bury the audit log.
        if limited.audit {
            audit(Some(&caller), "-", false, "RateLimited", &message);
        }
        let mut response = refuse(StatusCode::TOO_MANY_REQUESTS, "RateLimited", message);
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(limited.retry_after));
        return response;
    }
    let asked: ApprovalRequest = match ApprovalBody::parse(&body) {
        Ok(ApprovalBody::Request(asked)) => asked,
        Ok(ApprovalBody::Stage(asked)) => return approve_stage(&state, issuer, &caller, &asked, now),
        Err(message) => {
            audit(Some(&caller), "-", false, "BadRequest", &message);
            return refuse(StatusCode::BAD_REQUEST, "BadRequest", message);
        }
    };
    let target = format!("{}/{}", asked.namespace, asked.name);
    let refused = |status, reason: &str, message: String| {
        audit(Some(&caller), &target, false, reason, &message);
        refuse(status, reason, message)
    };
    if let Err(message) = approver_role(&caller) {
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

/// Approving anything needs the approver (or admin) role of the auth API.
fn approver_role(caller: &Caller) -> Result<(), String> {
    if caller.has_role(Role::Approver) {
        return Ok(());
    }
    Err(format!(
        "{} has roles {:?}; approving needs the approver (or admin) role",
        caller.subject,
        caller.roles.iter().map(ToString::to_string).collect::<Vec<_>>()
    ))
}

/// A rollout stage's approval: the stage's approvers (its classes' as the plan in
/// status has them once the rollout started, else as best known), four eyes against
/// the rollout's recorded authors when it exists, and break-glass only for class
/// approvers ([`stage_approval`] holds each rule).
fn approve_stage(
    state: &WebhookState,
    issuer: &Issuer,
    caller: &Caller,
    asked: &StageApprovalRequest,
    now: Timestamp,
) -> Response {
    let target = format!("{}/{} stage {}", asked.namespace, asked.name, asked.stage);
    let refused = |status, reason: &str, message: String| {
        audit(Some(caller), &target, false, reason, &message);
        refuse(status, reason, message)
    };
    if let Err(message) = approver_role(caller) {
        return refused(StatusCode::FORBIDDEN, "NotAnApprover", message);
    }
    // A stage approval is bound to the rollout's UID (a namesake re-created later must
    // not reuse it), so the rollout must exist; judged on its spec as asked, with what
    // the cluster recorded about it (authors, status).
    let Some(existing) = state.index.rollout(&asked.namespace, &asked.name) else {
        let message = format!(
            "rollout {}/{} does not exist (or Berth has not seen it yet): create it first, then approve its stage; an approval is bound to the rollout it approves",
            asked.namespace, asked.name
        );
        return refused(StatusCode::NOT_FOUND, "RolloutNotFound", message);
    };
    let Some(uid) = existing.metadata.uid.clone() else {
        let message = format!("rollout {}/{} has no UID yet; try again in a moment", asked.namespace, asked.name);
        return refused(StatusCode::CONFLICT, "RolloutHasNoUid", message);
    };
    let mut rollout = crate::api::Rollout::new(&asked.name, asked.spec.clone());
    rollout.metadata.namespace = Some(asked.namespace.clone());
    rollout.metadata.uid = Some(uid.clone());
    rollout.metadata.annotations = existing.metadata.annotations.clone();
    rollout.status = existing.status.clone();
    if !rollout.spec.stages.iter().any(|s| s.name == asked.stage) {
        let stages: Vec<&str> = rollout.spec.stages.iter().map(|s| s.name.as_str()).collect();
        let message = format!("rollout {} has no stage {:?} (stages: {stages:?})", asked.name, asked.stage);
        return refused(StatusCode::UNPROCESSABLE_ENTITY, "NoSuchStage", message);
    }
    let requests = state.index.requests_in(&asked.namespace);
    let requests: Vec<&crate::api::EnvironmentRequest> = requests.iter().map(AsRef::as_ref).collect();
    let classes = stage_approval::known_stage_classes(&rollout, &requests);
    let approval_classes = stage_approval::approval_classes(&state.index.classes.state());
    let tenants = state.index.tenants.state();
    let owners = || stage_approval::tenant_owners(crate::policy::references::owner_of(&asked.namespace, &tenants));
    let Some(approvers) = stage_approval::approvers_of(&rollout, &asked.stage, &classes, &approval_classes, owners)
    else {
        let message = format!(
            "stage {:?} needs no approval (no class of its environments requires one and it does not set requireApproval); apply the rollout as it is",
            asked.stage
        );
        return refused(StatusCode::UNPROCESSABLE_ENTITY, "ApprovalNotRequired", message);
    };
    let authors = stage_approval::authors(&rollout);
    if let Err(rejection) =
        stage_approval::may_approve(&caller.subject, &caller.groups, &approvers, authors, asked.freeze_override)
    {
        return refused(StatusCode::FORBIDDEN, rejection.reason(), rejection.to_string());
    }
    let approver = Approver { subject: caller.subject.clone(), groups: caller.groups.clone() };
    let stage = StageRef {
        namespace: asked.namespace.clone(),
        name: asked.name.clone(),
        uid,
        stage: asked.stage.clone(),
        freeze_override: asked.freeze_override,
    };
    match issuer.issue_stage(&approver, &stage, &asked.spec, now) {
        Ok(token) => {
            let what =
                if asked.freeze_override { "stage approval issued (freeze override)" } else { "stage approval issued" };
            audit(Some(caller), &target, true, "Approved", what);
            let granted =
                ApprovalGranted { token, approver: caller.subject.clone(), digest: rollout_digest(&asked.spec) };
            (StatusCode::OK, Json(granted)).into_response()
        }
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, "SigningFailed", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::{num::NonZeroU32, sync::Arc, time::Duration};

    use axum::{body::Bytes, extract::State, http::HeaderMap};

    use super::*;
    use crate::{
        auth::{BearerConfig, BearerVerifier, Role, dev_token},
        index::Index,
        webhook::rate_limit::ApprovalRateLimit,
    };

    const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";
    const AUDIENCE: &str = "berth";

    fn state(dir: &std::path::Path, per_minute: u32) -> WebhookState {
        let secret = dir.join("hs256");
        std::fs::write(&secret, SECRET).expect("secret");
        let config = BearerConfig { hs256_secret_file: Some(secret), audience: AUDIENCE.into(), ..Default::default() };
        WebhookState {
            index: Arc::new(Index::with_objects([], [], [])),
            verifier: None,
            issuer: Some(Arc::new(crate::testing::approval_keys().issuer)),
            bearer: Some(Arc::new(BearerVerifier::from_config(&config).expect("a verifier"))),
            metrics: None,
            approval_limit: NonZeroU32::new(per_minute).map(|n| Arc::new(ApprovalRateLimit::per_minute(n))),
        }
    }

    fn as_caller(subject: &str) -> HeaderMap {
        let token = dev_token(
            SECRET,
            subject,
            &["platform-approvers".to_owned()],
            &[Role::Approver],
            AUDIENCE,
            Duration::from_secs(600),
            Timestamp::now(),
        )
        .expect("a token");
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().expect("a header"));
        headers
    }

    /// An approval of a request that does not exist: refused (404), but asked.
    fn ask() -> Bytes {
        Bytes::from_static(br#"{"namespace": "payments", "name": "nowhere"}"#)
    }

    #[tokio::test]
    async fn a_caller_past_the_rate_gets_429_with_retry_after_and_others_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = state(dir.path(), 2);
        for _ in 0..2 {
            let answer = create(State(state.clone()), as_caller("bob"), ask()).await;
            assert_ne!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
        }
        let limited = create(State(state.clone()), as_caller("bob"), ask()).await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = limited
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("a Retry-After in seconds");
        assert!((1..=30).contains(&retry), "{retry}");
        let body = axum::body::to_bytes(limited.into_body(), 4096).await.expect("a body");
        let refusal: ApiError = serde_json::from_slice(&body).expect("an ApiError");
        assert_eq!(refusal.reason, "RateLimited");
        assert!(
            refusal.message.contains("bob asked for approvals more than 2 times in a minute"),
            "{}",
            refusal.message
        );
        // Another caller is not slowed by bob's asks.
        let other = create(State(state.clone()), as_caller("carol"), ask()).await;
        assert_ne!(other.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}
