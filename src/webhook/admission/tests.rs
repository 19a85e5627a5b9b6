//! Admission decisions against an in-memory view: every rule, with the message a
//! person reads at `kubectl apply`.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::core::admission::AdmissionResponse;
use serde_json::{Value, json};

use super::*;
use crate::{
    api::{
        EnvironmentClass,
        environment_request::{Approval, EnvironmentRequestStatus, GitOpsStatus, Phase},
    },
    testing::{ApprovalKeys as Keys, Review, approval_keys as keys, class, payments, request},
    webhook::parse_review,
};

/// The objects admission sees, filled into an [`Index`] for each decision.
#[derive(Clone, Default)]
struct Cluster {
    tenants: Vec<Arc<Tenant>>,
    classes: Vec<Arc<EnvironmentClass>>,
    requests: Vec<Arc<EnvironmentRequest>>,
}

fn owned<K: Clone>(objects: &[Arc<K>]) -> Vec<K> {
    objects.iter().map(|o| o.as_ref().clone()).collect()
}

impl Cluster {
    fn index(&self) -> Index {
        Index::with_objects(owned(&self.tenants), owned(&self.classes), owned(&self.requests))
    }
}

fn cluster() -> Cluster {
    Cluster {
        tenants: vec![Arc::new(payments())],
        classes: ["preview", "staging", "production"].iter().map(|c| Arc::new(class(c))).collect(),
        requests: vec![],
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid")
}

fn approve(keys: &Keys, request: &EnvironmentRequest, approver: &str, at: Timestamp) -> String {
    keys.approve(request, approver, at)
}

/// A rollout as the mutating webhook leaves it when alice created it.
fn by_alice(mut rollout: Rollout) -> Rollout {
    rollout.annotations_mut().insert(labels::CREATED_BY_ANNOTATION.into(), "alice".into());
    rollout.annotations_mut().insert(labels::SPEC_AUTHOR_ANNOTATION.into(), "alice".into());
    rollout
}

/// The request as the mutating webhook leaves it when `creator` created it.
fn with_creator(mut request: EnvironmentRequest, creator: &str) -> EnvironmentRequest {
    request.annotations_mut().insert(labels::CREATED_BY_ANNOTATION.into(), creator.into());
    request.annotations_mut().insert(labels::SPEC_AUTHOR_ANNOTATION.into(), creator.into());
    request
}

/// An AdmissionRequest from alice, as the apiserver sends it (through the same parser).
fn review(
    operation: &str,
    resource: &str,
    object: Option<Value>,
    old: Option<Value>,
) -> AdmissionRequest<DynamicObject> {
    review_as("alice", operation, resource, object, old)
}

fn review_as(
    user: &str,
    operation: &str,
    resource: &str,
    object: Option<Value>,
    old: Option<Value>,
) -> AdmissionRequest<DynamicObject> {
    Review::new(operation, resource, object, old).by(user, &["system:authenticated"]).request()
}

fn value<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("json")
}

fn decide(cluster: &Cluster, keys: Option<&Keys>, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let kind = Kind::from_plural(&req.resource.resource).expect("a Berth resource");
    validate(req, kind, &cluster.index(), &Checks { verifier: keys.map(|k| &k.verifier), now: now() })
}

/// alice creates `request`, recorded as the mutating webhook would.
fn create(cluster: &Cluster, keys: Option<&Keys>, request: &EnvironmentRequest) -> AdmissionResponse {
    create_as("alice", cluster, keys, request)
}

fn create_as(user: &str, cluster: &Cluster, keys: Option<&Keys>, request: &EnvironmentRequest) -> AdmissionResponse {
    let recorded = with_creator(request.clone(), user);
    decide(cluster, keys, &review_as(user, "CREATE", "environmentrequests", Some(value(&recorded)), None))
}

fn denied(response: &AdmissionResponse) -> &str {
    assert!(!response.allowed, "expected a denial");
    &response.result.message
}

#[test]
fn a_preview_request_in_its_tenants_namespace_is_admitted() {
    let response = create(&cluster(), None, &request("preview"));
    assert!(response.allowed, "{}", response.result.message);
}

