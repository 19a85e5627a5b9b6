//! Stage approvals: the token's claims and digest, crossed kinds, and who may approve.

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::{
    api::rollout::StageApproval,
    approval::{ApprovalKind, Approver, RequestRef, StageRef},
    testing::{ApprovalKeys, approval_keys},
};

fn now() -> Timestamp {
    "2026-12-01T10:00:00Z".parse().expect("a time")
}

/// checkout-v1-9-0 in payments, created by alice and last changed by carol.
fn rollout() -> Rollout {
    let mut rollout: Rollout = crate::testing::example("rollout-checkout.yaml");
    rollout.metadata.uid = Some("uid-1".into());
    let annotations = rollout.metadata.annotations.get_or_insert_default();
    annotations.insert(labels::CREATED_BY_ANNOTATION.into(), "alice".into());
    annotations.insert(labels::SPEC_AUTHOR_ANNOTATION.into(), "carol".into());
    rollout
}

fn production() -> StageApprovers {
    StageApprovers::Classes(vec![ClassApprovers { class: "production".into(), groups: vec!["platform".into()] }])
}

fn owners() -> TenantOwners {
    TenantOwners { tenant: "payments".into(), users: vec!["olga".into()], groups: vec!["payments-leads".into()] }
}

fn stage_token(keys: &ApprovalKeys, rollout: &Rollout, stage: &str, who: &str, groups: &[&str]) -> String {
    let approver = Approver {
        subject: who.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Default::default()
    };
    let stage = StageRef {
        namespace: rollout.namespace().unwrap_or_default(),
        name: rollout.name_any(),
        uid: rollout.metadata.uid.clone().unwrap_or_default(),
        stage: stage.into(),
        freeze_override: false,
    };
    keys.issuer.issue_stage(&approver, &stage, &rollout.spec, now()).expect("a token")
}

fn with_approval(rollout: &Rollout, stage: &str, token: String) -> Rollout {
    let mut approved = rollout.clone();
    approved.spec.approvals.retain(|a| a.stage != stage);
    approved.spec.approvals.push(StageApproval { stage: stage.into(), token });
    approved
}

