//! Renderer tests: golden files for each example class, determinism, labels on
//! every object, and a typed error for every bad combination.

use std::path::{Path, PathBuf};

use super::*;
use crate::{
    api::labels,
    api::{GoDuration, tenant::Subject},
};

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

use crate::testing::{class, payments, request};

/// The objects kept as JSON are exactly what parsing the YAML files back gives, in the
/// same order: drift reads them instead of the files.
fn assert_objects_are_the_files(env: &Environment) {
    let parsed = crate::drift::desired_objects(&env.files).expect("rendered files parse");
    let parsed: Vec<_> = parsed.iter().map(|o| (o.file.as_str(), o.document, &o.body)).collect();
    let kept: Vec<_> = env.objects.iter().map(|o| (o.file, o.document, &o.body)).collect();
    assert_eq!(kept, parsed);
    assert!(env.objects.len() >= env.files.len(), "every file has an object");
}

/// Compares with `tests/golden/render/<case>/`; `BERTH_UPDATE_GOLDEN=1` rewrites them.
fn assert_golden(case: &str, env: &Environment) {
    assert_golden_files(case, &env.files);
    assert_objects_are_the_files(env);
}

fn assert_golden_files(case: &str, files: &BTreeMap<String, String>) {
    let dir = repo_file(&format!("tests/golden/render/{case}"));
    if std::env::var_os("BERTH_UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create golden dir");
        for (file, yaml) in files {
            std::fs::write(dir.join(file), yaml).expect("write golden file");
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run with BERTH_UPDATE_GOLDEN=1", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    on_disk.sort();
    let rendered: Vec<String> = files.keys().cloned().collect();
    assert_eq!(rendered, on_disk, "{case}: rendered files differ from the golden set");
    for (file, yaml) in files {
        let golden = std::fs::read_to_string(dir.join(file)).expect("read golden file");
        assert_eq!(yaml, &golden, "{case}/{file} differs from its golden file (BERTH_UPDATE_GOLDEN=1 to accept)");
    }
}

#[test]
fn golden_tenant_objects() {
    let mut tenant = payments();
    tenant.metadata.uid = Some("6f1c2a9e-0000-4000-8000-000000000001".to_owned());
    let mut files = Output::default();
    files.add("namespace.yaml", &[tenant::namespace(&tenant, "payments")]).expect("yaml");
    files.add("roles.yaml", &tenant::roles(&tenant, "payments")).expect("yaml");
    files.add("rolebindings.yaml", &tenant::role_bindings(&tenant, "payments")).expect("yaml");
    assert_golden_files("tenant-payments", &files.files);
    // The namespace outlives the Tenant (no owner reference); roles and bindings do not.
    assert!(tenant::namespace(&tenant, "payments").metadata.owner_references.is_none());
    assert!(tenant::roles(&tenant, "payments").iter().all(|r| r.metadata.owner_references.is_some()));
}

#[test]
fn golden_preview() {
    let env = render(&class("preview"), &payments(), &request("preview"), &RenderOptions::default()).expect("renders");
    assert_golden("preview", &env);
    assert_eq!(env.ttl, Some(Duration::from_secs(48 * 3600)), "the request's ttl wins");
    assert_eq!(env.estimated_monthly_cost_usd, 40);
}

#[test]
fn golden_staging() {
    let env = render(&class("staging"), &payments(), &request("staging"), &RenderOptions::default()).expect("renders");
    assert_golden("staging", &env);
    assert_eq!(env.ttl, Some(Duration::from_secs(720 * 3600)), "the class default applies");
    assert_eq!(env.cluster, "staging-eu-west-1");
}

#[test]
fn golden_production() {
    let env =
        render(&class("production"), &payments(), &request("production"), &RenderOptions::default()).expect("renders");
    assert_golden("production", &env);
    assert_eq!(env.ttl, None, "production does not expire");
    assert!(!env.files.is_empty());
}

#[test]
fn rendering_is_deterministic() {
    let (c, t, r) = (class("staging"), payments(), request("staging"));
    let first = render(&c, &t, &r, &RenderOptions::default()).expect("renders");
    for _ in 0..5 {
        assert_eq!(render(&c, &t, &r, &RenderOptions::default()).expect("renders"), first);
    }
}

#[test]
fn every_object_carries_the_labels_berth_finds_it_by() {
    let env = render(&class("preview"), &payments(), &request("preview"), &RenderOptions::default()).expect("renders");
    let mut objects = 0;
    for (file, yaml) in &env.files {
        for document in serde_yaml::Deserializer::from_str(yaml) {
            let object = serde_yaml::Value::deserialize(document).expect("valid YAML");
            let found = &object["metadata"]["labels"];
            assert_eq!(found[labels::TENANT].as_str(), Some("payments"), "{file}");
            assert_eq!(found[labels::ENVIRONMENT].as_str(), Some(env.namespace.as_str()), "{file}");
            assert_eq!(found[labels::CLASS].as_str(), Some("preview"), "{file}");
            assert_eq!(found[labels::MANAGED_BY].as_str(), Some("berth"), "{file}");
            assert_eq!(
                object["metadata"]["annotations"][labels::REQUEST_ANNOTATION].as_str(),
                Some("payments/checkout-pr-1234"),
                "{file}"
            );
            objects += 1;
        }
    }
    assert_eq!(objects, 8, "namespace, quota, limits, policy, three bindings, application");
}

#[test]
fn network_policy_follows_the_class_mode() {
    let preview =
        render(&class("preview"), &payments(), &request("preview"), &RenderOptions::default()).expect("renders");
    let allow: serde_yaml::Value = serde_yaml::from_str(&preview.files["networkpolicy.yaml"]).expect("yaml");
    assert_eq!(allow["spec"]["ingress"][0]["from"][0]["podSelector"], serde_yaml::Value::Mapping(Default::default()));

    let mut deny_class = class("preview");
    deny_class.spec.network_policy = crate::api::environment_class::NetworkPolicyMode::DefaultDeny;
    let denied = render(&deny_class, &payments(), &request("preview"), &RenderOptions::default()).expect("renders");
    let deny: serde_yaml::Value = serde_yaml::from_str(&denied.files["networkpolicy.yaml"]).expect("yaml");
    assert!(deny["spec"].get("ingress").is_none(), "default deny has no ingress rules");
    assert_eq!(deny["spec"]["policyTypes"][0].as_str(), Some("Ingress"));
}

/// The environment's binding named `name`, parsed.
fn binding_of(env: &Environment, name: &str) -> serde_yaml::Value {
    serde_yaml::Deserializer::from_str(&env.files["rolebindings.yaml"])
        .map(serde_yaml::Value::deserialize)
        .filter_map(Result::ok)
        .find(|b| b["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("a {name} binding"))
}

#[test]
fn a_tenant_without_members_or_viewers_gets_empty_bindings_that_take_access_away() {
    // Argo CD does not prune by default: a binding left out of git would keep the
    // people last removed from the tenant in the environment.
    let mut tenant = payments();
    tenant.spec.members.clear();
    tenant.spec.viewers.clear();
    let env = render(&class("preview"), &tenant, &request("preview"), &RenderOptions::default()).expect("renders");
    for name in ["berth-members", "berth-viewers"] {
        let binding = binding_of(&env, name);
        assert_eq!(binding["subjects"], serde_yaml::Value::Sequence(Vec::new()), "{name}: {binding:?}");
    }
    assert_eq!(binding_of(&env, "berth-owners")["roleRef"]["name"].as_str(), Some("admin"));
}

#[test]
fn viewers_view_every_environment() {
    let env = render(&class("preview"), &payments(), &request("preview"), &RenderOptions::default()).expect("renders");
    let viewers = binding_of(&env, "berth-viewers");
    // Kubernetes' read-only role, which berth-viewer aggregates into: the
    // environment's workloads and its Berth objects, no Secrets, no writes.
    assert_eq!(viewers["roleRef"]["kind"].as_str(), Some("ClusterRole"));
    assert_eq!(viewers["roleRef"]["name"].as_str(), Some("view"));
    assert_eq!(viewers["subjects"][0]["kind"].as_str(), Some("Group"));
    assert_eq!(viewers["subjects"][0]["name"].as_str(), Some("payments-auditors"));
}

#[test]
fn tenant_viewers_read_the_request_namespace_and_write_nothing() {
    let tenant = payments();
    let roles = tenant::roles(&tenant, "payments");
    let viewer = roles.iter().find(|r| r.metadata.name.as_deref() == Some(tenant::VIEWER_ROLE)).expect("viewer Role");
    for rule in viewer.rules.iter().flatten() {
        assert_eq!(rule.verbs, ["get", "list", "watch"], "{rule:?}");
        let resources = rule.resources.as_deref().unwrap_or_default();
        assert!(resources.iter().all(|r| !r.contains('/')), "no subresource: {rule:?}");
    }
    let bindings = tenant::role_bindings(&tenant, "payments");
    let viewers = bindings.iter().find(|b| b.metadata.name.as_deref() == Some("berth-viewers")).expect("binding");
    assert_eq!(viewers.role_ref.name, tenant::VIEWER_ROLE);
    let names: Vec<&str> = viewers.subjects.iter().flatten().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["payments-auditors"]);

    // Without viewers the binding is still there, empty: the controller applies and
    // never deletes, so an empty list must take the access away.
    let mut tenant = payments();
    tenant.spec.viewers.clear();
    let bindings = tenant::role_bindings(&tenant, "payments");
    let viewers = bindings.iter().find(|b| b.metadata.name.as_deref() == Some("berth-viewers")).expect("binding");
    assert_eq!(viewers.subjects.as_deref(), Some(&[][..]));
}

#[test]
fn no_limit_range_file_when_the_class_sets_no_defaults() {
    let mut bare = class("preview");
    bare.spec.limit_range = None;
    let env = render(&bare, &payments(), &request("preview"), &RenderOptions::default()).expect("renders");
    assert!(!env.files.contains_key("limitrange.yaml"));
}

#[test]
fn application_points_at_the_app_and_the_environment() {
    let options = RenderOptions { argocd_namespace: "gitops".to_owned() };
    let env = render(&class("production"), &payments(), &request("production"), &options).expect("renders");
    let app: serde_yaml::Value = serde_yaml::from_str(&env.files["application.yaml"]).expect("yaml");
    assert_eq!(app["metadata"]["namespace"].as_str(), Some("gitops"));
    assert_eq!(app["spec"]["destination"]["namespace"].as_str(), Some(env.namespace.as_str()));
    assert_eq!(app["spec"]["destination"]["name"].as_str(), Some("prod-eu-west-1"));
    assert_eq!(app["spec"]["source"]["targetRevision"].as_str(), Some("v1.8.0"));
    assert_eq!(app["spec"]["syncPolicy"]["automated"]["prune"].as_bool(), Some(false));
}

fn render_err(class: &EnvironmentClass, tenant: &Tenant, request: &EnvironmentRequest) -> RenderError {
    render(class, tenant, request, &RenderOptions::default()).expect_err("must not render")
}

#[test]
fn class_not_allowed_for_the_tenant() {
    let mut tenant = payments();
    tenant.spec.allowed_classes = vec!["preview".to_owned()];
    let err = render_err(&class("production"), &tenant, &request("production"));
    assert!(matches!(&err, RenderError::ClassNotAllowed { class, .. } if class == "production"), "{err}");
    assert!(err.to_string().contains("allowed classes are [\"preview\"]"), "{err}");
}

#[test]
fn cluster_not_allowed_by_the_class() {
    let mut req = request("production");
    req.spec.cluster = "in-cluster".to_owned();
    let err = render_err(&class("production"), &payments(), &req);
    assert!(matches!(&err, RenderError::ClusterNotAllowed { cluster, .. } if cluster == "in-cluster"), "{err}");
    assert!(err.to_string().contains("prod-eu-west-1"), "the message lists the allowed clusters: {err}");
}

#[test]
fn ttl_over_the_class_max() {
    let mut req = request("preview");
    req.spec.ttl = Some("200h".parse::<GoDuration>().expect("valid"));
    let err = render_err(&class("preview"), &payments(), &req);
    assert_eq!(err, RenderError::TtlOverMax { class: "preview".into(), requested: "200h".into(), max: "168h".into() });
    assert_eq!(err.to_string(), "ttl 200h is longer than class \"preview\" allows (168h); ask for 168h or less");
}

#[test]
fn malformed_durations_are_errors_not_panics() {
    // The CRD's CEL rule stops these at the apiserver; rendering still must not panic.
    let mut req = request("preview");
    req.spec.ttl = Some(serde_json::from_str("\"3 days\"").expect("any string deserializes"));
    let err = render_err(&class("preview"), &payments(), &req);
    assert!(matches!(err, RenderError::Duration { field: "spec.ttl", .. }), "{err}");
}

#[test]
fn names_too_long_for_labels() {
    let mut tenant = payments();
    let long = "t".repeat(64);
    tenant.metadata.name = Some(long.clone());
    let mut req = request("preview");
    req.spec.tenant = long;
    let err = render_err(&class("preview"), &tenant, &req);
    assert!(matches!(err, RenderError::NameTooLong { what: "tenant name", len: 64, max: 63, .. }), "{err}");
}

#[test]
fn mismatched_tenant_or_class() {
    let mut req = request("preview");
    req.spec.tenant = "search".to_owned();
    assert!(matches!(render_err(&class("preview"), &payments(), &req), RenderError::TenantMismatch { .. }));
    let err = render_err(&class("staging"), &payments(), &request("preview"));
    assert!(matches!(err, RenderError::ClassMismatch { .. }), "{err}");
}

#[test]
fn repository_urls_follow_the_shared_table_and_refusals_hide_the_secret() {
    use crate::api::git_url::{EXAMPLE_SECRET, EXAMPLES, Expected};
    for (url, expected) in EXAMPLES {
        let mut req = request("preview");
        req.spec.app.repo_url = (*url).to_owned();
        let rendered = render(&class("preview"), &payments(), &req, &RenderOptions::default());
        match (expected, rendered) {
            (Expected::Allowed, Ok(env)) => {
                let app: serde_yaml::Value = serde_yaml::from_str(&env.files["application.yaml"]).expect("yaml");
                assert_eq!(app["spec"]["source"]["repoURL"].as_str(), Some(*url));
            }
            (Expected::Refused(why), Err(err)) => {
                assert_eq!(err, RenderError::RepoUrl(*why), "{url:?}");
                assert!(!err.to_string().contains(EXAMPLE_SECRET), "{url:?}: {err}");
            }
            (expected, got) => panic!("{url:?}: expected {expected:?}, got {:?}", got.map(|_| "rendered")),
        }
    }
}

#[test]
fn subjects_become_rbac_subjects_of_the_right_kind() {
    let mut tenant = payments();
    tenant.spec.owners = vec![Subject { kind: crate::api::tenant::SubjectKind::Group, name: "payments-leads".into() }];
    let env = render(&class("preview"), &tenant, &request("preview"), &RenderOptions::default()).expect("renders");
    let owners: serde_yaml::Value = serde_yaml::Deserializer::from_str(&env.files["rolebindings.yaml"])
        .next()
        .map(serde_yaml::Value::deserialize)
        .expect("doc")
        .expect("yaml");
    assert_eq!(owners["roleRef"]["name"].as_str(), Some("admin"));
    assert_eq!(owners["subjects"][0]["kind"].as_str(), Some("Group"));
    assert_eq!(owners["subjects"][0]["name"].as_str(), Some("payments-leads"));
}

use serde::Deserialize;