#[test]
fn repository_urls_follow_the_shared_table_and_denials_hide_the_secret() {
    use crate::api::git_url::{EXAMPLE_SECRET, EXAMPLES, Expected};
    for (url, expected) in EXAMPLES {
        let mut req = request("preview");
        req.spec.app.repo_url = (*url).to_owned();
        let response = create(&cluster(), None, &req);
        match expected {
            Expected::Allowed => assert!(response.allowed, "{url:?}: {}", response.result.message),
            Expected::Refused(why) => {
                assert_eq!(denied(&response), why.repo_url_message(), "{url:?}");
                let sent = serde_json::to_string(&response.into_review()).expect("json");
                assert!(!sent.contains(EXAMPLE_SECRET), "{url:?}: {sent}");
            }
        }
    }
}

#[test]
fn naming_another_tenant_from_this_namespace_is_refused() {
    let mut cluster = cluster();
    let mut other = payments();
    other.metadata.name = Some("search".into());
    other.spec.request_namespace = Some("search".into());
    cluster.tenants.push(Arc::new(other));
    let mut spoofed = request("preview");
    spoofed.spec.tenant = "search".into();
    let message = create(&cluster, None, &spoofed).result.message;
    assert!(message.contains("is not tenant \"search\"'s request namespace"), "{message}");
    assert!(message.contains("\"search\""), "{message}");
}

#[test]
fn a_namespace_two_tenants_claim_serves_neither() {
    let mut cluster = cluster();
    let mut twin = payments();
    twin.metadata.name = Some("payments-twin".into());
    cluster.tenants.push(Arc::new(twin));
    let message = create(&cluster, None, &request("preview")).result.message;
    assert!(message.contains("request namespace of several tenants"), "{message}");
    assert!(message.contains("payments-twin"), "{message}");
}

#[test]
fn a_class_the_tenant_may_not_use_is_refused_with_the_allowed_list() {
    let mut cluster = cluster();
    let mut tenant = payments();
    tenant.spec.allowed_classes = vec!["staging".into()];
    cluster.tenants = vec![Arc::new(tenant)];
    let response = create(&cluster, None, &request("preview"));
    let message = denied(&response);
    assert!(message.contains("may not use class \"preview\"") && message.contains("[\"staging\"]"), "{message}");
}

#[test]
fn a_missing_class_ttl_over_max_and_a_foreign_cluster_are_refused() {
    let mut missing = request("preview");
    missing.spec.class = "gold".into();
    let mut tenant = payments();
    tenant.spec.allowed_classes.push("gold".into());
    let cluster = Cluster { tenants: vec![Arc::new(tenant)], ..cluster() };
    assert!(denied(&create(&cluster, None, &missing)).contains("EnvironmentClass \"gold\" does not exist"));

    let mut long = request("preview");
    long.spec.ttl = Some("400h".parse().expect("duration"));
    assert!(denied(&create(&cluster, None, &long)).contains("ttl 400h is longer than class \"preview\" allows (168h)"));

    let mut elsewhere = request("preview");
    elsewhere.spec.cluster = "prod-eu-west-1".into();
    assert!(denied(&create(&cluster, None, &elsewhere)).contains("does not run on cluster \"prod-eu-west-1\""));
}

fn provisioned(name: &str, class: &str) -> Arc<EnvironmentRequest> {
    let mut existing = request("preview");
    existing.metadata.name = Some(name.into());
    existing.spec.class = class.into();
    existing.status = Some(EnvironmentRequestStatus {
        phase: Some(Phase::Ready),
        gitops: Some(GitOpsStatus { commit: Some("abc".into()), path: None, rendered_digest: None }),
        ..Default::default()
    });
    Arc::new(existing)
}

#[test]
fn a_request_that_would_overrun_the_cost_budget_is_refused_with_the_figures() {
    let mut cluster = cluster();
    // Two staging environments already hold budget; the tenant allows $5000.
    let mut tenant = payments();
    tenant.spec.budget.monthly_cost_usd = Some(100);
    cluster.tenants = vec![Arc::new(tenant)];
    cluster.requests = vec![provisioned("a", "preview"), provisioned("b", "preview")];
    let message = create(&cluster, None, &request("preview")).result.message;
    assert!(message.contains("would spend $120 a month") && message.contains("budget is $100"), "{message}");

    // Room for one more when only one exists; requests of other namespaces do not count.
    let mut elsewhere = provisioned("c", "preview");
    Arc::make_mut(&mut elsewhere).metadata.namespace = Some("search".into());
    cluster.requests = vec![provisioned("a", "preview"), elsewhere];
    assert!(create(&cluster, None, &request("preview")).allowed);
}

