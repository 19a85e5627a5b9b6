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

use super::{approvers, state::WebhookState};
use crate::{
    approval::{
        Approver, Issuer, RequestRef, StageRef,
        digest::rollout_digest,
        digest::spec_digest,
        wire::{ApiError, ApprovalBody, ApprovalGranted, ApprovalRequest, StageApprovalRequest},
    },
    auth::Caller,
    policy::{
        approval::{ApproverRefusal, may_approve},
        request::spec_changed,
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
    let Some(issuer) = state.issuer.as_deref().filter(|_| approvers::configured(&state)) else {
        let message = "approvals are not configured on this Berth (no signing key or no caller authentication)";
        audit(None, "-", false, "NotConfigured", message);
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "NotConfigured", message.to_owned());
    };
    let now = Timestamp::now();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = match approvers::authenticate(&state, authorization, now).await {
        Ok(caller) => caller,
        Err(refusal) => {
            audit(None, "-", false, refusal.reason, refusal.audited());
            return refusal.into_response();
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
        Ok(ApprovalBody::Stage(asked)) => return approve_stage(&state, issuer, &caller, &asked, now).await,
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
    // Before the class is looked up: who may not approve it learns nothing about it.
    if let Err(refusal) = approvers::authorize(&state, &caller, std::slice::from_ref(&asked.spec.class)).await {
        audit(Some(&caller), &target, false, refusal.reason, refusal.audited());
        return refusal.into_response();
    }
    let Some(class) = state.index.class(&asked.spec.class) else {
        let message = format!("EnvironmentClass {:?} does not exist", asked.spec.class);
        return refused(StatusCode::UNPROCESSABLE_ENTITY, "ClassNotFound", message);
    };
    // An approval is bound to the request's UID (a namesake re-created later must not
    // reuse it), so the request must exist: created without an approval, it waits in
    // phase AwaitingApproval.
    let existing = state.index.request(&asked.namespace, &asked.name);
    let uid = existing.as_ref().and_then(|request| request.metadata.uid.clone());
    if let Err(refusal) = may_approve(&caller.subject, &caller.groups, &class, &target, existing.as_deref()) {
        let status = match refusal {
            ApproverRefusal::NotRequired { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApproverRefusal::NotInApproverGroups { .. } | ApproverRefusal::SelfApproval { .. } => StatusCode::FORBIDDEN,
        };
        return refused(status, refusal.reason(), refusal.to_string());
    }
    let Some(uid) = uid else {
        let message = format!(
            "request {target} does not exist (or Berth has not seen it yet): create it without spec.approval (it waits for an approval), then approve it; an approval is bound to the request it approves"
        );
        return refused(StatusCode::NOT_FOUND, "RequestNotFound", message);
    };
    let approver = Approver {
        subject: caller.subject.clone(),
        groups: caller.groups.clone(),
        rbac_classes: caller.kubernetes.as_ref().map(|_| vec![asked.spec.class.clone()]),
    };
    let request = RequestRef { namespace: asked.namespace.clone(), name: asked.name.clone(), uid };
    let digest = spec_digest(&asked.spec);
    // Berth adds it to the request when asked: only for the spec the cluster holds (a
    // token for another spec would be refused there), and only with a client to do so.
    let attach = match (asked.apply, &state.client) {
        (false, _) => None,
        (true, None) => {
            let message =
                "this Berth does not add approvals to requests; put the token in spec.approval.token yourself";
            return refused(StatusCode::SERVICE_UNAVAILABLE, "NotConfigured", message.to_owned());
        }
        (true, Some(_)) if existing.as_ref().is_some_and(|e| spec_changed(&e.spec, &asked.spec)) => {
            let message = format!(
                "request {target} in the cluster has another spec than the one sent; approve it as it is (berth approve -n {} {}) to have it added",
                asked.namespace, asked.name
            );
            return refused(StatusCode::CONFLICT, "SpecDiffers", message);
        }
        (true, Some(_)) if existing.as_ref().is_some_and(|e| e.metadata.deletion_timestamp.is_some()) => {
            let message = format!("request {target} is being deleted; there is nothing to add an approval to");
            return refused(StatusCode::CONFLICT, "RequestDeleting", message);
        }
        (true, Some(client)) => Some(Attach { client, namespace: &asked.namespace, name: &asked.name }),
    };
    match issuer.claims(&approver, &request, &asked.spec, now) {
        Ok(claims) => grant(issuer, &claims, &caller, &target, "approval issued", digest, attach).await,
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, "SigningFailed", e.to_string()),
    }
}

/// Where Berth adds a request approval it issued.
struct Attach<'a> {
    client: &'a kube::Client,
    namespace: &'a str,
    name: &'a str,
}

impl Attach<'_> {
    /// Puts `token` into the request's `spec.approval.token` (a merge patch, as Berth).
    /// Admission checks it as any other update: a spec changed meanwhile refuses it.
    async fn apply(&self, token: &str) -> Result<(), String> {
        let api = kube::Api::<crate::api::EnvironmentRequest>::namespaced(self.client.clone(), self.namespace);
        let patch = serde_json::json!({ "spec": { "approval": { "token": token } } });
        let target = format!("{}/{}", self.namespace, self.name);
        match api.patch(self.name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) => {
                Err(format!("the apiserver refused to add the approval to request {target}: {}", status.message))
            }
            Err(other) => Err(format!("cannot add the approval to request {target}: {other}")),
        }
    }
}