fn rejection(result: Result<VerifiedApproval, StageDenial>) -> Rejection {
    match result {
        Err(StageDenial::Rejected { rejection, .. }) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn a_stage_token_carries_its_kind_rollout_uid_stage_and_revision_and_a_request_token_none_of_them() {
    let keys = approval_keys();
    let approver = Approver { subject: "bob".into(), groups: vec!["platform".into()], ..Default::default() };
    let stage = StageRef {
        namespace: "payments".into(),
        name: "checkout-v1-9-0".into(),
        uid: "uid-1".into(),
        stage: "production".into(),
        freeze_override: true,
    };
    let claims = keys.issuer.stage_claims(&approver, &stage, &rollout().spec, now()).expect("claims");
    let json = serde_json::to_value(&claims).expect("json");
    assert_eq!(json["berth.dev/kind"], "Rollout");
    assert_eq!(json["berth.dev/stage"], "production");
    assert_eq!(json["berth.dev/uid"], "uid-1");
    assert_eq!(json["berth.dev/revision"], "v1.9.0");
    assert_eq!(json["berth.dev/freeze-override"], true);
    assert_eq!(json["berth.dev/digest"], crate::approval::digest::rollout_digest(&rollout().spec));

    let request = crate::testing::request("production");
    let target = RequestRef { namespace: "payments".into(), name: "checkout-prod".into(), uid: "uid-r".into() };
    let claims = keys.issuer.claims(&approver, &target, &request.spec, now()).expect("claims");
    let json = serde_json::to_value(&claims).expect("json");
    assert_eq!(json["berth.dev/uid"], "uid-r", "a request approval is bound to its UID too");
    for absent in ["berth.dev/kind", "berth.dev/stage", "berth.dev/revision", "berth.dev/freeze-override"] {
        assert!(json.get(absent).is_none(), "a request token has no {absent}: {json}");
    }
    // Tokens issued before the kind existed read as request approvals.
    let parsed: crate::approval::ApprovalClaims = serde_json::from_value(json).expect("claims");
    assert_eq!(parsed.kind, ApprovalKind::Request);
}

#[test]
fn the_digest_leaves_out_approvals_paused_and_abort_and_covers_everything_that_ships() {
    use crate::approval::digest::rollout_digest;
    let base = rollout().spec;
    let mut controls = base.clone();
    controls.paused = true;
    controls.abort = true;
    controls.approvals.push(StageApproval { stage: "staging".into(), token: "t".into() });
    assert_eq!(rollout_digest(&controls), rollout_digest(&base));
    assert!(!spec_changed(&base, &controls));
    let mut revision = base.clone();
    revision.revision = "v2.0.0".into();
    let mut windows = base.clone();
    windows.freeze_windows.clear();
    let mut batch = base.clone();
    batch.stages[1].batch_size = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1);
    for changed in [revision, windows, batch] {
        assert_ne!(rollout_digest(&changed), rollout_digest(&base));
        assert!(spec_changed(&base, &changed));
    }
}

#[test]
fn a_valid_stage_approval_is_accepted_and_says_who_approved_with_which_key() {
    let keys = approval_keys();
    let rollout = rollout();
    let approved =
        with_approval(&rollout, "production", stage_token(&keys, &rollout, "production", "bob", &["platform"]));
    let verified = check(&approved, "production", &production(), Some(&keys.verifier), now()).expect("valid");
    assert_eq!(verified.approver, "bob");
    assert_eq!(verified.key_id, keys.issuer.kid());
    assert!(!verified.freeze_override);
}

#[test]
fn an_approval_rbac_authorized_for_some_classes_does_not_cover_a_class_the_stage_gained_since() {
    let keys = approval_keys();
    let rollout = rollout();
    let stage = StageRef {
        namespace: "payments".into(),
        name: rollout.name_any(),
        uid: "uid-1".into(),
        stage: "production".into(),
        freeze_override: false,
    };
    let token = |rbac_classes: Option<Vec<String>>| {
        let approver = Approver { subject: "bob".into(), groups: vec!["platform".into()], rbac_classes };
        with_approval(
            &rollout,
            "production",
            keys.issuer.issue_stage(&approver, &stage, &rollout.spec, now()).expect("a token"),
        )
    };
    let mut gained = production();
    if let StageApprovers::Classes(classes) = &mut gained {
        classes.push(ClassApprovers { class: "finance".into(), groups: vec!["platform".into()] });
    }
    // Authorized by RBAC for production alone: good for production, not once finance joins.
    let kubernetes = token(Some(vec!["production".into()]));
    assert!(check(&kubernetes, "production", &production(), Some(&keys.verifier), now()).is_ok());
    let refused = rejection(check(&kubernetes, "production", &gained, Some(&keys.verifier), now()));
    assert_eq!(refused, Rejection::ClassNotAuthorized { approver: "bob".into(), class: "finance".into() });
    assert_eq!(refused.reason(), "ClassNotAuthorized");
    // An owners' stage approved with no class authorized cannot turn into a class stage.
    let owners_only = token(Some(Vec::new()));
    assert_eq!(
        rejection(check(&owners_only, "production", &production(), Some(&keys.verifier), now())).reason(),
        "ClassNotAuthorized"
    );
    // A JWT approver's role is not per class: the groups decide, as before.
    let jwt = token(None);
    assert!(check(&jwt, "production", &gained, Some(&keys.verifier), now()).is_ok());
}

#[test]
fn a_request_token_is_no_stage_approval_and_a_stage_token_is_no_request_approval() {
    let keys = approval_keys();
    let rollout = rollout();
    let mut request = crate::testing::request("production");
    request.metadata.annotations.get_or_insert_default().insert(labels::CREATED_BY_ANNOTATION.into(), "alice".into());
    // A request approval pasted into spec.approvals.
    let request_token = keys.approve(&request, "bob", now());
    let crossed = with_approval(&rollout, "production", request_token);
    let refused = rejection(check(&crossed, "production", &production(), Some(&keys.verifier), now()));
    assert_eq!(refused, Rejection::WrongKind { approved: ApprovalKind::Request, expected: ApprovalKind::Rollout });
    assert!(refused.to_string().starts_with("it approves a request, not a rollout stage;"), "{refused}");
    // A stage approval pasted into a request's spec.approval.
    let stage_token = stage_token(&keys, &rollout, "production", "bob", &[crate::testing::APPROVER_GROUP]);
    request.spec.approval = Some(crate::api::environment_request::Approval { token: stage_token });
    let class = crate::testing::class("production");
    let denial = crate::policy::request::check_approval(&request, &class, Some(&keys.verifier), now(), false)
        .expect_err("a stage approval approves no request");
    assert!(denial.to_string().contains("it approves a rollout stage, not a request"), "{denial}");
}

#[test]
fn a_token_for_another_stage_rollout_or_spec_or_a_forged_or_expired_one_is_refused_by_name() {
    let keys = approval_keys();
    let rollout = rollout();
    let refuse = |rollout: &Rollout, at: Timestamp| {
        rejection(check(rollout, "production", &production(), Some(&keys.verifier), at))
    };
    // Another stage's approval.
    let staging = stage_token(&keys, &rollout, "staging", "bob", &["platform"]);
    let other_stage = with_approval(&rollout, "production", staging);
    assert_eq!(
        refuse(&other_stage, now()),
        Rejection::WrongStage { approved: "staging".into(), target: "production".into() }
    );
    // Another rollout's (name), and a namesake's (uid).
    let mut other = rollout.clone();
    other.metadata.name = Some("checkout-v2".into());
    let foreign = with_approval(&rollout, "production", stage_token(&keys, &other, "production", "bob", &["platform"]));
    assert_eq!(refuse(&foreign, now()).reason(), "WrongRollout");
    let mut namesake = rollout.clone();
    namesake.metadata.uid = Some("uid-0".into());
    let earlier =
        with_approval(&rollout, "production", stage_token(&keys, &namesake, "production", "bob", &["platform"]));
    assert!(refuse(&earlier, now()).to_string().contains("(uid uid-0)"));
    // One bound to no UID (as issued before the rollout existed, by an older Berth).
    let approver = Approver { subject: "bob".into(), groups: vec!["platform".into()], ..Default::default() };
    let target = StageRef {
        namespace: "payments".into(),
        name: rollout.name_any(),
        uid: "uid-1".into(),
        stage: "production".into(),
        freeze_override: false,
    };
    let mut claims = keys.issuer.stage_claims(&approver, &target, &rollout.spec, now()).expect("claims");
    claims.uid = None;
    let unbound = with_approval(&rollout, "production", keys.issuer.sign(&claims).expect("signed"));
    let rejection = refuse(&unbound, now());
    assert_eq!(rejection.reason(), "UnboundRollout");
    assert!(rejection.to_string().contains("issued before the rollout existed"), "{rejection}");
    // And none is issued without one.
    let no_uid = StageRef { uid: String::new(), ..target };
    assert!(keys.issuer.stage_claims(&approver, &no_uid, &rollout.spec, now()).is_err());
    // The spec changed since (a stale digest); pausing it would not have.
    let token = stage_token(&keys, &rollout, "production", "bob", &["platform"]);
    let mut changed = with_approval(&rollout, "production", token.clone());
    changed.spec.stages[1].max_failures = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1);
    assert_eq!(refuse(&changed, now()).reason(), "SpecChanged");
    let mut paused = with_approval(&rollout, "production", token.clone());
    paused.spec.paused = true;
    assert!(check(&paused, "production", &production(), Some(&keys.verifier), now()).is_ok());
    // Expired (an hour's lifetime, 30 s leeway).
    let valid = with_approval(&rollout, "production", token.clone());
    let later = now().checked_add(k8s_openapi::jiff::SignedDuration::from_hours(2)).expect("a time");
    assert_eq!(refuse(&valid, later).reason(), "Expired");
    // Forged: signed by another key, or altered.
    let stranger = approval_keys();
    let forged =
        with_approval(&rollout, "production", stage_token(&stranger, &rollout, "production", "bob", &["platform"]));
    assert_eq!(refuse(&forged, now()).reason(), "UnknownKeyId");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let altered = with_approval(&rollout, "production", parts.join("."));
    assert!(matches!(refuse(&altered, now()).reason(), "BadSignature" | "Malformed"));
}