#[test]
fn production_is_created_without_an_approval_to_wait_for_one_but_not_changed_without_one() {
    // An approval is bound to the request's UID, which the apiserver assigns at creation:
    // the request is created first and waits (phase AwaitingApproval) for its approval.
    let keys = keys();
    let created = with_creator(request("production"), "alice");
    let response = create(&cluster(), Some(&keys), &created);
    assert!(response.allowed, "{}", response.result.message);
    // A spec change without an approval is refused, naming the approvers and the command.
    let mut changed = created.clone();
    changed.spec.app.revision = "v1.9.0".into();
    let update = review("UPDATE", "environmentrequests", Some(value(&changed)), Some(value(&created)));
    let message = decide(&cluster(), Some(&keys), &update).result.message;
    assert!(message.contains("needs an approval from a member of [\"platform-approvers\"]"), "{message}");
    assert!(message.contains("berth approve"), "{message}");
}

#[test]
fn an_approval_of_a_deleted_namesake_is_refused_when_the_request_is_created_again() {
    let keys = keys();
    let deleted = with_creator(request("production"), "alice");
    let token = approve(&keys, &deleted, "bob", now());
    let mut again = deleted.clone();
    again.metadata.uid = Some("a-new-uid".into());
    again.spec.approval = Some(Approval { token });
    let response = create(&cluster(), Some(&keys), &again);
    let message = denied(&response);
    assert!(message.contains("approvals cannot move between requests"), "{message}");
    assert!(message.contains("(uid uid-production), not payments/checkout-prod (uid a-new-uid)"), "{message}");
}

#[test]
fn production_approved_by_someone_else_in_the_group_is_admitted() {
    let keys = keys();
    let mut prod = with_creator(request("production"), "alice");
    prod.spec.approval = Some(Approval { token: approve(&keys, &prod, "bob", now()) });
    let response = create(&cluster(), Some(&keys), &prod);
    assert!(response.allowed, "{}", response.result.message);
}

#[test]
fn the_creator_cannot_approve_their_own_request() {
    let keys = keys();
    let mut prod = request("production");
    prod.spec.approval = Some(Approval { token: approve(&keys, &prod, "bob", now()) });
    let message = create_as("bob", &cluster(), Some(&keys), &prod).result.message;
    assert!(message.contains("approver \"bob\" created this request"), "{message}");
}

#[test]
fn whoever_rewrites_the_spec_cannot_approve_it_either() {
    // bob created it; alice, an approver too, rewrites its spec and approves that herself.
    let keys = keys();
    let old = with_creator(request("production"), "bob");
    let mut rewritten = old.clone();
    rewritten.spec.app.revision = "alices-branch".into();
    rewritten.annotations_mut().insert(labels::SPEC_AUTHOR_ANNOTATION.into(), "alice".into());
    rewritten.spec.approval = Some(Approval { token: approve(&keys, &rewritten, "alice", now()) });
    let update = review("UPDATE", "environmentrequests", Some(value(&rewritten)), Some(value(&old)));
    let message = decide(&cluster(), Some(&keys), &update).result.message;
    assert!(message.contains("approver \"alice\""), "{message}");

    // The same token, applied by bob (so bob wrote the spec): admitted.
    let mut by_bob = rewritten.clone();
    by_bob.annotations_mut().insert(labels::SPEC_AUTHOR_ANNOTATION.into(), "bob".into());
    let update = review_as("bob", "UPDATE", "environmentrequests", Some(value(&by_bob)), Some(value(&old)));
    let response = decide(&cluster(), Some(&keys), &update);
    assert!(response.allowed, "{}", response.result.message);
}

#[test]
fn author_annotations_not_recorded_by_the_mutating_webhook_are_refused() {
    // A creator written by hand (the mutating webhook did not run): refused.
    let forged = with_creator(request("preview"), "bob");
    let review = review("CREATE", "environmentrequests", Some(value(&forged)), None);
    let message = decide(&cluster(), None, &review).result.message;
    assert!(message.contains("must be recorded by Berth's mutating webhook"), "{message}");
}