/// Signs `claims`, adds the token to its request when asked, and answers with the
/// token and its id (audited with the id, never the token).
async fn grant(
    issuer: &Issuer,
    claims: &crate::approval::ApprovalClaims,
    caller: &Caller,
    target: &str,
    what: &str,
    digest: String,
    attach: Option<Attach<'_>>,
) -> Response {
    let token = match issuer.sign(claims) {
        Ok(token) => token,
        Err(e) => {
            audit(Some(caller), target, false, "SigningFailed", &e.to_string());
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "SigningFailed", e.to_string());
        }
    };
    let token_id = claims.jti.clone();
    let id = token_id.as_deref().unwrap_or("-");
    let applied = attach.is_some();
    if let Some(attach) = attach {
        if let Err(message) = attach.apply(&token).await {
            audit(Some(caller), target, false, "ApplyFailed", &format!("{message} (token id {id})"));
            return refuse(StatusCode::CONFLICT, "ApplyFailed", message);
        }
        audit(Some(caller), target, true, "Approved", &format!("{what} and added to the request (token id {id})"));
    } else {
        audit(Some(caller), target, true, "Approved", &format!("{what} (token id {id})"));
    }
    let granted = ApprovalGranted { token, approver: caller.subject.clone(), digest, token_id, applied };
    (StatusCode::OK, Json(granted)).into_response()
}