#[test]
fn a_stage_with_an_approval_class_needs_an_approver_of_every_such_class_whatever_the_rollout_says() {
    let approval_classes: BTreeMap<String, Vec<String>> = [
        ("production".to_owned(), vec!["platform".to_owned()]),
        ("regulated".to_owned(), vec!["compliance".to_owned()]),
    ]
    .into();
    // requireApproval off does not escape the class's rule.
    let approvers = stage_approvers(false, ["production", "staging"], &approval_classes, owners).expect("needed");
    assert_eq!(approvers, production());
    assert_eq!(approvers.describe(), "a member of [\"platform\"] (approvers of class \"production\")");
    // Two classes: a member of one group of each.
    let both = stage_approvers(false, ["regulated", "production"], &approval_classes, owners).expect("needed");
    let rule = both.approvers();
    assert_eq!(rule.refusal("bob", &["platform".into(), "compliance".into()]), None);
    assert_eq!(
        rule.refusal("bob", &["platform".into()]),
        Some(Rejection::NotAnApprover { approver: "bob".into(), groups: vec!["compliance".into()] })
    );
    // No approval class: requireApproval asks the tenant's owners, else nobody.
    assert_eq!(stage_approvers(true, ["staging"], &approval_classes, owners), Some(StageApprovers::Owners(owners())));
    assert_eq!(stage_approvers(false, ["staging"], &approval_classes, owners), None);
}

