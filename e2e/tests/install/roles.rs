//! The ClusterRoles `config/roles` installs for people (berth-viewer, berth-edit,
//! berth-requester, berth-platform, berth-admin, berth-approver), checked against
//! what each persona may do with the apiserver's own authorizer: bound as a
//! platform team would bind them, and through Kubernetes' view, edit and admin,
//! which the leaves aggregate into.

use std::time::Duration;

use serde_json::Value;

use crate::{can, cluster, installed, wait_for};

/// A namespace where people are bound to Kubernetes' built-in roles.
const NAMESPACE: &str = "roles-e2e";

async fn admin_apply(yaml: &str) {
    let out = cluster().kubectl("admin", &["apply", "-f", "-"], Some(yaml)).await;
    assert!(out.success, "kubectl apply refused:\n{}\n{yaml}", out.stderr);
}

/// A ClusterRoleBinding of `role` to the user `user`.
fn cluster_binding(role: &str, user: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: roles-e2e-{user}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]
---
"
    )
}

/// A RoleBinding in [`NAMESPACE`] of the ClusterRole `role` to the user `user`.
fn namespace_binding(role: &str, user: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: roles-e2e-{user}, namespace: {NAMESPACE}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]
---
"
    )
}

/// Asserts `user` may do each of `allowed` and none of `refused`. The aggregation
/// controller fills aggregated roles in a moment after they are created, so the
/// first allowed check is waited for.
async fn assert_persona(user: &str, allowed: &[&[&str]], refused: &[&[&str]]) {
    if let Some(first) = allowed.first() {
        let what = format!("{user} to be allowed {first:?} (aggregation)");
        wait_for(Duration::from_secs(30), &what, String::new, || async { can(user, &[], first).await.then_some(()) })
            .await;
    }
    for args in allowed {
        assert!(can(user, &[], args).await, "{user} should be allowed {args:?}");
    }
    for args in refused {
        assert!(!can(user, &[], args).await, "{user} must not be allowed {args:?}");
    }
}

/// What a SubjectAccessReview answers for `user` approving class `class`: exactly
/// the question Berth asks the apiserver before it accepts an approval.
async fn may_approve(user: &str, class: &str) -> bool {
    let review = format!(
        "apiVersion: authorization.k8s.io/v1
kind: SubjectAccessReview
spec:
  user: {user}
  resourceAttributes: {{verb: approve, group: berth.dev, resource: environmentclasses, name: {class}}}
"
    );
    let out = cluster().kubectl("admin", &["create", "-f", "-", "-o", "json"], Some(&review)).await;
    assert!(out.success, "SubjectAccessReview refused: {}", out.stderr);
    let answer: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    answer["status"]["allowed"].as_bool().unwrap_or(false)
}

const APPROVE_PRODUCTION: &[&str] = &["approve", "environmentclasses.berth.dev/production"];
const CREATE_REQUEST: &[&str] = &["create", "environmentrequests.berth.dev", "-n", NAMESPACE];

#[tokio::test]
async fn each_persona_may_do_what_its_role_says_and_nothing_more() {
    installed().await;
    let created = cluster().kubectl("admin", &["create", "namespace", NAMESPACE], None).await;
    assert!(created.success || created.stderr.contains("AlreadyExists"), "{}", created.stderr);
    // A narrower approver, as the README suggests writing: production only.
    let narrow = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: roles-e2e-approve-production}
rules:
  - {apiGroups: [berth.dev], resources: [environmentclasses], resourceNames: [production], verbs: [approve]}