#[test]
fn without_configured_keys_no_approval_is_valid() {
    let keys = keys();
    let mut prod = with_creator(request("production"), "alice");
    prod.spec.approval = Some(Approval { token: approve(&keys, &prod, "bob", now()) });
    assert!(denied(&create(&cluster(), None, &prod)).contains("needs an approval"));
}

#[test]
fn changing_the_spec_after_approval_is_refused_but_metadata_changes_are_not() {
    let keys = keys();
    let mut approved = with_creator(request("production"), "alice");
    approved.spec.approval = Some(Approval { token: approve(&keys, &approved, "bob", now()) });
    let cluster = cluster();

    let mut changed = approved.clone();
    changed.spec.app.revision = "v1.9.0".into();
    let update = review("UPDATE", "environmentrequests", Some(value(&changed)), Some(value(&approved)));
    let message = decide(&cluster, Some(&keys), &update).result.message;
    assert!(message.contains("the spec changed after it was approved"), "{message}");

    // A label or finalizer change does not need a fresh approval, even after the token
    // expired; neither does a deletion.
    let mut labelled = approved.clone();
    labelled.labels_mut().insert("team".into(), "checkout".into());
    let update = review("UPDATE", "environmentrequests", Some(value(&labelled)), Some(value(&approved)));
    let later = Checks { verifier: Some(&keys.verifier), now: Timestamp::from_second(1_900_000_000).expect("valid") };
    assert!(validate(&update, Kind::EnvironmentRequest, &cluster.index(), &later).allowed);
}

#[test]
fn an_expired_approval_is_refused_at_creation() {
    let keys = keys();
    let mut prod = with_creator(request("production"), "alice");
    let two_hours_ago = Timestamp::from_second(now().as_second() - 7200).expect("valid");
    prod.spec.approval = Some(Approval { token: approve(&keys, &prod, "bob", two_hours_ago) });
    let message = create(&cluster(), Some(&keys), &prod).result.message;
    assert!(message.contains("expired"), "{message}");
}

#[test]
fn the_creator_is_recorded_from_the_authenticated_user_not_the_object() {
    let mut forged = request("preview");
    forged.annotations_mut().insert(labels::CREATED_BY_ANNOTATION.into(), "bob".into());
    let response =
        mutate(&review("CREATE", "environmentrequests", Some(value(&forged)), None), Kind::EnvironmentRequest);
    let patch: Value = serde_json::from_slice(response.patch.as_deref().expect("a patch")).expect("json");
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/metadata/annotations/berth.dev~1created-by", "value": "alice"},
            {"op": "add", "path": "/metadata/annotations/berth.dev~1spec-author", "value": "alice"},
            {"op": "add", "path": "/metadata/finalizers", "value": ["berth.dev/gitops-cleanup"]}
        ])
    );

    let bare = request("preview");
    let response = mutate(&review("CREATE", "environmentrequests", Some(value(&bare)), None), Kind::EnvironmentRequest);
    let patch: Value = serde_json::from_slice(response.patch.as_deref().expect("a patch")).expect("json");
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/metadata/annotations",
                "value": {"berth.dev/created-by": "alice", "berth.dev/spec-author": "alice"}},
               {"op": "add", "path": "/metadata/finalizers", "value": ["berth.dev/gitops-cleanup"]}])
    );
}

#[test]
fn a_new_request_gets_the_finalizer_once_and_updates_never_put_it_back() {
    use json_patch::Patch;
    let mut created = with_creator(request("preview"), "alice");
    created.annotations_mut().insert(labels::SPEC_AUTHOR_ANNOTATION.into(), "alice".into());
    created.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    let response =
        mutate(&review("CREATE", "environmentrequests", Some(value(&created)), None), Kind::EnvironmentRequest);
    let patch: Patch = serde_json::from_slice(response.patch.as_deref().expect("a patch")).expect("json patch");
    let mut object = value(&created);
    json_patch::patch(&mut object, &patch).expect("the patch applies");
    assert_eq!(object["metadata"]["finalizers"], json!(["example.com/keep", "berth.dev/gitops-cleanup"]));

    // Already there: nothing to add.
    created.metadata.finalizers = Some(vec![labels::FINALIZER.into()]);
    let response =
        mutate(&review("CREATE", "environmentrequests", Some(value(&created)), None), Kind::EnvironmentRequest);
    assert!(response.allowed && response.patch.is_none(), "{:?}", response.patch);

    // The controller removes it after cleaning git; an update must not bring it back.
    let old = created.clone();
    let mut cleaned = created.clone();
    cleaned.metadata.finalizers = None;
    let response = mutate(
        &review("UPDATE", "environmentrequests", Some(value(&cleaned)), Some(value(&old))),
        Kind::EnvironmentRequest,
    );
    assert!(response.allowed && response.patch.is_none(), "{:?}", response.patch);
}

