//! What Berth cannot do it says: a Tenant whose namespace the apiserver will not
//! let it set up reports why in `Ready` and one Warning event, and recovers alone.

use std::time::Duration;

use berth::api::{
    Tenant,
    conditions::{find, types},
};
use berth_e2e::policy::{Refusal, denying_policy};
use k8s_openapi::api::{core::v1::Namespace, events::v1::Event};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};

use crate::*;

/// Holds a deleted namespace in Terminating until the test lets it go.
const HOLD: &str = "e2e.berth.dev/hold";

/// Events (events.k8s.io) about the cluster-scoped `kind`/`name`, oldest first; they
/// live in `default`, where kubectl looks for them.
async fn events_about(kind: &str, name: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(cluster().client("admin").await, "default");
    let mut found: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .map(|list| list.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .collect();
    found.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    found
}

/// The tenant's `Ready` condition as `(status, reason, message)`, once it has one.
async fn ready_of(tenants: &Api<Tenant>, name: &str) -> Option<(String, String, String)> {
    let tenant = tenants.get_opt(name).await.ok().flatten()?;
    let ready = find(&tenant.status?.conditions, types::READY)?.clone();
    Some((ready.status, ready.reason, ready.message))
}

/// Waits until the tenant's `Ready` has `status` and returns `(reason, message)`.
async fn wait_ready_is(name: &str, status: &'static str) -> (String, String) {
    let tenants: Api<Tenant> = Api::all(cluster().client("admin").await);
    let (_, reason, message) = wait_for(Duration::from_secs(60), &format!("Ready={status} on tenant {name}"), || {
        let tenants = tenants.clone();
        async move { ready_of(&tenants, name).await.filter(|(now, _, _)| now == status) }
    })
    .await;
    (reason, message)
}

/// Waits for an event of `type_` (`Warning`, `Normal`) about the tenant.
async fn wait_event(name: &str, type_: &'static str) -> Event {
    wait_for(Duration::from_secs(15), &format!("a {type_} event on tenant {name}"), || async move {
        events_about("Tenant", name).await.into_iter().find(|e| e.type_.as_deref() == Some(type_))
    })
    .await
}

#[tokio::test]
async fn a_tenant_whose_namespace_is_being_deleted_says_so_once_and_recovers_when_it_is_gone() {
    operator().await;
    let admin = cluster().client("admin").await;
    let name = format!("tn-{}", suffix());
    // A namespace someone deleted that is still going away (here held by a finalizer,
    // in life by a slow controller): nothing can be created in it.
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let mut held = Namespace::default();
    held.metadata.name = Some(name.clone());
    held.metadata.finalizers = Some(vec![HOLD.to_owned()]);
    namespaces.create(&PostParams::default(), &held).await.expect("create the namespace");
    namespaces.delete(&name, &DeleteParams::default()).await.expect("delete the namespace");

    kubectl_apply(&tenant_yaml(&name, &["preview"], "{}")).await;
    let (reason, message) = wait_ready_is(&name, "False").await;
    assert_eq!(reason, "NamespaceTerminating");
    assert!(message.contains(&format!("namespace {name} is being deleted")), "{message}");
    assert!(message.contains(&format!("kubectl get namespace {name} -o yaml")), "says what to look at: {message}");

    let warning = wait_event(&name, "Warning").await;
    assert_eq!(warning.reason.as_deref(), Some("NamespaceTerminating"));
    assert_eq!(warning.note.as_deref(), Some(message.as_str()));
    // Berth looks again every 5 s while the namespace goes away; each look finds the
    // same thing and tells nobody again.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let warnings = events_about("Tenant", &name).await.into_iter().filter(|e| e.type_.as_deref() == Some("Warning"));
    assert_eq!(warnings.count(), 1, "one Warning for one failure, not one per retry");

    // Let the namespace go: Berth creates it again, binds the team and says so.
    let release = serde_json::json!({"metadata": {"finalizers": null}});
    namespaces.patch(&name, &PatchParams::default(), &Patch::Merge(&release)).await.expect("release the namespace");
    wait_ready_is(&name, "True").await;
    wait_tenant_members(&name).await;
    let recreated = namespaces.get(&name).await.expect("the namespace is back");
    assert!(recreated.metadata.deletion_timestamp.is_none(), "a new namespace, not the one that was going");
    let told = wait_event(&name, "Normal").await;
    assert_eq!(told.reason.as_deref(), Some("NamespaceReady"));
}

/// A ValidatingAdmissionPolicy (bound to deny) refusing to create the namespace `name`.
fn policy_denying_namespace(name: &str, message: &str) -> String {
    denying_policy(&Refusal {
        name: &format!("e2e-deny-{name}"),
        group: "",
        resource: "namespaces",
        operation: "CREATE",
        expression: &format!("object.metadata.name != '{name}'"),
        message,
        namespace: None,
    })
}

#[tokio::test]
async fn a_tenant_whose_namespace_a_policy_refuses_carries_the_apiservers_words() {
    operator().await;
    let name = format!("tn-{}", suffix());
    let said = format!("namespace {name} is reserved for the payments migration");
    let policy = policy_denying_namespace(&name, &said);
    kubectl_apply(&policy).await;
    // A new policy takes a moment to be enforced: wait until it refuses.
    wait_for(Duration::from_secs(30), "the policy to refuse the namespace", || {
        let name = name.clone();
        async move {
            let out = cluster().kubectl("admin", &["create", "namespace", &name, "--dry-run=server"], None).await;
            (!out.success).then_some(())
        }
    })
    .await;

    kubectl_apply(&tenant_yaml(&name, &["preview"], "{}")).await;
    let (reason, message) = wait_ready_is(&name, "False").await;
    assert_eq!(reason, "NamespaceFailed");
    assert!(message.starts_with(&format!("cannot create or update namespace {name}: ")), "{message}");
    assert!(message.contains(&said), "the apiserver's own words: {message}");
    let warning = wait_event(&name, "Warning").await;
    assert_eq!(warning.reason.as_deref(), Some("NamespaceFailed"));

    let cleanup = cluster().kubectl("admin", &["delete", "-f", "-"], Some(&policy)).await;
    assert!(cleanup.success, "{}", cleanup.stderr);
    let gone = cluster().kubectl("admin", &["delete", "tenant", &name], None).await;
    assert!(gone.success, "{}", gone.stderr);
}

#[tokio::test]
async fn a_second_tenant_claiming_a_namespace_leaves_it_to_the_first_and_says_so() {
    // This suite runs without Berth's webhook, which would refuse the second tenant.
    operator().await;
    let name = format!("tn-{}", suffix());
    kubectl_apply(&tenant_yaml(&name, &["preview"], "{}")).await;
    wait_tenant_members(&name).await;
    let copycat = format!("{name}-2");
    let yaml = tenant_yaml(&copycat, &["preview"], "{}")
        .replace(&format!("requestNamespace: {copycat}"), &format!("requestNamespace: {name}"));
    kubectl_apply(&yaml).await;

    let tenants: Api<Tenant> = Api::all(cluster().client("admin").await);
    let (reason, message) = wait_ready_is(&copycat, "False").await;
    assert_eq!(reason, "NamespaceContested");
    assert!(message.contains(&format!("already the request namespace of tenant {name}")), "{message}");
    let warning = wait_event(&copycat, "Warning").await;
    assert_eq!(warning.reason.as_deref(), Some("NamespaceContested"));

    // The namespace and its roles stay the first tenant's: nothing relabels them.
    let namespace = Api::<Namespace>::all(cluster().client("admin").await).get(&name).await.expect("namespace");
    assert_eq!(namespace.metadata.labels.unwrap_or_default().get("berth.dev/tenant"), Some(&name));
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(cluster().client("admin").await, &name);
    let role = roles.get("berth-manager").await.expect("the first tenant's role");
    let owners: Vec<String> = role.metadata.owner_references.unwrap_or_default().into_iter().map(|o| o.name).collect();
    assert_eq!(owners, vec![name.clone()]);
    let first = ready_of(&tenants, &name).await.expect("the first tenant's Ready");
    assert_eq!((first.0.as_str(), first.1.as_str()), ("True", "NamespaceReady"));
}
