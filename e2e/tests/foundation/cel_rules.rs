//! Each CEL rule in the CRDs is enforced by the apiserver itself, with its own
//! message, and a refused change loses nothing that was stored before.

use berth::api::git_url::{
    EXAMPLE_SECRET, EXAMPLES, Expected, REPO_URL_CHARACTERS_MESSAGE, REPO_URL_CREDENTIALS_MESSAGE, UnsafeUrl,
};
use serde_yaml::Value;

use crate::{cluster, example, to_yaml};

/// Sets `value` at the dotted `path` (creating maps on the way).
fn set(doc: &mut Value, path: &str, value: Value) {
    let mut node = doc;
    let keys: Vec<&str> = path.split('.').collect();
    for key in &keys[..keys.len() - 1] {
        node = node.as_mapping_mut().and_then(|m| m.get_mut(*key)).unwrap_or_else(|| panic!("{path}: no {key}"));
    }
    let last = keys[keys.len() - 1];
    node.as_mapping_mut().unwrap_or_else(|| panic!("{path} is not in a map")).insert(last.into(), value);
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("bad YAML {text:?}: {e}"))
}

/// An example renamed (and, for namespaced kinds, moved) so tests do not collide.
fn example_as(file: &str, name: &str, namespace: &str) -> Value {
    let mut doc = example(file);
    set(&mut doc, "metadata.name", name.into());
    if doc["metadata"].get("namespace").is_some() {
        set(&mut doc, "metadata.namespace", namespace.into());
    }
    doc
}

struct Refusal<'a> {
    rule: &'a str,
    file: &'a str,
    mutate: fn(&mut Value),
    message: &'a str,
}

#[tokio::test]
async fn create_rules_refuse_with_their_message_and_store_nothing() {
    let cluster = cluster();
    cluster.install_crds().await;
    let namespace = cluster.namespace("cel-create").await;
    let cases = [
        Refusal {
            rule: "class ttl.default <= ttl.max",
            file: "environmentclass-preview.yaml",
            mutate: |d| set(d, "spec.ttl", yaml("{default: 200h, max: 168h}")),
            message: "ttl.default must not be longer than ttl.max",
        },
        Refusal {
            rule: "approval required needs approver groups",
            file: "environmentclass-production.yaml",
            mutate: |d| set(d, "spec.approval.approverGroups", yaml("[]")),
            message: "approval.required needs at least one entry in approval.approverGroups",
        },
        Refusal {
            rule: "class ttl is a well-formed duration",
            file: "environmentclass-preview.yaml",
            mutate: |d| set(d, "spec.ttl.default", "3d".into()),
            message: "spec.ttl.default: Invalid value: \"string\": must be a duration of whole numbers with units h, m, s, ms, us or ns",
        },
        Refusal {
            rule: "request ttl is a well-formed duration",
            file: "environmentrequest-preview.yaml",
            mutate: |d| set(d, "spec.ttl", "two days".into()),
            message: "spec.ttl: Invalid value: \"string\": must be a duration of whole numbers",
        },
        Refusal {
            rule: "app name is a DNS label",
            file: "environmentrequest-preview.yaml",
            mutate: |d| set(d, "spec.app.name", "Checkout_App".into()),
            message: "app.name must be lowercase letters, digits and '-'",
        },
        Refusal {
            rule: "repoURL carries no credentials",
            file: "environmentrequest-preview.yaml",
            mutate: |d| set(d, "spec.app.repoURL", "https://bot:s3cret@git.example.com/payments/checkout.git".into()),
            message: REPO_URL_CREDENTIALS_MESSAGE,
        },
        Refusal {
            rule: "tenant has an owner",
            file: "tenant-payments.yaml",
            mutate: |d| set(d, "spec.owners", yaml("[]")),
            message: "a tenant needs at least one owner",
        },
        Refusal {
            rule: "rollout has a stage",
            file: "rollout-checkout.yaml",
            mutate: |d| set(d, "spec.stages", yaml("[]")),
            message: "a rollout needs at least one stage",
        },
        Refusal {
            rule: "rollout stage names are unique",
            file: "rollout-checkout.yaml",
            mutate: |d| set(d, "spec.stages", yaml("[{name: staging}, {name: prod}, {name: staging}]")),
            message: "stage names must be unique",
        },
        Refusal {
            rule: "freeze window ends after it starts",
            file: "rollout-checkout.yaml",
            mutate: |d| {
                set(d, "spec.freezeWindows", yaml("[{start: '2027-01-04T00:00:00Z', end: '2026-12-20T00:00:00Z'}]"))
            },
            message: "a freeze window must end after it starts",
        },
        Refusal {
            rule: "soak is a well-formed duration",
            file: "rollout-checkout.yaml",
            mutate: |d| set(d, "spec.stages", yaml("[{name: staging, healthGate: {soak: soon}}]")),
            message: "spec.stages[0].healthGate.soak: Invalid value: \"string\": must be a duration",
        },
    ];
    for (index, case) in cases.iter().enumerate() {
        let name = format!("cel-create-{index}-{namespace}");
        let mut doc = example_as(case.file, &name, &namespace);
        (case.mutate)(&mut doc);
        let refused = cluster.kubectl("admin", &["create", "-f", "-"], Some(&to_yaml(&doc))).await;
        assert!(!refused.success, "{}: the apiserver accepted {}", case.rule, to_yaml(&doc));
        assert!(
            refused.stderr.contains(case.message),
            "{}: expected {:?} in:\n{}",
            case.rule,
            case.message,
            refused.stderr
        );

        let kind = doc["kind"].as_str().unwrap_or_default().to_lowercase();
        let lookup = cluster
            .kubectl("admin", &["get", &kind, &name, "-n", &namespace, "--ignore-not-found", "-o", "name"], None)
            .await;
        assert!(
            lookup.success && lookup.stdout.trim().is_empty(),
            "{}: a refused object was stored: {}",
            case.rule,
            lookup.stdout
        );

        // The unmutated example is accepted, so the refusal is the rule's doing.
        let valid = example_as(case.file, &name, &namespace);
        let accepted =
            cluster.kubectl("admin", &["create", "--dry-run=server", "-f", "-"], Some(&to_yaml(&valid))).await;
        assert!(accepted.success, "{}: the valid example was refused: {}", case.rule, accepted.stderr);
    }
}

