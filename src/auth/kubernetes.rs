//! Callers the cluster already knows. The bearer token `kubectl` sends (an OIDC
//! id-token, a ServiceAccount token, a static token) is authenticated by the apiserver
//! with a **TokenReview**, and what the caller may do is asked with a
//! **SubjectAccessReview**: the pattern of Kubernetes' CSR signers (`approve` on
//! `signers`) and cert-manager's approver policy. Berth keeps no keys for these callers;
//! the apiserver's authenticators and RBAC decide, so an approver's identity is the
//! same username admission records as a request's creator.
//!
//! The token is sent to the apiserver and nowhere else; neither it nor the review that
//! carries it is logged. Approving class `C` needs verb [`APPROVE_VERB`] on
//! `environmentclasses.berth.dev` named `C` (see [`approve_class`]).

use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::{Api, Resource, api::PostParams};

use super::{Caller, KubernetesUser};
use crate::api::EnvironmentClass;

/// The custom RBAC verb that lets a subject approve an EnvironmentClass's requests
/// and rollout stages (grant it on `environmentclasses`, optionally with
/// `resourceNames`).
pub const APPROVE_VERB: &str = "approve";

/// The attributes of "approve requests of class `class`".
pub fn approve_class(class: &str) -> ResourceAttributes {
    ResourceAttributes {
        group: Some(EnvironmentClass::group(&()).into_owned()),
        resource: Some(EnvironmentClass::plural(&()).into_owned()),
        verb: Some(APPROVE_VERB.to_owned()),
        name: Some(class.to_owned()),
        ..Default::default()
    }
}

/// The attributes of "read rollout `namespace/name`".
pub fn read_rollout(namespace: &str, name: &str) -> ResourceAttributes {
    ResourceAttributes {
        group: Some(crate::api::Rollout::group(&()).into_owned()),
        resource: Some(crate::api::Rollout::plural(&()).into_owned()),
        verb: Some("get".to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

/// What the apiserver said about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenVerdict {
    /// It names this caller.
    Authenticated(Caller),
    /// It authenticates nobody; why, in the apiserver's words (never the token).
    Rejected(String),
}

/// What the apiserver said about an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessVerdict {
    pub allowed: bool,
    /// The authorizer's reason or evaluation error, if it gave one.
    pub reason: Option<String>,
}

/// The apiserver could not be asked, or did not answer within [`REVIEW_TIMEOUT`].
/// Carries kube's error text, which never holds the token.
#[derive(Debug, thiserror::Error)]
#[error("cannot ask the apiserver for a {review}: {detail}")]
pub struct ReviewError {
    pub review: &'static str,
    pub detail: String,
}

/// How long one review may take. The operator's client retries an overloaded
/// apiserver (429, 503) for minutes; an approver should hear "try again" instead.
pub const REVIEW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `create` of a review, within [`REVIEW_TIMEOUT`].
async fn create<K>(client: &kube::Client, review: &K, name: &'static str) -> Result<K, ReviewError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let api = Api::<K>::all(client.clone());
    match tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), review)).await {
        Ok(Ok(answered)) => Ok(answered),
        Ok(Err(error)) => Err(ReviewError { review: name, detail: error.to_string() }),
        Err(_) => Err(ReviewError { review: name, detail: format!("no answer within {}s", REVIEW_TIMEOUT.as_secs()) }),
    }
}

/// Asks the apiserver who a token belongs to and what they may do.
#[derive(Clone)]
pub struct KubernetesReviewer {
    client: kube::Client,
}

impl KubernetesReviewer {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// The client it asks with (tests share it with what else calls the apiserver).
    #[cfg(test)]
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A TokenReview of `token` with the apiserver's default audiences (those of the
    /// tokens `kubectl` holds).
    pub async fn authenticate(&self, token: &str) -> Result<TokenVerdict, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_owned()), audiences: None },
            ..Default::default()
        };
        Ok(verdict_of(create(&self.client, &review, "TokenReview").await?))
    }

    /// A SubjectAccessReview: may `caller` do `attributes`? Only for a caller the
    /// apiserver authenticated: anyone else's name and groups are their own say-so
    /// (a JWT could claim `system:masters`), so they are never asked about.
    pub async fn may(&self, caller: &Caller, attributes: ResourceAttributes) -> Result<AccessVerdict, ReviewError> {
        let Some(user) = caller.kubernetes.clone() else {
            return Ok(AccessVerdict { allowed: false, reason: Some("not authenticated by the apiserver".to_owned()) });
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(caller.subject.clone()),
                groups: Some(caller.groups.clone()),
                uid: user.uid,
                extra: (!user.extra.is_empty()).then_some(user.extra),
                resource_attributes: Some(attributes),
                ..Default::default()
            },
            ..Default::default()
        };
        let answered = create(&self.client, &review, "SubjectAccessReview").await?;
        let status = answered.status.unwrap_or_default();
        let reason = status.reason.filter(|r| !r.is_empty()).or(status.evaluation_error.filter(|e| !e.is_empty()));
        Ok(AccessVerdict { allowed: status.allowed && status.denied != Some(true), reason })
    }
}