#[test]
fn an_update_keeps_the_recorded_creator() {
    let old = with_creator(request("preview"), "carol");
    let mut new = old.clone();
    new.annotations_mut().insert(labels::CREATED_BY_ANNOTATION.into(), "alice".into());
    let response = mutate(
        &review("UPDATE", "environmentrequests", Some(value(&new)), Some(value(&old))),
        Kind::EnvironmentRequest,
    );
    let patch: Value = serde_json::from_slice(response.patch.as_deref().expect("a patch")).expect("json");
    assert_eq!(patch[0]["value"], json!("carol"));

    // Unchanged: no patch at all.
    let response = mutate(
        &review("UPDATE", "environmentrequests", Some(value(&old)), Some(value(&old))),
        Kind::EnvironmentRequest,
    );
    assert!(response.allowed && response.patch.is_none());

    // A spec change records its author; the creator stays.
    let mut changed = old.clone();
    changed.spec.app.revision = "v2".into();
    let response = mutate(
        &review("UPDATE", "environmentrequests", Some(value(&changed)), Some(value(&old))),
        Kind::EnvironmentRequest,
    );
    let patch: Value = serde_json::from_slice(response.patch.as_deref().expect("a patch")).expect("json");
    assert_eq!(patch, json!([{"op": "add", "path": "/metadata/annotations/berth.dev~1spec-author", "value": "alice"}]));
}

#[test]
fn tenants_cannot_take_a_system_namespace_or_another_tenants() {
    let cluster = cluster();
    let mut system = payments();
    system.metadata.name = Some("ops".into());
    system.spec.request_namespace = Some("kube-system".into());
    let response = decide(&cluster, None, &review("CREATE", "tenants", Some(value(&system)), None));
    assert!(denied(&response).contains("\"kube-system\" is reserved"));

    let mut copycat = payments();
    copycat.metadata.name = Some("payments-2".into());
    let response = decide(&cluster, None, &review("CREATE", "tenants", Some(value(&copycat)), None));
    assert!(denied(&response).contains("already belongs to tenant \"payments\""));

    // Updating the tenant that owns it is fine; an unknown allowed class is a warning.
    let mut updated = payments();
    updated.spec.allowed_classes.push("gold".into());
    let response =
        decide(&cluster, None, &review("UPDATE", "tenants", Some(value(&updated)), Some(value(&payments()))));
    assert!(response.allowed, "{}", response.result.message);
    assert_eq!(response.warnings.map(|w| w.len()), Some(1));
}

#[test]
fn classes_and_tenants_in_use_cannot_be_deleted() {
    let mut cluster = cluster();
    cluster.requests = vec![provisioned("a", "preview")];
    let delete = review("DELETE", "environmentclasses", None, Some(value(&class("preview"))));
    let message = decide(&cluster, None, &delete).result.message;
    assert!(message.contains("EnvironmentClass \"preview\" still has 1 environment(s) (payments/a)"), "{message}");
    let unused = review("DELETE", "environmentclasses", None, Some(value(&class("staging"))));
    assert!(decide(&cluster, None, &unused).allowed);
    let tenant = review("DELETE", "tenants", None, Some(value(&payments())));
    assert!(denied(&decide(&cluster, None, &tenant)).contains("Tenant \"payments\" still has 1"));
}

