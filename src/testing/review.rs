//! AdmissionReviews as the apiserver sends them to Berth's webhook.

use kube::core::{DynamicObject, admission::AdmissionRequest};
use serde_json::{Value, json};

/// An `admission.k8s.io/v1` AdmissionReview of a Berth object, from alice (of
/// `team-payments`) unless [`Review::by`] says otherwise.
#[derive(Clone, Debug)]
pub struct Review {
    uid: String,
    operation: String,
    resource: String,
    object: Option<Value>,
    old: Option<Value>,
    user: String,
    user_uid: Option<String>,
    groups: Vec<String>,
    options: Option<Value>,
}

impl Review {
    /// `operation` (`CREATE`, `UPDATE`, `DELETE`) of `resource` (a Berth plural, e.g.
    /// `environmentrequests`): `object` as it would be stored, `old` as it is.
    /// Name, namespace and kind come from `object`, else `old`.
    pub fn new(operation: &str, resource: &str, object: Option<Value>, old: Option<Value>) -> Self {
        assert!(object.is_some() || old.is_some(), "a review carries an object or an old object");
        Review {
            uid: "705ab4f5-6393-11e8-b7cc-42010a800002".into(),
            operation: operation.into(),
            resource: resource.into(),
            object,
            old,
            user: "alice".into(),
            user_uid: None,
            groups: vec!["team-payments".into(), "system:authenticated".into()],
            options: None,
        }
    }

    /// A CREATE of `object`.
    pub fn create(resource: &str, object: Value) -> Self {
        Self::new("CREATE", resource, Some(object), None)
    }

    /// The review's uid (the response must answer it).
    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = uid.into();
        self
    }

    /// Sent by `user` in `groups`.
    pub fn by(mut self, user: &str, groups: &[&str]) -> Self {
        self.user = user.into();
        self.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        self
    }

    /// The user's uid, as an authenticator that knows one sends it.
    pub fn user_uid(mut self, uid: &str) -> Self {
        self.user_uid = Some(uid.into());
        self
    }

    /// The operation's options (`CreateOptions`, …).
    pub fn options(mut self, options: Value) -> Self {
        self.options = Some(options);
        self
    }

    /// The review as JSON.
    pub fn json(&self) -> Value {
        let source = self.object.as_ref().or(self.old.as_ref()).unwrap_or(&Value::Null);
        let kind = json!({"group": "berth.dev", "version": "v1alpha1", "kind": source["kind"]});
        let resource = json!({"group": "berth.dev", "version": "v1alpha1", "resource": self.resource});
        let mut user_info = json!({"username": self.user, "groups": self.groups});
        if let Some(uid) = &self.user_uid {
            user_info["uid"] = json!(uid);
        }
        let mut request = json!({
            "uid": self.uid,
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": source["metadata"]["name"],
            "namespace": source["metadata"]["namespace"],
            "operation": self.operation,
            "userInfo": user_info,
            "object": self.object,
            "oldObject": self.old,
            "dryRun": false
        });
        if let Some(options) = &self.options {
            request["options"] = options.clone();
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
    }

    /// The review as the body of the apiserver's POST.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.json()).expect("a review encodes")
    }

    /// The review's request as the webhook reads it (through the same parser).
    pub fn request(&self) -> AdmissionRequest<DynamicObject> {
        crate::webhook::parse_review(&self.body()).expect("a valid review")
    }
}