/// The caller a TokenReview's answer names, if it authenticated one with a username.
fn verdict_of(review: TokenReview) -> TokenVerdict {
    let status = review.status.unwrap_or_default();
    let user = status.user.filter(|_| status.authenticated == Some(true));
    match user {
        Some(user) if user.username.as_deref().is_some_and(|name| !name.is_empty()) => {
            TokenVerdict::Authenticated(Caller {
                subject: user.username.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
                // Kubernetes callers hold no auth-API roles: RBAC answers for them.
                roles: Vec::new(),
                kubernetes: Some(KubernetesUser { uid: user.uid, extra: user.extra.unwrap_or_default() }),
            })
        }
        _ => TokenVerdict::Rejected(
            status.error.filter(|e| !e.is_empty()).unwrap_or_else(|| "the token authenticates no user".to_owned()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use std::collections::BTreeMap;

    use super::*;
    use crate::testing::apiserver::scripted_client;

    fn answered(status: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {}, "status": status})
    }

    #[tokio::test]
    async fn a_token_the_apiserver_accepts_names_the_user_with_groups_uid_and_extra() {
        let (client, mut server) = scripted_client();
        let reviewer = KubernetesReviewer::new(client);
        let asked = tokio::spawn(async move { reviewer.authenticate("s3cret-token").await });
        let call = server
            .expect(
                "POST",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                201,
                answered(json!({"authenticated": true, "user": {
                    "username": "bob", "uid": "u-1", "groups": ["platform-approvers", "system:authenticated"],
                    "extra": {"scopes": ["approve"]}}})),
            )
            .await;
        assert_eq!(call.body["spec"], json!({"token": "s3cret-token"}), "default audiences: none named");
        let TokenVerdict::Authenticated(caller) = asked.await.expect("task").expect("reviewed") else {
            panic!("bob is authenticated")
        };
        assert_eq!(caller.subject, "bob");
        assert_eq!(caller.groups, ["platform-approvers", "system:authenticated"]);
        assert!(caller.roles.is_empty());
        let user = caller.kubernetes.expect("a Kubernetes user");
        assert_eq!(user.uid.as_deref(), Some("u-1"));
        assert_eq!(user.extra["scopes"], ["approve"]);
        server.assert_done();
    }

    #[test]
    fn a_token_the_apiserver_refuses_or_without_a_username_authenticates_nobody() {
        let review = |status| serde_json::from_value::<TokenReview>(answered(status)).expect("a review");
        assert_eq!(
            verdict_of(review(json!({"authenticated": false, "error": "invalid bearer token"}))),
            TokenVerdict::Rejected("invalid bearer token".into())
        );
        let nameless = verdict_of(review(json!({"authenticated": true, "user": {"username": ""}})));
        assert_eq!(nameless, TokenVerdict::Rejected("the token authenticates no user".into()));
        // A user without `authenticated: true` is not taken at its word.
        let unsure = verdict_of(review(json!({"user": {"username": "mallory"}})));
        assert!(matches!(unsure, TokenVerdict::Rejected(_)));
    }

    #[tokio::test]
    async fn an_access_review_asks_for_approve_on_the_named_class_as_the_caller() {
        let (client, mut server) = scripted_client();
        let reviewer = KubernetesReviewer::new(client);
        let caller = Caller {
            subject: "bob".into(),
            groups: vec!["platform-approvers".into()],
            roles: Vec::new(),
            kubernetes: Some(KubernetesUser { uid: Some("u-1".into()), extra: BTreeMap::new() }),
        };
        let asked = tokio::spawn(async move { reviewer.may(&caller, approve_class("production")).await });
        let call = server
            .expect(
                "POST",
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                201,
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {},
                       "status": {"allowed": false, "reason": "no RBAC policy matched"}}),
            )
            .await;
        assert_eq!(
            call.body["spec"],
            json!({"user": "bob", "groups": ["platform-approvers"], "uid": "u-1", "resourceAttributes": {
                "group": "berth.dev", "resource": "environmentclasses", "verb": "approve", "name": "production"}})
        );
        let verdict = asked.await.expect("task").expect("reviewed");
        assert_eq!(verdict, AccessVerdict { allowed: false, reason: Some("no RBAC policy matched".into()) });
    }

    #[tokio::test]
    async fn an_apiserver_that_cannot_answer_is_an_error_that_names_the_review() {
        let (client, mut server) = scripted_client();
        let reviewer = KubernetesReviewer::new(client);
        let asked = tokio::spawn(async move { reviewer.authenticate("s3cret-token").await });
        let refusal = crate::testing::apiserver::ScriptedApiServer::refusal(503, "ServiceUnavailable", "etcd is down");
        server.expect("POST", "/apis/authentication.k8s.io/v1/tokenreviews", 503, refusal).await;
        let error = asked.await.expect("task").expect_err("no answer");
        let message = error.to_string();
        assert!(message.starts_with("cannot ask the apiserver for a TokenReview"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}
