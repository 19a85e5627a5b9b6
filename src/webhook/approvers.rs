//! Who asks the auth API for an approval, and whether they may approve.
//!
//! - **Who.** The bearer token goes to the apiserver first (TokenReview): the identity
//!   the cluster knows is the default, so an approver is the same username admission
//!   records as a request's creator. A token the apiserver does not accept is then
//!   tried as a JWT of the auth API's own keys (identity providers outside the
//!   cluster), when those are configured.
//! - **May they approve class `C`.** A Kubernetes caller needs RBAC verb `approve` on
//!   `environmentclasses` named `C` (SubjectAccessReview; the `berth-approver`
//!   ClusterRole grants it); a JWT caller needs the auth API's approver (or admin) role.
//!   Either way the class's `approverGroups` and four eyes are checked afterwards, on
//!   top: RBAC says who may approve at all, the class says whose approval it takes.
//! - A rollout stage that needs its tenant's owners (no class of it requires an
//!   approval) is decided by the Tenant's `owners`, which the platform writes; a
//!   Kubernetes caller needs no RBAC verb for it.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use k8s_openapi::jiff::Timestamp;

use super::state::WebhookState;
use crate::{
    approval::wire::ApiError,
    auth::{
        AuthError, BearerVerifier, Caller, Role, bearer_token,
        kubernetes::{TokenVerdict, approve_class, read_rollout},
    },
};

/// Why a caller gets no approval: the answer, its audit reason, and what only the
/// audit log is told (the apiserver's own words, which a caller without a valid token
/// should not learn: whether a token is expired or unknown, Berth's RBAC errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub detail: Option<String>,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, message: String) -> Self {
        Self { status, reason, message, detail: None }
    }

    fn with_detail(mut self, detail: String) -> Self {
        self.detail = Some(detail);
        self
    }

    /// What the audit log records: the detail when there is one.
    pub fn audited(&self) -> &str {
        self.detail.as_deref().unwrap_or(&self.message)
    }

    fn unavailable(reason: &'static str, error: &crate::auth::kubernetes::ReviewError) -> Self {
        let message = format!("Berth cannot ask the apiserver for a {} right now; try again shortly", error.review);
        Self::new(StatusCode::SERVICE_UNAVAILABLE, reason, message).with_detail(error.to_string())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, Json(ApiError { reason: self.reason.to_owned(), message: self.message })).into_response()
    }
}

/// Whether any way of knowing callers is configured.
pub fn configured(state: &WebhookState) -> bool {
    state.kubernetes.is_some() || state.bearer.is_some()
}

/// The caller the `Authorization` header names: the apiserver's answer first, then
/// the auth API's own JWT keys.
pub async fn authenticate(
    state: &WebhookState,
    authorization: Option<&str>,
    now: Timestamp,
) -> Result<Caller, Refusal> {
    let unauthorized = |e: AuthError| Refusal::new(StatusCode::UNAUTHORIZED, e.reason(), e.to_string());
    let token = bearer_token(authorization).map_err(unauthorized)?;
    let mut kubernetes_said = None;
    if let Some(reviewer) = &state.kubernetes {
        match reviewer.authenticate(token).await {
            Ok(TokenVerdict::Authenticated(caller)) => return Ok(caller),
            Ok(TokenVerdict::Rejected(why)) => kubernetes_said = Some(Ok(why)),
            Err(error) => kubernetes_said = Some(Err(error)),
        }
    }
    let jwt_said = match &state.bearer {
        Some(bearer) => Some(authenticate_jwt(bearer, authorization, now).await),
        None => None,
    };
    match (kubernetes_said, jwt_said) {
        (_, Some(Ok(caller))) => Ok(caller),
        // The apiserver could not be asked: say so rather than "not authenticated".
        (Some(Err(error)), _) => Err(Refusal::unavailable("AuthenticationUnavailable", &error)),
        (Some(Ok(why)), Some(Err(jwt))) => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "NotAuthenticated",
            format!("the apiserver did not accept the token, and {jwt}"),
        )
        .with_detail(format!("the apiserver did not accept the token ({why}), and {jwt}"))),
        (Some(Ok(why)), None) => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "NotAuthenticated",
            "the apiserver did not accept the token; send the token your kubeconfig uses".to_owned(),
        )
        .with_detail(format!("the apiserver did not accept the token: {why}"))),
        (None, Some(Err(jwt))) => Err(unauthorized(jwt)),
        (None, None) => Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NotConfigured",
            "approvals are not configured on this Berth (no caller authentication)".to_owned(),
        )),
    }
}