/// The repoURL rules on the real apiserver: CEL refuses a URL of the shared table
/// exactly when Berth's own rule does, with the same message, and never shows the
/// secret. Sent as JSON, so line breaks and other controls arrive as written.
#[tokio::test]
async fn repo_url_rules_refuse_exactly_what_berth_refuses_without_showing_the_secret() {
    let cluster = cluster();
    cluster.install_crds().await;
    let namespace = cluster.namespace("cel-repo-url").await;
    let attempts = EXAMPLES.iter().enumerate().map(|(index, (url, expected))| {
        let mut doc = example_as("environmentrequest-preview.yaml", &format!("repo-url-{index}"), &namespace);
        set(&mut doc, "spec.app.repoURL", (*url).into());
        let json = serde_json::to_string(&doc).unwrap_or_else(|e| panic!("{url:?}: {e}"));
        async move {
            let created = cluster.kubectl("admin", &["create", "--dry-run=server", "-f", "-"], Some(&json)).await;
            (url, expected, created)
        }
    });
    let mut wrong = Vec::new();
    for (url, expected, created) in futures::future::join_all(attempts).await {
        let verdict = match expected {
            Expected::Allowed if created.success => Ok(()),
            Expected::Allowed => Err(format!("refused: {}", created.stderr)),
            Expected::Refused(_) if created.success => Err("admitted".to_owned()),
            Expected::Refused(why) => {
                let other = match why {
                    UnsafeUrl::Characters => REPO_URL_CREDENTIALS_MESSAGE,
                    UnsafeUrl::Credentials => REPO_URL_CHARACTERS_MESSAGE,
                };
                if !created.stderr.contains(why.repo_url_message()) || created.stderr.contains(other) {
                    Err(format!("expected only {:?} in: {}", why.repo_url_message(), created.stderr))
                } else if created.stderr.contains(EXAMPLE_SECRET) {
                    Err(format!("the refusal shows the secret: {}", created.stderr))
                } else {
                    Ok(())
                }
            }
        };
        if let Err(problem) = verdict {
            wrong.push(format!("{url:?}: {problem}"));
        }
    }
    assert!(wrong.is_empty(), "the apiserver and Berth disagree on:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn immutability_rules_refuse_updates_and_keep_the_stored_object() {
    let cluster = cluster();
    cluster.install_crds().await;
    let namespace = cluster.namespace("cel-update").await;
    let cases = [
        Refusal {
            rule: "request class is immutable",
            file: "environmentrequest-preview.yaml",
            mutate: |d| set(d, "spec.class", "staging".into()),
            message: "class cannot change after creation; create a new request of the other class instead",
        },
        Refusal {
            rule: "request tenant is immutable",
            file: "environmentrequest-preview.yaml",
            mutate: |d| set(d, "spec.tenant", "search".into()),
            message: "tenant cannot change after creation; create a new request instead",
        },
        Refusal {
            rule: "request cluster is immutable",
            file: "environmentrequest-preview.yaml",
            mutate: |d| set(d, "spec.cluster", "staging-eu-west-1".into()),
            message: "cluster cannot change after creation; create a new request on the other cluster instead",
        },
        Refusal {
            rule: "tenant requestNamespace cannot change",
            file: "tenant-payments.yaml",
            mutate: |d| set(d, "spec.requestNamespace", "payments-two".into()),
            message: "requestNamespace cannot change once set; create a new Tenant instead",
        },
        Refusal {
            rule: "tenant requestNamespace cannot be unset",
            file: "tenant-payments.yaml",
            mutate: |d| {
                if let Some(spec) = d.get_mut("spec").and_then(Value::as_mapping_mut) {
                    spec.remove("requestNamespace");
                }
            },
            message: "requestNamespace cannot change once set; create a new Tenant instead",
        },
    ];
    for (index, case) in cases.iter().enumerate() {
        let name = format!("cel-update-{index}-{namespace}");
        let original = example_as(case.file, &name, &namespace);
        let created = cluster.kubectl("admin", &["create", "-f", "-"], Some(&to_yaml(&original))).await;
        assert!(created.success, "{}: {}", case.rule, created.stderr);
        let kind = original["kind"].as_str().unwrap_or_default().to_lowercase();
        let stored_spec = || async {
            let got = cluster
                .kubectl("admin", &["get", &kind, &name, "-n", &namespace, "-o", "jsonpath={.spec}"], None)
                .await;
            assert!(got.success, "{}", got.stderr);
            got.stdout
        };
        let before = stored_spec().await;

        let mut changed = original.clone();
        (case.mutate)(&mut changed);
        // replace sends the whole object, so a removed field is really removed.
        let refused = cluster.kubectl("admin", &["replace", "-f", "-"], Some(&to_yaml(&changed))).await;
        assert!(!refused.success, "{}: the apiserver accepted the change", case.rule);
        assert!(
            refused.stderr.contains(case.message),
            "{}: expected {:?} in:\n{}",
            case.rule,
            case.message,
            refused.stderr
        );
        assert_eq!(stored_spec().await, before, "{}: the refused update changed the stored object", case.rule);
    }
}

/// A name the apiserver takes or refuses, and the rule that decides.
struct Name<'a> {
    rule: &'a str,
    file: &'a str,
    name: String,
    /// `spec.requestNamespace` (tenants only): `Some(None)` removes it.
    request_namespace: Option<Option<&'a str>>,
    /// The refusal's message, or `None` when the object is accepted.
    refused_with: Option<&'a str>,
}