---
";
    let bindings = [
        cluster_binding("berth-viewer", "vic-viewer"),
        cluster_binding("berth-requester", "rita-requester"),
        cluster_binding("berth-approver", "abe-approver"),
        cluster_binding("roles-e2e-approve-production", "pat-prod-approver"),
        cluster_binding("berth-admin", "ada-admin"),
        namespace_binding("view", "nina-view"),
        namespace_binding("edit", "ed-edit"),
        namespace_binding("admin", "al-admin"),
    ];
    admin_apply(&format!("{narrow}{}", bindings.concat())).await;

    // berth-viewer: reads every Berth kind, writes none, approves nothing.
    assert_persona(
        "vic-viewer",
        &[
            &["list", "environmentrequests.berth.dev", "-A"],
            &["get", "rollouts.berth.dev", "-n", NAMESPACE],
            &["watch", "environmentclasses.berth.dev"],
            &["get", "tenants.berth.dev"],
            &["list", "freezes.berth.dev"],
        ],
        &[
            CREATE_REQUEST,
            &["delete", "environmentrequests.berth.dev", "-n", NAMESPACE],
            &["patch", "rollouts.berth.dev", "-n", NAMESPACE],
            &["patch", "environmentrequests.berth.dev", "--subresource=status", "-n", NAMESPACE],
            &["create", "tenants.berth.dev"],
            APPROVE_PRODUCTION,
            &["list", "pods", "-n", NAMESPACE],
        ],
    )
    .await;

    // berth-requester (aggregated: berth-viewer + berth-edit): asks for environments
    // and starts rollouts, reads classes to pick one; cannot approve, cannot set up
    // tenants or classes, never writes status.
    assert_persona(
        "rita-requester",
        &[
            CREATE_REQUEST,
            &["delete", "environmentrequests.berth.dev", "-n", NAMESPACE],
            &["update", "rollouts.berth.dev", "-n", NAMESPACE],
            &["list", "environmentclasses.berth.dev"],
            &["get", "tenants.berth.dev"],
        ],
        &[
            APPROVE_PRODUCTION,
            &["approve", "environmentclasses.berth.dev/preview"],
            &["create", "tenants.berth.dev"],
            &["patch", "environmentclasses.berth.dev"],
            &["patch", "environmentrequests.berth.dev", "--subresource=status", "-n", NAMESPACE],
            &["update", "rollouts.berth.dev", "--subresource=status", "-n", NAMESPACE],
        ],
    )
    .await;
    assert!(!may_approve("rita-requester", "production").await, "a requester approves nothing");

    // berth-approver: approve on every class, and nothing else.
    assert_persona(
        "abe-approver",
        &[APPROVE_PRODUCTION, &["approve", "environmentclasses.berth.dev/staging"]],
        &[CREATE_REQUEST, &["patch", "environmentclasses.berth.dev"], &["list", "environmentrequests.berth.dev", "-A"]],
    )
    .await;
    assert!(may_approve("abe-approver", "production").await, "berth-approver approves production");
    // A role with resourceNames narrows it to the classes it names.
    assert!(may_approve("pat-prod-approver", "production").await);
    assert!(!may_approve("pat-prod-approver", "staging").await, "resourceNames: [production] approves only production");

    // berth-admin (aggregated: requester + platform): everything about Berth's
    // objects, except approving.
    assert_persona(
        "ada-admin",
        &[
            &["create", "tenants.berth.dev"],
            &["update", "environmentclasses.berth.dev"],
            &["delete", "freezes.berth.dev"],
            CREATE_REQUEST,
            &["delete", "rollouts.berth.dev", "-A"],
            &["list", "environmentrequests.berth.dev", "-A"],
        ],
        &[
            APPROVE_PRODUCTION,
            &["patch", "tenants.berth.dev", "--subresource=status"],
            &["patch", "environmentrequests.berth.dev", "--subresource=status", "-A"],
            &["list", "secrets", "-A"],
        ],
    )
    .await;
    assert!(!may_approve("ada-admin", "production").await, "berth-admin does not approve");

    // Kubernetes' own roles, bound in one namespace: view lists requests there,
    // edit creates them, admin too; none reaches another namespace, the
    // cluster-scoped kinds or approving.
    assert_persona(
        "nina-view",
        &[&["list", "environmentrequests.berth.dev", "-n", NAMESPACE], &["get", "rollouts.berth.dev", "-n", NAMESPACE]],
        &[
            CREATE_REQUEST,
            &["list", "environmentrequests.berth.dev", "-n", "default"],
            &["list", "environmentclasses.berth.dev"],
            APPROVE_PRODUCTION,
        ],
    )
    .await;
    assert_persona(
        "ed-edit",
        &[CREATE_REQUEST, &["patch", "rollouts.berth.dev", "-n", NAMESPACE]],
        &[
            &["patch", "environmentrequests.berth.dev", "--subresource=status", "-n", NAMESPACE],
            &["create", "environmentrequests.berth.dev", "-n", "default"],
            APPROVE_PRODUCTION,
        ],
    )
    .await;
    assert_persona(
        "al-admin",
        &[
            &["delete", "environmentrequests.berth.dev", "-n", NAMESPACE],
            &["create", "rollouts.berth.dev", "-n", NAMESPACE],
        ],
        &[&["create", "tenants.berth.dev"], &["patch", "environmentclasses.berth.dev"], APPROVE_PRODUCTION],
    )
    .await;
    assert!(!may_approve("al-admin", "production").await, "a namespace admin does not approve");
}

/// The aggregated roles as the apiserver holds them: filled in from their leaves,
/// with no rule that is not in a leaf; berth-approver in no aggregation.
#[tokio::test]
async fn aggregated_roles_hold_exactly_their_leaves_and_approve_is_in_none_of_the_builtin_roles() {
    installed().await;
    let rules_of = |role: &'static str| async move {
        let out = cluster().kubectl("admin", &["get", "clusterrole", role, "-o", "json"], None).await;
        assert!(out.success, "{role}: {}", out.stderr);
        let role: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
        role["rules"].as_array().cloned().unwrap_or_default()
    };
    let requester = wait_for(Duration::from_secs(30), "berth-requester to be aggregated", String::new, || async {
        let rules = rules_of("berth-requester").await;
        (rules.len() == 2).then_some(rules)
    })
    .await;
    let (viewer, edit) = (rules_of("berth-viewer").await, rules_of("berth-edit").await);
    for rule in viewer.iter().chain(&edit) {
        assert!(requester.contains(rule), "berth-requester lacks {rule}");
    }
    let admin = wait_for(Duration::from_secs(30), "berth-admin to be aggregated", String::new, || async {
        let rules = rules_of("berth-admin").await;
        (rules.len() == 3).then_some(rules)
    })
    .await;
    for rule in requester.iter().chain(&rules_of("berth-platform").await) {
        assert!(admin.contains(rule), "berth-admin lacks {rule}");
    }
    // No built-in role and no aggregated Berth role holds `approve`.
    for role in ["view", "edit", "admin", "berth-requester", "berth-admin"] {
        let rules = rules_of(role).await;
        let approves = rules.iter().any(|r| r["verbs"].as_array().is_some_and(|v| v.iter().any(|v| v == "approve")));
        assert!(!approves, "{role} grants approve: {rules:?}");
    }
}
