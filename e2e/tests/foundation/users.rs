//! The control plane's test users are real: the apiserver authenticates them with
//! their groups and RBAC decides what they may do. kube-controller-manager runs,
//! so namespaces really delete.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

use crate::cluster;

#[tokio::test]
async fn users_authenticate_with_their_groups() {
    let cluster = cluster();
    for (user, group) in [("admin", "system:masters"), ("alice", "team-payments"), ("bob", "platform-approvers")] {
        let whoami = cluster.kubectl(user, &["auth", "whoami", "-o", "jsonpath={.status.userInfo}"], None).await;
        assert!(whoami.success, "{user}: {}", whoami.stderr);
        let info: serde_json::Value = serde_json::from_str(&whoami.stdout).unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(info["username"], user);
        let groups = info["groups"].as_array().cloned().unwrap_or_default();
        assert!(groups.iter().any(|g| g == group), "{user} lacks group {group}: {groups:?}");
    }
}

#[tokio::test]
async fn rbac_denies_alice_what_admin_may_do_until_her_group_is_bound() {
    let cluster = cluster();
    cluster.install_crds().await;
    let namespace = cluster.namespace("rbac").await;
    let request = format!(
        "apiVersion: berth.dev/v1alpha1
kind: EnvironmentRequest
metadata: {{name: by-alice, namespace: {namespace}}}
spec:
  tenant: payments
  class: preview
  app: {{name: web, repoURL: https://git.example.com/web.git}}
"
    );

    let denied = cluster.kubectl("alice", &["create", "-f", "-"], Some(&request)).await;
    assert!(!denied.success, "alice created a request without any binding");
    assert!(
        denied.stderr.contains("forbidden") && denied.stderr.contains("User \"alice\""),
        "expected an RBAC denial for alice: {}",
        denied.stderr
    );
    let cannot = cluster.kubectl("alice", &["auth", "can-i", "create", "environmentclasses.berth.dev"], None).await;
    assert_eq!(cannot.stdout.trim(), "no");
    let admin_can = cluster.kubectl("admin", &["auth", "can-i", "create", "environmentclasses.berth.dev"], None).await;
    assert_eq!(admin_can.stdout.trim(), "yes");

    // Bind alice's *group* (not her user) and the same request goes through.
    let binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: requester, namespace: {namespace}}}
rules:
  - apiGroups: [berth.dev]
    resources: [environmentrequests]
    verbs: [create, get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: team-payments-requesters, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: requester}}
subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: team-payments}}
"
    );
    let bound = cluster.kubectl("admin", &["create", "-f", "-"], Some(&binding)).await;
    assert!(bound.success, "{}", bound.stderr);
    let allowed = cluster.kubectl("alice", &["create", "-f", "-"], Some(&request)).await;
    assert!(allowed.success, "alice's group binding did not let her create: {}", allowed.stderr);
    // bob is in another group: still denied.
    let bob = cluster.kubectl("bob", &["get", "environmentrequests", "-n", &namespace], None).await;
    assert!(!bob.success && bob.stderr.contains("forbidden"), "bob should be denied: {}", bob.stdout);
}

#[tokio::test]
async fn deleted_namespaces_disappear_because_the_controller_manager_runs() {
    let cluster = cluster();
    let namespace = cluster.namespace("deleted").await;
    let filled = cluster
        .kubectl("admin", &["create", "configmap", "payload", "-n", &namespace, "--from-literal=k=v"], None)
        .await;
    assert!(filled.success, "{}", filled.stderr);
    let deleted = cluster.kubectl("admin", &["delete", "namespace", &namespace, "--wait=false"], None).await;
    assert!(deleted.success, "{}", deleted.stderr);

    let namespaces: Api<Namespace> = Api::all(cluster.client("admin").await);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match namespaces.get_opt(&namespace).await {
            Ok(None) => break,
            Ok(Some(_)) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            Ok(Some(ns)) => panic!("namespace {namespace} still present after 90s: {:?}", ns.status),
            Err(error) => panic!("cannot read namespace {namespace}: {error}"),
        }
    }
}