#[test]
fn rollouts_must_live_in_a_tenant_namespace_and_use_allowed_classes() {
    let cluster = cluster();
    let rollout = by_alice(crate::testing::example("rollout-checkout.yaml"));
    let response = decide(&cluster, None, &review("CREATE", "rollouts", Some(value(&rollout)), None));
    assert!(response.allowed, "{}", response.result.message);

    let mut elsewhere = rollout.clone();
    elsewhere.metadata.namespace = Some("default".into());
    let response = decide(&cluster, None, &review("CREATE", "rollouts", Some(value(&elsewhere)), None));
    assert!(denied(&response).contains("\"default\" is none"));

    let mut gold = rollout;
    gold.spec.stages[0].classes = vec!["gold".into()];
    let response = decide(&cluster, None, &review("CREATE", "rollouts", Some(value(&gold)), None));
    assert!(denied(&response).contains("promotes to class \"gold\""));
}

#[test]
fn malformed_reviews_are_errors_not_panics() {
    for body in [&b""[..], b"{", b"[]", b"{\"kind\":\"AdmissionReview\"}", b"{\"request\":{\"uid\":1}}", &[0xff, 0xfe]]
    {
        assert!(parse_review(body).is_err(), "{:?}", String::from_utf8_lossy(body));
    }
}

#[test]
fn a_rollout_selecting_another_apps_environments_or_changing_what_it_planned_from_is_refused() {
    let mut cluster = cluster();
    let mut web = provisioned("web-prod", "production").as_ref().clone();
    web.spec.app.name = "web".into();
    web.metadata.labels = Some([("app".to_owned(), "checkout".to_owned())].into());
    cluster.requests = vec![Arc::new(web)];
    let rollout = by_alice(crate::testing::example("rollout-checkout.yaml"));
    let response = decide(&cluster, None, &review("CREATE", "rollouts", Some(value(&rollout)), None));
    let message = denied(&response);
    assert!(
        message.contains("picks 1 EnvironmentRequest(s) that deploy another app than \"checkout\": web-prod (app web)"),
        "{message}"
    );

    // Started (a plan in status): pausing is fine, a new selector is not.
    let mut started = rollout.clone();
    started.status = Some(crate::api::rollout::RolloutStatus {
        plan: Some(crate::api::rollout::PlanSummary::default()),
        ..Default::default()
    });
    let mut paused = started.clone();
    paused.spec.paused = true;
    let update = review("UPDATE", "rollouts", Some(value(&paused)), Some(value(&started)));
    let response = decide(&cluster, None, &update);
    assert!(response.allowed, "{}", response.result.message);
    let mut widened = started.clone();
    widened.spec.selector.match_labels = Some([("team".to_owned(), "payments".to_owned())].into());
    let update = review("UPDATE", "rollouts", Some(value(&widened)), Some(value(&started)));
    assert!(denied(&decide(&cluster, None, &update)).contains("spec.selector cannot change; create a new Rollout"));
}

#[test]
fn a_cluster_freeze_berth_cannot_read_is_refused_naming_the_field() {
    let cluster = cluster();
    let window = |zone: &str| {
        serde_json::from_value(serde_json::json!({"schedule": "0 17 * * 5", "duration": "64h", "timeZone": zone}))
            .expect("a window")
    };
    let good = crate::api::Freeze::new("weekends", crate::api::FreezeSpec { windows: vec![window("Europe/Berlin")] });
    let response = decide(&cluster, None, &review("CREATE", "freezes", Some(value(&good)), None));
    assert!(response.allowed, "{}", response.result.message);
    let mut typo = good.clone();
    typo.spec.windows.push(window("Europe/Berlln"));
    let response = decide(&cluster, None, &review("UPDATE", "freezes", Some(value(&typo)), Some(value(&good))));
    assert!(
        denied(&response).starts_with("spec.windows[1].timeZone \"Europe/Berlln\" is not an IANA time zone"),
        "{}",
        denied(&response)
    );
}

/// bob's approval of `stage` of `rollout` as it is.
fn approve_stage(keys: &Keys, rollout: &Rollout, stage: &str, approver: &str) -> String {
    let who = crate::approval::Approver {
        subject: approver.into(),
        groups: vec![crate::testing::APPROVER_GROUP.into()],
        ..Default::default()
    };
    let target = crate::approval::StageRef {
        namespace: rollout.namespace().unwrap_or_default(),
        name: rollout.name_any(),
        uid: rollout.metadata.uid.clone().unwrap_or_default(),
        stage: stage.into(),
        freeze_override: false,
    };
    keys.issuer.issue_stage(&who, &target, &rollout.spec, now()).expect("a stage approval")
}

