//! The HTTP surface: admission endpoints for the apiserver and the auth API for
//! people, on one HTTPS listener.
//!
//! - `POST /validate/{resource}` — validating AdmissionReview v1 for Berth's kinds
//! - `POST /mutate/{environmentrequests,rollouts}` — records the creator and spec author
//! - `POST /v1/approvals` — an approver asks Berth to sign an approval
//! - `GET /healthz`

use std::time::Instant;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use k8s_openapi::jiff::Timestamp;
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
};

use super::{
    admission::{self, Checks, Kind},
    approvals,
    state::WebhookState,
};

/// Largest review or approval body accepted. The apiserver caps objects at ~1.5 MiB;
/// an AdmissionReview carries the object twice on UPDATE.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The webhook's routes.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/validate/{resource}", post(validate))
        .route("/mutate/{resource}", post(mutate))
        .route("/v1/approvals", post(approvals::create))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// A review the handler could not read: 400 with a reason, so a broken client (or a
/// fuzzer) gets an answer and nothing else happens.
fn bad_review(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.into()).into_response()
}

/// Parses an AdmissionReview v1 body into its request.
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, String> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| format!("body is not an AdmissionReview: {e}"))?;
    review.try_into().map_err(|_| "AdmissionReview has no request".to_owned())
}

fn review_response(response: AdmissionResponse) -> Response {
    match serde_json::to_vec(&response.into_review()) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the review: {e}")).into_response(),
    }
}

async fn validate(State(state): State<WebhookState>, Path(resource): Path<String>, body: Bytes) -> Response {
    let Some(kind) = Kind::from_plural(&resource) else {
        return (StatusCode::NOT_FOUND, format!("Berth does not admit {resource:?}")).into_response();
    };
    let started = Instant::now();
    let req = match parse_review(&body) {
        Ok(req) => req,
        Err(message) => return bad_review(message),
    };
    let checks = Checks { verifier: state.verifier.as_deref(), now: Timestamp::now() };
    let response = admission::validate(&req, kind, &state.index, &checks);
    if !response.allowed {
        tracing::info!(
            target: "berth::audit",
            kind = kind.plural(),
            operation = ?req.operation,
            object = %format!("{}/{}", req.namespace.as_deref().unwrap_or(""), req.name),
            user = req.user_info.username.as_deref().unwrap_or(""),
            reason = %response.result.message,
            "admission denied"
        );
    }
    if let Some(metrics) = &state.metrics {
        metrics.observe(kind.plural(), &req.operation, response.allowed, started.elapsed());
    }
    review_response(response)
}

async fn mutate(State(state): State<WebhookState>, Path(resource): Path<String>, body: Bytes) -> Response {
    let (kind, label) = match Kind::from_plural(&resource) {
        Some(Kind::EnvironmentRequest) => (Kind::EnvironmentRequest, "environmentrequests-mutate"),
        Some(Kind::Rollout) => (Kind::Rollout, "rollouts-mutate"),
        _ => return (StatusCode::NOT_FOUND, format!("Berth does not mutate {resource:?}")).into_response(),
    };
    let started = Instant::now();
    let req = match parse_review(&body) {
        Ok(req) => req,
        Err(message) => return bad_review(message),
    };
    let response = admission::mutate(&req, kind);
    if let Some(metrics) = &state.metrics {
        metrics.observe(label, &req.operation, response.allowed, started.elapsed());
    }
    review_response(response)
}
