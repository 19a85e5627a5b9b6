//! The CRDs install, every example is accepted, and kubectl shows what a person needs.

use berth::api::{EnvironmentClass, EnvironmentRequest, Rollout, Tenant};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, ResourceExt, api::ListParams};

use crate::cluster;

#[tokio::test]
async fn every_crd_is_established() {
    let cluster = cluster();
    cluster.install_crds().await;
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client("admin").await);
    for (_, generated) in berth::api::crds() {
        let name = generated.metadata.name.clone().unwrap_or_default();
        let live = crds.get(&name).await.unwrap_or_else(|e| panic!("{name} not installed: {e}"));
        let established = live
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not Established");
        assert_eq!(live.spec.names.categories, Some(vec!["berth".to_owned()]), "{name} is in category berth");
    }
}

#[tokio::test]
async fn every_example_is_accepted_and_reads_back_into_the_rust_types() {
    let cluster = cluster();
    cluster.install_crds().await;
    // The examples live in the tenant's request namespace, which the Tenant
    // controller creates; at this tier the test creates it.
    let create_ns = cluster.kubectl("admin", &["create", "namespace", "payments"], None).await;
    assert!(create_ns.success, "{}", create_ns.stderr);

    let examples = berth::testing::examples_dir();
    let examples = examples.to_string_lossy();
    let dry_run = cluster.kubectl("admin", &["create", "--dry-run=server", "-f", &examples], None).await;
    assert!(dry_run.success, "server-side dry run refused an example: {}", dry_run.stderr);
    assert_eq!(dry_run.stdout.matches("(server dry run)").count(), 8, "{}", dry_run.stdout);

    let create = cluster.kubectl("admin", &["create", "-f", &examples], None).await;
    assert!(create.success, "an example was refused: {}", create.stderr);

    let client = cluster.client("admin").await;
    let classes: Vec<String> = Api::<EnvironmentClass>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("cannot list classes: {e}"))
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    for class in ["preview", "staging", "production"] {
        assert!(classes.contains(&class.to_owned()), "{class} missing from {classes:?}");
    }
    let production = Api::<EnvironmentClass>::all(client.clone())
        .get("production")
        .await
        .unwrap_or_else(|e| panic!("cannot read production: {e}"));
    assert!(production.spec.approval.required);
    assert_eq!(production.spec.approval.approver_groups, vec!["platform-approvers".to_owned()]);
    assert_eq!(production.spec.ttl, None, "production environments do not expire");

    let tenant = Api::<Tenant>::all(client.clone()).get("payments").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tenant.spec.budget.monthly_cost_usd, Some(5000));

    let requests = Api::<EnvironmentRequest>::namespaced(client.clone(), "payments");
    let preview = requests.get("checkout-pr-1234").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(preview.spec.class, "preview");
    assert_eq!(preview.spec.ttl.as_ref().map(|t| t.as_str()), Some("48h"));
    let staging = requests.get("checkout-staging").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(staging.spec.app.revision, "v1.8.0");

    let rollout =
        Api::<Rollout>::namespaced(client, "payments").get("checkout-v1-9-0").await.unwrap_or_else(|e| panic!("{e}"));
    let stages: Vec<&str> = rollout.spec.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(stages, ["staging", "production"]);
}

#[tokio::test]
async fn kubectl_get_berth_lists_all_four_kinds() {
    let cluster = cluster();
    cluster.install_crds().await;
    let namespace = cluster.namespace("get-berth").await;
    let suffix = namespace.trim_start_matches("get-berth-");
    let objects = format!(
        "apiVersion: berth.dev/v1alpha1
kind: EnvironmentClass
metadata: {{name: listed-{suffix}}}
spec: {{}}
---
apiVersion: berth.dev/v1alpha1
kind: Tenant
metadata: {{name: listed-{suffix}}}
spec:
  owners: [{{kind: User, name: alice}}]
---
apiVersion: berth.dev/v1alpha1
kind: EnvironmentRequest
metadata: {{name: listed, namespace: {namespace}}}
spec:
  tenant: listed-{suffix}
  class: listed-{suffix}
  app: {{name: web, repoURL: https://git.example.com/web.git}}
---
apiVersion: berth.dev/v1alpha1
kind: Rollout
metadata: {{name: listed, namespace: {namespace}}}
spec:
  app: web
  revision: v2
  selector: {{matchLabels: {{app: web}}}}
  stages: [{{name: all}}]
"
    );
    let created = cluster.kubectl("admin", &["create", "-f", "-"], Some(&objects)).await;
    assert!(created.success, "{}", created.stderr);

    let listed = cluster.kubectl("admin", &["get", "berth", "-n", &namespace, "-o", "name"], None).await;
    assert!(listed.success, "{}", listed.stderr);
    for expected in [
        format!("environmentclass.berth.dev/listed-{suffix}"),
        format!("tenant.berth.dev/listed-{suffix}"),
        "environmentrequest.berth.dev/listed".to_owned(),
        "rollout.berth.dev/listed".to_owned(),
    ] {
        assert!(
            listed.stdout.lines().any(|l| l == expected),
            "{expected} missing from `kubectl get berth`:\n{}",
            listed.stdout
        );
    }

    // The request's printer columns come first in a person's view.
    let table = cluster.kubectl("admin", &["get", "envreq", "-n", &namespace], None).await;
    let header: Vec<&str> = table.stdout.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TENANT", "CLASS", "PHASE", "READY", "NAMESPACE", "AGE"], "{}", table.stdout);
    assert!(table.stdout.contains(&format!("listed-{suffix}")), "{}", table.stdout);
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_docs() {
    let cluster = cluster();
    cluster.install_crds().await;
    let explained = cluster.kubectl("admin", &["explain", "environmentrequest.spec"], None).await;
    assert!(explained.success, "{}", explained.stderr);
    for doc in [
        "The EnvironmentClass to provision",
        "The tenant (team) asking",
        "The app Argo CD deploys into the environment",
        "How long the environment lives",
        "Approval for classes that require one",
    ] {
        assert!(explained.stdout.contains(doc), "`kubectl explain` lacks {doc:?}:\n{}", explained.stdout);
    }
    let nested = cluster.kubectl("admin", &["explain", "environmentclass.spec.approval.approverGroups"], None).await;
    assert!(nested.stdout.contains("Groups whose members may approve requests of this class"), "{}", nested.stdout);
}