#[test]
fn a_rollout_approval_is_admitted_for_its_stage_and_refused_for_another_a_missing_stage_or_its_creator() {
    let keys = keys();
    let mut rollout = by_alice(crate::testing::example("rollout-checkout.yaml"));
    rollout.metadata.uid = Some("uid-7".into());
    let with = |stage: &str, token: String| {
        let mut approved = rollout.clone();
        approved.spec.approvals = vec![crate::api::rollout::StageApproval { stage: stage.into(), token }];
        review("UPDATE", "rollouts", Some(value(&approved)), Some(value(&rollout)))
    };
    let token = approve_stage(&keys, &rollout, "production", "bob");
    let admitted = decide(&cluster(), Some(&keys), &with("production", token.clone()));
    assert!(admitted.allowed, "{}", admitted.result.message);
    // Created with it (re-created under the same name, say): the new rollout is
    // another object, which nobody approved yet.
    let mut recreated = rollout.clone();
    recreated.metadata.uid = None;
    recreated.spec.approvals =
        vec![crate::api::rollout::StageApproval { stage: "production".into(), token: token.clone() }];
    let message =
        denied(&decide(&cluster(), Some(&keys), &review("CREATE", "rollouts", Some(value(&recreated)), None)))
            .to_owned();
    assert!(message.contains("(being created: approve it once it exists)"), "{message}");
    let message = denied(&decide(&cluster(), Some(&keys), &with("staging", token))).to_owned();
    assert!(message.contains("it approves stage \"production\", not stage \"staging\""), "{message}");
    let message = denied(&decide(&cluster(), Some(&keys), &with("canary", "x.y.z".into()))).to_owned();
    assert!(message.contains("names stage \"canary\", which is not a stage of this rollout"), "{message}");
    let own = approve_stage(&keys, &rollout, "production", "alice");
    let message = denied(&decide(&cluster(), Some(&keys), &with("production", own))).to_owned();
    assert!(message.contains("approver \"alice\" created this rollout"), "{message}");
    // A request's approval is no stage's.
    let mut prod = with_creator(request("production"), "alice");
    prod.metadata.namespace = Some("payments".into());
    let message =
        denied(&decide(&cluster(), Some(&keys), &with("production", approve(&keys, &prod, "bob", now())))).to_owned();
    assert!(message.contains("it approves a request, not a rollout stage"), "{message}");
}

#[test]
fn a_rollouts_authors_are_recorded_by_the_mutating_webhook_and_hand_written_ones_refused() {
    let bare: Rollout = crate::testing::example("rollout-checkout.yaml");
    let response = mutate(&review("CREATE", "rollouts", Some(value(&bare)), None), Kind::Rollout);
    let patch: Value = serde_json::from_slice(response.patch.as_deref().expect("a patch")).expect("json");
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/metadata/annotations",
                "value": {"berth.dev/created-by": "alice", "berth.dev/spec-author": "alice"}}])
    );
    // Pausing keeps the spec author; a change to what ships records the new one.
    let old = by_alice(bare.clone());
    let mut paused = old.clone();
    paused.spec.paused = true;
    let response =
        mutate(&review_as("bob", "UPDATE", "rollouts", Some(value(&paused)), Some(value(&old))), Kind::Rollout);
    assert!(response.patch.is_none(), "pausing records nobody");
    let mut changed = old.clone();
    changed.spec.stages[0].batch_size = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2);
    let response =
        mutate(&review_as("bob", "UPDATE", "rollouts", Some(value(&changed)), Some(value(&old))), Kind::Rollout);
    let patch: Value = serde_json::from_slice(response.patch.as_deref().expect("a patch")).expect("json");
    assert_eq!(patch, json!([{"op": "add", "path": "/metadata/annotations/berth.dev~1spec-author", "value": "bob"}]));
    // Written by hand (no mutating webhook ran): refused.
    let mut forged = bare;
    forged.annotations_mut().insert(labels::CREATED_BY_ANNOTATION.into(), "carol".into());
    let message =
        denied(&decide(&cluster(), None, &review("CREATE", "rollouts", Some(value(&forged)), None))).to_owned();
    assert!(message.contains("must be recorded by Berth's mutating webhook"), "{message}");
}