/// A rollout stage's approval: the stage's approvers (its classes' as the plan in
/// status has them once the rollout started, else as best known), four eyes against
/// the rollout's recorded authors when it exists, and break-glass only for class
/// approvers ([`stage_approval`] holds each rule).
async fn approve_stage(
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
    // A JWT caller's role is known at once; a Kubernetes caller's RBAC is asked once
    // the stage's classes are (below), and first whether they may read the rollout.
    let early = match caller.kubernetes {
        None => approvers::authorize(state, caller, &[]).await,
        Some(_) => approvers::may_read_rollout(state, caller, &asked.namespace, &asked.name).await,
    };
    if let Err(refusal) = early {
        audit(Some(caller), &target, false, refusal.reason, refusal.audited());
        return refusal.into_response();
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
    if let Err(refusal) = approvers::authorize(state, caller, &approvers.classes()).await {
        audit(Some(caller), &target, false, refusal.reason, refusal.audited());
        return refusal.into_response();
    }
    let authors = stage_approval::authors(&rollout);
    if let Err(rejection) =
        stage_approval::may_approve(&caller.subject, &caller.groups, &approvers, authors, asked.freeze_override)
    {
        return refused(StatusCode::FORBIDDEN, rejection.reason(), rejection.to_string());
    }
    // What RBAC authorized travels with the token: the stage may gain a class later.
    let approver = Approver {
        subject: caller.subject.clone(),
        groups: caller.groups.clone(),
        rbac_classes: caller.kubernetes.as_ref().map(|_| approvers.classes()),
    };
    let stage = StageRef {
        namespace: asked.namespace.clone(),
        name: asked.name.clone(),
        uid,
        stage: asked.stage.clone(),
        freeze_override: asked.freeze_override,
    };
    let what = if asked.freeze_override { "stage approval issued (freeze override)" } else { "stage approval issued" };
    match issuer.stage_claims(&approver, &stage, &asked.spec, now) {
        Ok(claims) => grant(issuer, &claims, caller, &target, what, rollout_digest(&asked.spec), None).await,
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
            kubernetes: None,
            metrics: None,
            approval_limit: NonZeroU32::new(per_minute).map(|n| Arc::new(ApprovalRateLimit::per_minute(n))),
            client: None,
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

    /// Reads a refusal's body.
    async fn refusal_of(answer: Response) -> (StatusCode, ApiError) {
        let status = answer.status();
        let body = axum::body::to_bytes(answer.into_body(), 8192).await.expect("a body");
        (status, serde_json::from_slice(&body).expect("an ApiError"))
    }

    /// A state that knows callers through the scripted apiserver only, with the
    /// production class (approvers: platform-approvers) and its request
    /// payments/checkout-prod (UID `uid-production`) in its index.
    fn kubernetes_state() -> (WebhookState, crate::testing::apiserver::ScriptedApiServer) {
        kubernetes_state_with([crate::testing::request("production")])
    }

    fn kubernetes_state_with(
        requests: impl IntoIterator<Item = crate::api::EnvironmentRequest>,
    ) -> (WebhookState, crate::testing::apiserver::ScriptedApiServer) {
        let (client, server) = crate::testing::apiserver::scripted_client();
        let state = WebhookState {
            index: Arc::new(Index::with_objects([], [crate::testing::class("production")], requests)),
            verifier: None,
            issuer: Some(Arc::new(crate::testing::approval_keys().issuer)),
            bearer: None,
            kubernetes: Some(crate::auth::KubernetesReviewer::new(client)),
            metrics: None,
            approval_limit: None,
            client: None,
        };
        (state, server)
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().expect("a header"));
        headers
    }

    fn production_request() -> Bytes {
        let spec = serde_json::to_value(&crate::testing::request("production").spec).expect("spec");
        Bytes::from(
            serde_json::to_vec(&serde_json::json!({"namespace": "payments", "name": "checkout-prod", "spec": spec}))
                .expect("json"),
        )
    }

    const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
    const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

    fn bob_is_authenticated() -> serde_json::Value {
        serde_json::json!({"status": {"authenticated": true, "user": {"username": "bob", "groups": ["platform-approvers"]}}})
    }

    #[tokio::test]
    async fn a_kubernetes_caller_with_rbac_approve_on_the_class_gets_an_approval_in_their_cluster_name() {
        let (state, mut server) = kubernetes_state();
        let answer = tokio::spawn(create(State(state), bearer("bobs-kube-token"), production_request()));
        let review = server.expect("POST", TOKEN_REVIEWS, 201, bob_is_authenticated()).await;
        assert_eq!(review.body["spec"]["token"], "bobs-kube-token");
        let access = server.expect("POST", ACCESS_REVIEWS, 201, serde_json::json!({"status": {"allowed": true}})).await;
        assert_eq!(access.body["spec"]["user"], "bob");
        assert_eq!(access.body["spec"]["resourceAttributes"]["verb"], "approve");
        assert_eq!(access.body["spec"]["resourceAttributes"]["name"], "production");
        let answer = answer.await.expect("handler");
        assert_eq!(answer.status(), StatusCode::OK);
        let body = axum::body::to_bytes(answer.into_body(), 8192).await.expect("a body");
        let granted: ApprovalGranted = serde_json::from_slice(&body).expect("granted");
        assert_eq!(granted.approver, "bob");
        // Bound to the request as it exists, with an id to revoke it by.
        let claims = granted.token.split('.').nth(1).expect("claims");
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).expect("base64"),
        )
        .expect("json");
        assert_eq!(claims["berth.dev/uid"], "uid-production");
        assert_eq!(claims["jti"].as_str(), granted.token_id.as_deref());
        assert!(granted.token_id.is_some());
        server.assert_done();
    }

    /// bob (RBAC lets him approve) asks for an approval of the production request,
    /// changed by `change`, for Berth to add it (`apply`); the handler, once his
    /// reviews are answered.
    async fn bob_asks_to_apply(
        change: impl FnOnce(&mut serde_json::Value),
    ) -> (tokio::task::JoinHandle<Response>, crate::testing::apiserver::ScriptedApiServer) {
        let (mut state, mut server) = kubernetes_state();
        state.client = Some(state.kubernetes.as_ref().expect("a reviewer").client());
        let mut asked: serde_json::Value = serde_json::from_slice(&production_request()).expect("json");
        asked["apply"] = true.into();
        change(&mut asked);
        let body = Bytes::from(serde_json::to_vec(&asked).expect("json"));
        let answer = tokio::spawn(create(State(state), bearer("bobs-kube-token"), body));
        server.expect("POST", TOKEN_REVIEWS, 201, bob_is_authenticated()).await;
        server.expect("POST", ACCESS_REVIEWS, 201, serde_json::json!({"status": {"allowed": true}})).await;
        (answer, server)
    }

    #[tokio::test]
    async fn asked_to_apply_berth_adds_the_approval_to_the_request_itself() {
        let (answer, mut server) = bob_asks_to_apply(|_| {}).await;
        let patched = server
            .expect(
                "PATCH",
                "/apis/berth.dev/v1alpha1/namespaces/payments/environmentrequests/checkout-prod",
                200,
                serde_json::to_value(crate::testing::request("production")).expect("json"),
            )
            .await;
        let answer = answer.await.expect("handler");
        assert_eq!(answer.status(), StatusCode::OK);
        let body = axum::body::to_bytes(answer.into_body(), 8192).await.expect("a body");
        let granted: ApprovalGranted = serde_json::from_slice(&body).expect("granted");
        assert_eq!(patched.body, serde_json::json!({"spec": {"approval": {"token": granted.token}}}));
        assert!(granted.applied, "the answer says Berth added it");
        server.assert_done();
    }

    #[tokio::test]
    async fn asked_to_apply_an_approval_of_another_spec_than_the_cluster_holds_is_refused() {
        let (answer, mut server) = bob_asks_to_apply(|asked| asked["spec"]["app"]["revision"] = "v9.9.9".into()).await;
        let (status, refusal) = refusal_of(answer.await.expect("handler")).await;
        assert_eq!((status, refusal.reason.as_str()), (StatusCode::CONFLICT, "SpecDiffers"));
        assert!(refusal.message.contains("berth approve -n payments checkout-prod"), "{}", refusal.message);
        server.assert_done();
    }

    #[tokio::test]
    async fn a_request_that_does_not_exist_yet_is_not_approved_and_the_answer_says_to_create_it_first() {
        let (state, mut server) = kubernetes_state_with([]);
        let answer = tokio::spawn(create(State(state), bearer("bobs-kube-token"), production_request()));
        server.expect("POST", TOKEN_REVIEWS, 201, bob_is_authenticated()).await;
        server.expect("POST", ACCESS_REVIEWS, 201, serde_json::json!({"status": {"allowed": true}})).await;
        let (status, refusal) = refusal_of(answer.await.expect("handler")).await;
        assert_eq!((status, refusal.reason.as_str()), (StatusCode::NOT_FOUND, "RequestNotFound"));
        assert_eq!(
            refusal.message,
            "request payments/checkout-prod does not exist (or Berth has not seen it yet): create it without spec.approval (it waits for an approval), then approve it; an approval is bound to the request it approves"
        );
        server.assert_done();
    }

    #[tokio::test]
    async fn a_kubernetes_caller_without_the_rbac_verb_is_refused_before_the_class_is_looked_at() {
        let (state, mut server) = kubernetes_state();
        // A class that does not exist: the refusal must not say so to a non-approver.
        let mut asked: serde_json::Value = serde_json::from_slice(&production_request()).expect("json");
        asked["spec"]["class"] = "secret-class".into();
        let body = Bytes::from(serde_json::to_vec(&asked).expect("json"));
        let answer = tokio::spawn(create(State(state), bearer("bobs-kube-token"), body));
        server.expect("POST", TOKEN_REVIEWS, 201, bob_is_authenticated()).await;
        let denied = serde_json::json!({"status": {"allowed": false, "reason": "no RBAC policy matched"}});
        server.expect("POST", ACCESS_REVIEWS, 201, denied).await;
        let (status, refusal) = refusal_of(answer.await.expect("handler")).await;
        assert_eq!((status, refusal.reason.as_str()), (StatusCode::FORBIDDEN, "NotAnApprover"));
        assert!(
            refusal.message.starts_with(
                "bob may not approve class \"secret-class\": RBAC grants no verb \"approve\" on environmentclasses.berth.dev/secret-class (no RBAC policy matched)"
            ),
            "{}",
            refusal.message
        );
        server.assert_done();
    }

    #[tokio::test]
    async fn a_token_the_apiserver_rejects_is_401_and_an_apiserver_that_cannot_answer_is_503() {
        let (state, mut server) = kubernetes_state();
        let answer = tokio::spawn(create(State(state.clone()), bearer("forged"), production_request()));
        let rejected = serde_json::json!({"status": {"authenticated": false, "error": "invalid bearer token"}});
        server.expect("POST", TOKEN_REVIEWS, 201, rejected).await;
        let (status, refusal) = refusal_of(answer.await.expect("handler")).await;
        assert_eq!((status, refusal.reason.as_str()), (StatusCode::UNAUTHORIZED, "NotAuthenticated"));
        // Whether the token was unknown or expired is the audit log's to know, not the caller's.
        assert_eq!(refusal.message, "the apiserver did not accept the token; send the token your kubeconfig uses");
        assert!(!refusal.message.contains("forged"), "the token is never echoed: {}", refusal.message);

        let answer = tokio::spawn(create(State(state), bearer("any"), production_request()));
        let down = crate::testing::apiserver::ScriptedApiServer::refusal(503, "ServiceUnavailable", "etcd is down");
        server.expect("POST", TOKEN_REVIEWS, 503, down).await;
        let (status, refusal) = refusal_of(answer.await.expect("handler")).await;
        assert_eq!((status, refusal.reason.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "AuthenticationUnavailable"));
        assert_eq!(refusal.message, "Berth cannot ask the apiserver for a TokenReview right now; try again shortly");
        server.assert_done();
    }

    #[tokio::test]
    async fn a_jwt_without_the_approver_role_is_refused_though_the_apiserver_is_asked_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, mut server) = crate::testing::apiserver::scripted_client();
        let state = WebhookState {
            index: Arc::new(Index::with_objects([], [crate::testing::class("production")], [])),
            kubernetes: Some(crate::auth::KubernetesReviewer::new(client)),
            ..state(dir.path(), 0)
        };
        let requester = dev_token(
            SECRET,
            "alice",
            &["platform-approvers".to_owned()],
            &[Role::Requester],
            AUDIENCE,
            Duration::from_secs(600),
            Timestamp::now(),
        )
        .expect("a token");
        let answer = tokio::spawn(create(State(state), bearer(&requester), production_request()));
        server.expect("POST", TOKEN_REVIEWS, 201, serde_json::json!({"status": {"authenticated": false}})).await;
        let (status, refusal) = refusal_of(answer.await.expect("handler")).await;
        assert_eq!((status, refusal.reason.as_str()), (StatusCode::FORBIDDEN, "NotAnApprover"));
        assert!(refusal.message.contains("approving needs the approver (or admin) role"), "{}", refusal.message);
        server.assert_done();
    }

    #[tokio::test]
    async fn a_jwt_of_the_auth_api_s_keys_still_works_when_the_apiserver_does_not_know_the_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, mut server) = crate::testing::apiserver::scripted_client();
        let state = WebhookState {
            index: Arc::new(Index::with_objects(
                [],
                [crate::testing::class("production")],
                [crate::testing::request("production")],
            )),
            kubernetes: Some(crate::auth::KubernetesReviewer::new(client)),
            ..state(dir.path(), 0)
        };
        let answer = tokio::spawn(create(State(state), as_caller("bob"), production_request()));
        let rejected = serde_json::json!({"status": {"authenticated": false}});
        server.expect("POST", TOKEN_REVIEWS, 201, rejected).await;
        // The JWT's approver role stands in for RBAC: no access review is asked.
        let answer = answer.await.expect("handler");
        assert_eq!(answer.status(), StatusCode::OK);
        server.assert_done();
    }

    /// The production stage of `examples/rollout-checkout.yaml`, in an index that
    /// holds it (created by alice) and the production class.
    fn stage_state() -> (WebhookState, crate::testing::apiserver::ScriptedApiServer, Bytes) {
        let (mut state, server) = kubernetes_state();
        let mut rollout: crate::api::Rollout = crate::testing::example("rollout-checkout.yaml");
        rollout.metadata.uid = Some("uid-1".into());
        let annotations = rollout.metadata.annotations.get_or_insert_default();
        annotations.insert(crate::api::labels::CREATED_BY_ANNOTATION.into(), "alice".into());
        let index =
            Index::with_objects([], [crate::testing::class("production"), crate::testing::class("staging")], []);
        index.rollouts.fill([rollout.clone()]);
        state.index = Arc::new(index);
        let body = serde_json::json!({"namespace": "payments", "name": rollout.metadata.name, "stage": "production", "spec": rollout.spec});
        (state, server, Bytes::from(serde_json::to_vec(&body).expect("json")))
    }

    #[tokio::test]
    async fn a_kubernetes_caller_approves_a_stage_once_rbac_lets_them_read_the_rollout_and_approve_its_classes() {
        let (state, mut server, body) = stage_state();
        let answer = tokio::spawn(create(State(state), bearer("bobs-kube-token"), body));
        server.expect("POST", TOKEN_REVIEWS, 201, bob_is_authenticated()).await;
        let read = server.expect("POST", ACCESS_REVIEWS, 201, serde_json::json!({"status": {"allowed": true}})).await;
        let asked = &read.body["spec"]["resourceAttributes"];
        assert_eq!((asked["verb"].as_str(), asked["resource"].as_str()), (Some("get"), Some("rollouts")));
        assert_eq!((asked["namespace"].as_str(), asked["name"].as_str()), (Some("payments"), Some("checkout-v1-9-0")));
        let approve =
            server.expect("POST", ACCESS_REVIEWS, 201, serde_json::json!({"status": {"allowed": true}})).await;
        assert_eq!(approve.body["spec"]["resourceAttributes"]["name"], "production");
        let answer = answer.await.expect("handler");
        assert_eq!(answer.status(), StatusCode::OK);
        let body = axum::body::to_bytes(answer.into_body(), 16384).await.expect("a body");
        let granted: ApprovalGranted = serde_json::from_slice(&body).expect("granted");
        // What RBAC authorized is written into the approval.
        let payload = granted.token.split('.').nth(1).expect("a JWT");
        use base64::Engine;
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url"),
        )
        .expect("claims");
        assert_eq!(claims["berth.dev/rbac-classes"], serde_json::json!(["production"]));
        server.assert_done();
    }

    #[tokio::test]
    async fn a_kubernetes_caller_who_may_not_read_the_rollout_learns_nothing_about_it() {
        let (state, mut server, body) = stage_state();
        let answer = tokio::spawn(create(State(state), bearer("bobs-kube-token"), body));
        server.expect("POST", TOKEN_REVIEWS, 201, bob_is_authenticated()).await;
        server.expect("POST", ACCESS_REVIEWS, 201, serde_json::json!({"status": {"allowed": false}})).await;
        let (status, refusal) = refusal_of(answer.await.expect("handler")).await;
        assert_eq!((status, refusal.reason.as_str()), (StatusCode::FORBIDDEN, "NotAnApprover"));
        assert_eq!(refusal.message, "bob may not read rollout payments/checkout-v1-9-0, so may not approve it");
        // No question about its classes: the stages were never looked at.
        server.assert_done();
    }
}