#[test]
fn without_an_approval_class_an_owner_of_the_tenant_approves_and_only_class_approvers_break_a_freeze() {
    let by_owners = StageApprovers::Owners(owners());
    let rule = by_owners.approvers();
    assert_eq!(rule.refusal("olga", &[]), None);
    assert_eq!(rule.refusal("pete", &["payments-leads".into()]), None);
    assert_eq!(
        rule.refusal("mallory", &["team-payments".into()]),
        Some(Rejection::NotAnOwner { approver: "mallory".into(), tenant: "payments".into() })
    );
    assert_eq!(may_approve("olga", &[], &by_owners, [None, None], false), Ok(()));
    let refused = may_approve("olga", &[], &by_owners, [None, None], true).expect_err("owners break no freeze");
    assert_eq!(refused.reason(), "FreezeOverrideNotAllowed");
    assert_eq!(may_approve("bob", &["platform".into()], &production(), [None, None], true), Ok(()));
    // The tenant's owners, read from its spec.owners.
    let tenant = tenant_owners(Some(&crate::testing::payments()));
    assert_eq!((tenant.tenant.as_str(), tenant.users.as_slice()), ("payments", ["alice".to_owned()].as_slice()));
    assert!(tenant_owners(None).users.is_empty());
}

#[test]
fn neither_the_rollouts_creator_nor_its_spec_author_may_approve_it() {
    let keys = approval_keys();
    let rollout = rollout();
    for author in ["alice", "carol"] {
        let own =
            with_approval(&rollout, "production", stage_token(&keys, &rollout, "production", author, &["platform"]));
        let refused = rejection(check(&own, "production", &production(), Some(&keys.verifier), now()));
        assert_eq!(refused.reason(), "ApproverIsRolloutAuthor", "{author}");
        assert!(refused.to_string().contains("someone else who is a member of [\"platform\"]"), "{refused}");
        assert_eq!(
            may_approve(author, &["platform".into()], &production(), authors(&rollout), false).map_err(|r| r.reason()),
            Err("ApproverIsRolloutAuthor")
        );
    }
    // Not recorded (no mutating webhook): nobody can be checked, so nobody approves.
    let mut unrecorded =
        with_approval(&rollout, "production", stage_token(&keys, &rollout, "production", "bob", &["platform"]));
    unrecorded.metadata.annotations = None;
    assert!(matches!(
        check(&unrecorded, "production", &production(), Some(&keys.verifier), now()),
        Err(StageDenial::CreatorUnknown { .. })
    ));
}

#[test]
fn a_missing_approval_names_who_approves_and_the_exact_command() {
    let denial = check(&rollout(), "production", &production(), None, now()).expect_err("missing");
    assert_eq!(
        denial.to_string(),
        "stage production needs an approval from a member of [\"platform\"] (approvers of class \"production\"): ask them to run `berth approve rollout checkout-v1-9-0 --stage production -n payments` and add the token to spec.approvals"
    );
    assert_eq!(denial.reason(), "AwaitingApproval");
}

#[test]
fn admission_refuses_an_approval_of_a_stage_that_does_not_exist_and_leaves_unchanged_ones_alone() {
    let keys = approval_keys();
    let rollout = rollout();
    let classes = known_stage_classes(&rollout, &[]);
    let approval_classes: BTreeMap<String, Vec<String>> =
        [("production".to_owned(), vec!["platform".to_owned()])].into();
    let check = |new: &Rollout, old: Option<&Rollout>| {
        check_added(new, old, &classes, &approval_classes, &owners(), Some(&keys.verifier), now())
    };
    let nowhere = with_approval(&rollout, "canary", "t".into());
    let refused = check(&nowhere, None).expect_err("no such stage");
    assert!(
        refused.to_string().starts_with("spec.approvals names stage \"canary\", which is not a stage"),
        "{refused}"
    );
    let good = with_approval(&rollout, "production", stage_token(&keys, &rollout, "production", "bob", &["platform"]));
    assert_eq!(check(&good, None), Ok(()));
    let staging = stage_token(&keys, &rollout, "production", "bob", &["platform"]).replace('.', "");
    let broken = with_approval(&rollout, "staging", staging);
    assert!(check(&broken, None).is_err());
    // Admitted before: pausing later does not re-judge it (an expired token is the controller's to report).
    let mut paused = broken.clone();
    paused.spec.paused = true;
    assert_eq!(check(&paused, Some(&broken)), Ok(()));
}