#[tokio::test]
async fn names_that_cannot_become_a_namespace_or_a_label_are_refused() {
    let cluster = cluster();
    cluster.install_crds().await;
    // Names are cluster-wide: this run's own letters keep parallel runs apart.
    let namespace = cluster.namespace("cel-names").await;
    let run = namespace.trim_start_matches("cel-names-");
    let long = |length: usize| format!("{run}-{}", "a".repeat(length - run.len() - 1));
    let too_long = "at most 63 characters; pick a name of at most 63 characters";
    let not_a_label =
        "without spec.requestNamespace a Tenant's name becomes its request namespace, which must be a DNS label";
    let bad_namespace = "requestNamespace must be a namespace name: lowercase letters, digits and '-'";
    let cases = [
        Name {
            rule: "a 64-character tenant name is refused",
            file: "tenant-payments.yaml",
            name: long(64),
            request_namespace: Some(None),
            refused_with: Some(too_long),
        },
        Name {
            rule: "a 64-character tenant name is refused even with its own request namespace (a label value)",
            file: "tenant-payments.yaml",
            name: long(64),
            request_namespace: Some(Some("payments")),
            refused_with: Some(too_long),
        },
        Name {
            rule: "a 63-character tenant name that is a DNS label is accepted",
            file: "tenant-payments.yaml",
            name: long(63),
            request_namespace: Some(None),
            refused_with: None,
        },
        Name {
            rule: "a dotted tenant name cannot be its own request namespace",
            file: "tenant-payments.yaml",
            name: format!("team.{run}"),
            request_namespace: Some(None),
            refused_with: Some(not_a_label),
        },
        Name {
            rule: "a dotted tenant name is fine with a request namespace of its own",
            file: "tenant-payments.yaml",
            name: format!("team.{run}"),
            request_namespace: Some(Some("payments")),
            refused_with: None,
        },
        Name {
            rule: "requestNamespace with capitals and underscores is refused",
            file: "tenant-payments.yaml",
            name: format!("tn-{run}"),
            request_namespace: Some(Some("Team_Payments")),
            refused_with: Some(bad_namespace),
        },
        Name {
            rule: "requestNamespace starting with '-' is refused",
            file: "tenant-payments.yaml",
            name: format!("tn-{run}"),
            request_namespace: Some(Some("-payments")),
            refused_with: Some(bad_namespace),
        },
        Name {
            rule: "a 64-character class name is refused",
            file: "environmentclass-preview.yaml",
            name: long(64),
            request_namespace: None,
            refused_with: Some(too_long),
        },
        Name {
            rule: "a 63-character class name is accepted",
            file: "environmentclass-preview.yaml",
            name: long(63),
            request_namespace: None,
            refused_with: None,
        },
    ];
    for case in &cases {
        let mut doc = example_as(case.file, &case.name, &namespace);
        if let Some(request_namespace) = case.request_namespace {
            let spec = doc.get_mut("spec").and_then(Value::as_mapping_mut).expect("a spec");
            match request_namespace {
                Some(value) => spec.insert("requestNamespace".into(), value.into()),
                None => spec.remove("requestNamespace"),
            };
        }
        let created = cluster.kubectl("admin", &["create", "-f", "-"], Some(&to_yaml(&doc))).await;
        let kind = doc["kind"].as_str().unwrap_or_default().to_lowercase();
        match case.refused_with {
            Some(message) => {
                assert!(!created.success, "{}: the apiserver accepted {}", case.rule, to_yaml(&doc));
                assert!(
                    created.stderr.contains(message),
                    "{}: expected {message:?} in:\n{}",
                    case.rule,
                    created.stderr
                );
                let lookup = cluster
                    .kubectl("admin", &["get", &kind, &case.name, "--ignore-not-found", "-o", "name"], None)
                    .await;
                assert!(lookup.success && lookup.stdout.trim().is_empty(), "{}: stored: {}", case.rule, lookup.stdout);
            }
            None => {
                assert!(created.success, "{}: refused: {}", case.rule, created.stderr);
                let deleted = cluster.kubectl("admin", &["delete", &kind, &case.name], None).await;
                assert!(deleted.success, "{}: {}", case.rule, deleted.stderr);
            }
        }
    }
}
