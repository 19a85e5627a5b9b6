//! The HTTP surface, as two routers served on two HTTPS listeners, so each can be
//! exposed and policed on its own (the apiserver reaches one, people the other):
//!
//! [`admission_router`], for the apiserver:
//! - `POST /validate/{resource}` — validating AdmissionReview v1 for Berth's kinds
//! - `POST /mutate/{environmentrequests,rollouts}` — records the creator and spec author
//!
//! [`auth_router`], the auth API for people:
//! - `POST /v1/approvals` — an approver asks Berth to sign an approval
//!
//! Both answer `GET /healthz`; neither serves the other's paths (404).

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

/// The admission webhook's routes (`--webhook-listen`).
pub fn admission_router(state: WebhookState) -> Router {
    let routes = Router::new().route("/validate/{resource}", post(validate)).route("/mutate/{resource}", post(mutate));
    finish(routes, state)
}

/// The auth API's routes (`--auth-listen`).
pub fn auth_router(state: WebhookState) -> Router {
    finish(Router::new().route("/v1/approvals", post(approvals::create)), state)
}

/// What both listeners share: `/healthz` and the body limit.
fn finish(routes: Router<WebhookState>, state: WebhookState) -> Router {
    routes
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::{body::Body, http::Request};
    use tower::ServiceExt;

    use super::*;
    use crate::index::Index;

    fn state() -> WebhookState {
        WebhookState {
            index: Arc::new(Index::with_objects([], [], [])),
            verifier: None,
            issuer: None,
            bearer: None,
            kubernetes: None,
            metrics: None,
            approval_limit: None,
            client: None,
        }
    }

    async fn status(router: &Router, method: &str, path: &str) -> StatusCode {
        let request = Request::builder().method(method).uri(path).body(Body::from("{}")).expect("a request");
        router.clone().oneshot(request).await.expect("infallible").status()
    }

    const ADMISSION: [&str; 3] = ["/validate/environmentrequests", "/validate/tenants", "/mutate/rollouts"];

    #[tokio::test]
    async fn each_port_serves_its_own_paths_and_404s_the_others() {
        let (admission, auth) = (admission_router(state()), auth_router(state()));
        for path in ADMISSION {
            // The body is no review: 400, so the route is there.
            assert_eq!(status(&admission, "POST", path).await, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(status(&auth, "POST", path).await, StatusCode::NOT_FOUND, "{path}");
        }
        assert_eq!(status(&admission, "POST", "/v1/approvals").await, StatusCode::NOT_FOUND);
        // Whatever the handler makes of an unauthenticated ask, the route is there.
        assert_ne!(status(&auth, "POST", "/v1/approvals").await, StatusCode::NOT_FOUND);
        for router in [&admission, &auth] {
            assert_eq!(status(router, "GET", "/healthz").await, StatusCode::OK);
        }
    }
}
