//! Drift against the committed preview golden files, with live objects shaped the
//! way the apiserver returns them.

use std::collections::BTreeMap;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use serde_json::{Value, json};

use super::*;

const NS: &str = "payments-checkout-pr-1234-ad79e6e1";

fn preview_files() -> BTreeMap<String, String> {
    macro_rules! golden {
        ($($name:literal),*) => {
            BTreeMap::from([$((
                $name.to_owned(),
                include_str!(concat!("../../tests/golden/render/preview/", $name)).to_owned(),
            )),*])
        };
    }
    golden!(
        "application.yaml",
        "limitrange.yaml",
        "namespace.yaml",
        "networkpolicy.yaml",
        "resourcequota.yaml",
        "rolebindings.yaml"
    )
}

fn preview() -> Vec<DesiredObject> {
    desired_objects(&preview_files()).expect("golden files parse")
}

fn desired(kind: &str, name: &str) -> DesiredObject {
    preview().into_iter().find(|o| o.key.kind == kind && o.key.name == name).expect("object in golden files")
}

/// The desired body as the apiserver would return it: identity and bookkeeping
/// added to metadata, plus a status.
fn as_served(object: &DesiredObject) -> Value {
    let mut live = object.body.clone();
    let metadata = live["metadata"].as_object_mut().expect("metadata");
    metadata.insert("uid".into(), json!("6f1c2a9e-0000-4000-8000-000000000001"));
    metadata.insert("resourceVersion".into(), json!("48213"));
    metadata.insert("generation".into(), json!(3));
    metadata.insert("creationTimestamp".into(), json!("2025-01-01T00:00:00Z"));
    metadata.insert(
        "managedFields".into(),
        json!([{"manager": "argocd-controller", "operation": "Apply", "apiVersion": "v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]),
    );
    metadata["labels"]["app.kubernetes.io/instance"] = json!("payments-checkout");
    metadata["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!("{}");
    live["status"] = json!({"observed": true});
    live
}

fn diff_of(object: &DesiredObject, live: &Value) -> Vec<Difference> {
    diff(object, Some(live))
}

fn difference(resource: &str, field: &str, desired: Option<&str>, live: Option<&str>) -> Difference {
    Difference {
        resource: resource.to_owned(),
        field: field.to_owned(),
        desired: desired.map(str::to_owned),
        live: live.map(str::to_owned),
    }
}

fn checked_at() -> Time {
    Time(Timestamp::from_second(1_750_000_000).expect("valid timestamp"))
}

#[test]
fn golden_files_parse_into_objects_with_identity() {
    let objects = preview();
    let keys: Vec<String> = objects.iter().map(|o| o.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            format!("Application/argocd/{NS}"),
            format!("LimitRange/{NS}/berth-limits"),
            format!("Namespace/{NS}"),
            format!("NetworkPolicy/{NS}/berth-default"),
            format!("ResourceQuota/{NS}/berth-quota"),
            format!("RoleBinding/{NS}/berth-owners"),
            format!("RoleBinding/{NS}/berth-members"),
            format!("RoleBinding/{NS}/berth-viewers"),
        ]
    );
    let members = &objects[6];
    assert_eq!(members.file, "rolebindings.yaml");
    assert_eq!(members.document, 2);
    assert_eq!(members.key.api_version, "rbac.authorization.k8s.io/v1");
    assert_eq!(members.key.group(), "rbac.authorization.k8s.io");
    assert_eq!(members.body["roleRef"]["name"], "edit");
    assert_eq!(objects[2].key.namespace, None);
}

#[test]
fn empty_documents_are_skipped() {
    let files = BTreeMap::from([(
        "cm.yaml".to_owned(),
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n---\n".to_owned(),
    )]);
    let objects = desired_objects(&files).expect("parses");
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].key.to_string(), "ConfigMap/a");
}

#[test]
fn bad_yaml_names_the_file_and_document() {
    let files = BTreeMap::from([
        ("a.yaml".to_owned(), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n".to_owned()),
        (
            "b.yaml".to_owned(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\nkind: [unclosed\n".to_owned(),
        ),
    ]);
    let error = desired_objects(&files).expect_err("second document of b.yaml is broken");
    assert!(matches!(&error, DriftError::Yaml { file, document: 2, .. } if file == "b.yaml"), "{error:?}");
    let message = error.to_string();
    assert!(message.starts_with("b.yaml document 2 is not valid yaml: "), "{message}");
}

#[test]
fn documents_without_identity_are_errors() {
    let scalar = BTreeMap::from([("x.yaml".to_owned(), "just text\n".to_owned())]);
    assert_eq!(
        desired_objects(&scalar).expect_err("not a mapping").to_string(),
        "x.yaml document 1 is not a yaml mapping"
    );
    let nameless = BTreeMap::from([("y.yaml".to_owned(), "apiVersion: v1\nkind: ConfigMap\n".to_owned())]);
    assert_eq!(
        desired_objects(&nameless).expect_err("no name").to_string(),
        "y.yaml document 1 lacks apiVersion, kind or metadata.name"
    );
}

#[test]
fn identical_objects_have_no_drift() {
    for object in preview() {
        assert_eq!(diff_of(&object, &object.body), [], "{}", object.key);
    }
}

#[test]
fn server_added_fields_are_not_drift() {
    for object in preview() {
        assert_eq!(diff_of(&object, &as_served(&object)), [], "{}", object.key);
    }
}

#[test]
fn defaulted_fields_from_the_apiserver_are_not_drift() {
    let namespace = desired("Namespace", NS);
    let mut live = as_served(&namespace);
    live["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(NS);
    live["spec"] = json!({"finalizers": ["kubernetes"]});
    live["status"] = json!({"phase": "Active"});
    assert_eq!(diff_of(&namespace, &live), []);

    let application = desired("Application", NS);
    let mut live = as_served(&application);
    live["metadata"]["finalizers"] = json!(["resources-finalizer.argocd.argoproj.io", "other"]);
    live["spec"]["syncPolicy"]["automated"]["allowEmpty"] = json!(false);
    live["status"] = json!({"sync": {"status": "Synced"}, "health": {"status": "Healthy"}});
    assert_eq!(diff_of(&application, &live), []);
}

#[test]
fn edited_quota_is_one_difference() {
    let quota = desired("ResourceQuota", "berth-quota");
    let mut live = as_served(&quota);
    live["spec"]["hard"]["pods"] = json!("30");
    assert_eq!(
        diff_of(&quota, &live),
        [difference(&format!("ResourceQuota/{NS}/berth-quota"), "spec.hard.pods", Some(r#""20""#), Some(r#""30""#))]
    );
}

#[test]
fn dotted_keys_are_quoted_in_paths() {
    let quota = desired("ResourceQuota", "berth-quota");
    let mut live = as_served(&quota);
    live["spec"]["hard"]["limits.memory"] = json!("16Gi");
    let differences = diff_of(&quota, &live);
    assert_eq!(differences.len(), 1);
    assert_eq!(differences[0].field, r#"spec.hard["limits.memory"]"#);
    assert_eq!(differences[0].desired.as_deref(), Some(r#""8Gi""#));
    assert_eq!(differences[0].live.as_deref(), Some(r#""16Gi""#));
}

#[test]
fn removed_label_is_a_difference_without_live_value() {
    let namespace = desired("Namespace", NS);
    let mut live = as_served(&namespace);
    let labels = live["metadata"]["labels"].as_object_mut().expect("labels");
    labels.remove("berth.dev/tenant");
    labels.insert("pod-security.kubernetes.io/enforce".into(), json!("privileged"));
    assert_eq!(
        diff_of(&namespace, &live),
        [
            difference(
                &format!("Namespace/{NS}"),
                r#"metadata.labels["berth.dev/tenant"]"#,
                Some(r#""payments""#),
                None
            ),
            difference(
                &format!("Namespace/{NS}"),
                r#"metadata.labels["pod-security.kubernetes.io/enforce"]"#,
                Some(r#""baseline""#),
                Some(r#""privileged""#)
            ),
        ]
    );
}

#[test]
fn removed_annotation_is_a_difference() {
    let quota = desired("ResourceQuota", "berth-quota");
    let mut live = as_served(&quota);
    live["metadata"]["annotations"] = Value::Null;
    let differences = diff_of(&quota, &live);
    assert_eq!(differences.len(), 1);
    assert_eq!(differences[0].field, r#"metadata.annotations["berth.dev/request"]"#);
    assert_eq!(differences[0].live, None);
}

#[test]
fn canonicalized_quantities_are_not_drift() {
    let files = BTreeMap::from([(
        "resourcequota.yaml".to_owned(),
        format!(
            "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: q\n  namespace: {NS}\nspec:\n  hard:\n    \
             requests.cpu: 0.5\n    limits.cpu: 2\n    requests.memory: 1024Mi\n    limits.memory: 1.5Gi\n    \
             pods: 20\n    requests.storage: 1e9\n"
        ),
    )]);
    let objects = desired_objects(&files).expect("parses");
    let live = json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "q", "namespace": NS, "uid": "x"},
        "spec": {"hard": {"requests.cpu": "500m", "limits.cpu": "2", "requests.memory": "1Gi",
                          "limits.memory": "1536Mi", "pods": "20", "requests.storage": "1G"}},
        "status": {"hard": {}, "used": {}}
    });
    assert_eq!(diff_all(&objects, std::slice::from_ref(&live)), []);

    let mut changed = live;
    changed["spec"]["hard"]["requests.cpu"] = json!("501m");
    let differences = diff_all(&objects, &[changed]);
    assert_eq!(differences.len(), 1);
    assert_eq!(differences[0].field, r#"spec.hard["requests.cpu"]"#);
    assert_eq!(differences[0].desired.as_deref(), Some("0.5"));
    assert_eq!(differences[0].live.as_deref(), Some(r#""501m""#));
}

#[test]
fn limit_range_defaults_compare_by_value_and_index() {
    let limits = desired("LimitRange", "berth-limits");
    let mut live = as_served(&limits);
    live["spec"]["limits"][0]["default"]["cpu"] = json!("0.5");
    live["spec"]["limits"][0]["defaultRequest"]["memory"] = json!("131072Ki");
    assert_eq!(diff_of(&limits, &live), []);

    live["spec"]["limits"][0]["default"]["cpu"] = json!("1");
    let differences = diff_of(&limits, &live);
    assert_eq!(differences.len(), 1);
    assert_eq!(differences[0].field, "spec.limits[0].default.cpu");
}

#[test]
fn custom_resources_compare_strings_exactly() {
    // The apiserver stores CRDs as written: "1.0" and "1" are different git revisions.
    let files = BTreeMap::from([(
        "application.yaml".to_owned(),
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a, namespace: argocd}\n\
         spec: {source: {targetRevision: '1.0'}}\n"
            .to_owned(),
    )]);
    let objects = desired_objects(&files).expect("parses");
    let mut live = objects[0].body.clone();
    live["spec"]["source"]["targetRevision"] = json!("1");
    let differences = diff_all(&objects, &[live]);
    assert_eq!(differences.len(), 1);
    assert_eq!(differences[0].field, "spec.source.targetRevision");
}

#[test]
fn missing_object_is_one_difference() {
    let objects = preview();
    let live: Vec<Value> = objects.iter().filter(|o| o.key.kind != "ResourceQuota").map(as_served).collect();
    let status = drift_status(&desired_objects(&preview_files()).expect("golden files parse"), &live, checked_at());
    assert_eq!(status.state, DriftState::Drifted);
    assert_eq!(status.checked_at, Some(checked_at()));
    assert_eq!(status.differences.len(), 1);
    let missing = &status.differences[0];
    assert_eq!(missing.resource, format!("ResourceQuota/{NS}/berth-quota"));
    assert_eq!(missing.field, MISSING_OBJECT_FIELD);
    assert_eq!((missing.desired.as_deref(), missing.live.as_deref()), (None, None), "the resource names it: no copy");
}

#[test]
fn in_sync_environment_ignores_unrelated_live_objects() {
    let mut live: Vec<Value> = preview().iter().map(as_served).collect();
    live.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                     "metadata": {"name": "checkout", "namespace": NS}, "spec": {"replicas": 2}}));
    live.push(json!({"kind": "NoIdentity"}));
    // Same group, other version: still the same object.
    live[3]["apiVersion"] = json!("networking.k8s.io/v1beta1");
    let status = drift_status(&desired_objects(&preview_files()).expect("golden files parse"), &live, checked_at());
    assert_eq!(status.state, DriftState::InSync);
    assert_eq!(status.differences, []);
}

#[test]
fn network_policy_changes_are_drift() {
    let policy = desired("NetworkPolicy", "berth-default");
    let resource = format!("NetworkPolicy/{NS}/berth-default");

    let mut peer_swapped = as_served(&policy);
    peer_swapped["spec"]["ingress"] = json!([{"from": [{"namespaceSelector": {}}]}]);
    assert_eq!(
        diff_of(&policy, &peer_swapped),
        [difference(&resource, "spec.ingress[0].from[0].podSelector", Some("{}"), None)]
    );

    let mut rule_added = as_served(&policy);
    rule_added["spec"]["ingress"] = json!([{"from": [{"podSelector": {}}]}, {}]);
    assert_eq!(
        diff_of(&policy, &rule_added),
        [difference(
            &resource,
            "spec.ingress",
            Some(r#"[{"from":[{"podSelector":{}}]}]"#),
            Some(r#"[{"from":[{"podSelector":{}}]},{}]"#)
        )]
    );

    let mut narrowed = as_served(&policy);
    narrowed["spec"]["podSelector"] = json!({"matchLabels": {"app": "web"}});
    assert_eq!(
        diff_of(&policy, &narrowed),
        [difference(&resource, "spec.podSelector", Some("{}"), Some(r#"{"matchLabels":{"app":"web"}}"#))]
    );
}

#[test]
fn role_binding_subjects_match_by_name() {
    let owners = desired("RoleBinding", "berth-owners");
    let resource = format!("RoleBinding/{NS}/berth-owners");
    let bob = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"});

    let mut added = as_served(&owners);
    added["subjects"] = json!([bob.clone(), owners.body["subjects"][0].clone()]);
    assert_eq!(
        diff_of(&owners, &added),
        [difference(&resource, r#"subjects[name="bob"]"#, None, Some(&bob.to_string()))]
    );

    let mut replaced = as_served(&owners);
    replaced["subjects"] = json!([bob.clone()]);
    assert_eq!(
        diff_of(&owners, &replaced),
        [
            difference(
                &resource,
                r#"subjects[name="alice"]"#,
                Some(r#"{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"alice"}"#),
                None
            ),
            difference(&resource, r#"subjects[name="bob"]"#, None, Some(&bob.to_string())),
        ]
    );

    let mut kind_changed = as_served(&owners);
    kind_changed["subjects"][0]["kind"] = json!("Group");
    assert_eq!(
        diff_of(&owners, &kind_changed),
        [difference(&resource, r#"subjects[name="alice"].kind"#, Some(r#""User""#), Some(r#""Group""#))]
    );

    let mut role_changed = as_served(&owners);
    role_changed["roleRef"]["name"] = json!("view");
    assert_eq!(
        diff_of(&owners, &role_changed),
        [difference(&resource, "roleRef.name", Some(r#""admin""#), Some(r#""view""#))]
    );
}

#[test]
fn omitted_zero_values_are_not_drift() {
    let files = BTreeMap::from([(
        "rb.yaml".to_owned(),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: r, namespace: n}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\n\
         subjects: [{kind: ServiceAccount, name: default, namespace: n, apiGroup: ''}]\n"
            .to_owned(),
    )]);
    let objects = desired_objects(&files).expect("parses");
    let mut live = objects[0].body.clone();
    live["subjects"][0].as_object_mut().expect("subject").remove("apiGroup");
    assert_eq!(diff_all(&objects, &[live]), []);
}

#[test]
fn summarize_caps_at_the_crd_limit() {
    assert_eq!(summarize(Vec::new()), (DriftState::InSync, Vec::new()));
    let many: Vec<Difference> =
        (0..250).map(|i| difference("ConfigMap/n/c", &format!("data.k{i}"), Some("\"a\""), None)).collect();
    let (state, kept) = summarize(many);
    assert_eq!(state, DriftState::Drifted);
    assert_eq!(kept.len(), MAX_DIFFERENCES);
    assert_eq!(kept[0].field, "data.k0");
}