/// A JWT of the auth API's keys; one naming a key Berth does not know yet makes Berth
/// fetch the OIDC issuer's keys again (rate-limited) and look once more: the IdP may
/// have rotated them since the last refresh.
async fn authenticate_jwt(
    bearer: &BearerVerifier,
    authorization: Option<&str>,
    now: Timestamp,
) -> Result<Caller, AuthError> {
    let first = bearer.authenticate(authorization, now);
    let unknown = matches!(first, Err(AuthError::UnknownKey | AuthError::AlgorithmNotAllowed { .. }));
    match bearer.oidc() {
        Some(oidc) if unknown && oidc.refresh_for_unknown_kid().await => bearer.authenticate(authorization, now),
        _ => first,
    }
}

/// Whether `caller` may approve for every class of `classes` (their approver groups and
/// four eyes are checked after this, by the caller of this function).
pub async fn authorize(state: &WebhookState, caller: &Caller, classes: &[String]) -> Result<(), Refusal> {
    if caller.kubernetes.is_none() {
        return approver_role(caller);
    }
    let Some(reviewer) = &state.kubernetes else {
        // Only a reviewer makes Kubernetes callers; without one there are none.
        return Err(Refusal::new(StatusCode::FORBIDDEN, "NotAnApprover", "no RBAC check is configured".to_owned()));
    };
    for class in classes {
        let verdict = reviewer
            .may(caller, approve_class(class))
            .await
            .map_err(|error| Refusal::unavailable("AuthorizationUnavailable", &error))?;
        if !verdict.allowed {
            let why = verdict.reason.map(|reason| format!(" ({reason})")).unwrap_or_default();
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "NotAnApprover",
                format!(
                    "{} may not approve class {class:?}: RBAC grants no verb \"approve\" on environmentclasses.berth.dev/{class}{why}; \
                     an administrator can bind the berth-approver ClusterRole, or a role granting it for this class",
                    caller.subject
                ),
            ));
        }
    }
    Ok(())
}

/// A Kubernetes caller asking about a rollout's stage must be allowed to read the
/// rollout: the answers (it does not exist, its stages, whether a stage needs an
/// approval) would otherwise tell any ServiceAccount about every namespace's rollouts.
/// A JWT caller has passed the approver role already.
pub async fn may_read_rollout(
    state: &WebhookState,
    caller: &Caller,
    namespace: &str,
    name: &str,
) -> Result<(), Refusal> {
    let (Some(reviewer), Some(_)) = (&state.kubernetes, &caller.kubernetes) else {
        return Ok(());
    };
    let verdict = reviewer
        .may(caller, read_rollout(namespace, name))
        .await
        .map_err(|error| Refusal::unavailable("AuthorizationUnavailable", &error))?;
    if verdict.allowed {
        return Ok(());
    }
    Err(Refusal::new(
        StatusCode::FORBIDDEN,
        "NotAnApprover",
        format!("{} may not read rollout {namespace}/{name}, so may not approve it", caller.subject),
    ))
}

/// A JWT caller approves with the auth API's approver (or admin) role.
fn approver_role(caller: &Caller) -> Result<(), Refusal> {
    if caller.has_role(Role::Approver) {
        return Ok(());
    }
    Err(Refusal::new(
        StatusCode::FORBIDDEN,
        "NotAnApprover",
        format!(
            "{} has roles {:?}; approving needs the approver (or admin) role",
            caller.subject,
            caller.roles.iter().map(ToString::to_string).collect::<Vec<_>>()
        ),
    ))
}
