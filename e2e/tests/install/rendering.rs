//! What `config/` and the chart render, compared with each other and with Berth
//! itself; no apiserver needed.

use std::collections::BTreeSet;

use berth::render::webhook_configuration::{self as configuration, Endpoint, Registration};
use berth_e2e::install::{self, key, the};
use serde_json::Value;

use crate::{chart, config_default};

/// The object `kind namespace/name` (as [`key`] writes it) in `objects`.
fn find<'a>(objects: &'a [Value], wanted: &str) -> &'a Value {
    objects.iter().find(|o| key(o) == wanted).unwrap_or_else(|| panic!("no {wanted}"))
}

#[test]
fn the_chart_and_config_install_the_same_objects_with_the_same_rbac() {
    let config = config_default();
    let chart = chart(&[]);
    // The chart leaves the namespace to `helm install --create-namespace`.
    let keys = |objects: &[Value]| -> BTreeSet<String> {
        objects.iter().filter(|o| o["kind"] != "Namespace").map(key).collect()
    };
    assert_eq!(keys(&config), keys(&chart), "config/default and the chart (release berth in berth-system) differ");

    // Every role and binding, the ClusterRole and the namespaced ones (the leader
    // Lease in berth-system, Argo CD's Applications in argocd), holds the same.
    let rbac = ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];
    let expected = [
        "ClusterRole /berth",
        "ClusterRoleBinding /berth",
        "Role berth-system/berth-leader-election",
        "RoleBinding berth-system/berth-leader-election",
        "Role argocd/berth-applications",
        "RoleBinding argocd/berth-applications",
        // The roles for people (config/roles, the chart's roles.yaml).
        "ClusterRole /berth-viewer",
        "ClusterRole /berth-edit",
        "ClusterRole /berth-requester",
        "ClusterRole /berth-platform",
        "ClusterRole /berth-admin",
        "ClusterRole /berth-approver",
    ];
    let found: BTreeSet<String> = config.iter().filter(|o| rbac.iter().any(|k| o["kind"] == *k)).map(key).collect();
    assert_eq!(found, expected.iter().map(|k| (*k).to_owned()).collect(), "config/default's RBAC");
    for wanted in expected {
        let (a, b) = (find(&config, wanted), find(&chart, wanted));
        if wanted.starts_with("ClusterRole ") || wanted.starts_with("Role ") {
            assert_eq!(a["rules"], b["rules"], "{wanted}: rules differ");
            assert_eq!(a["aggregationRule"], b["aggregationRule"], "{wanted}: aggregationRule differs");
            assert_eq!(aggregation_labels(a), aggregation_labels(b), "{wanted}: aggregation labels differ");
        } else {
            assert_eq!((&a["roleRef"], &a["subjects"]), (&b["roleRef"], &b["subjects"]), "{wanted} differs");
        }
    }

    // The same hardened pod: security contexts, probes, ports, mounts, and every
    // setting config/ passes is one the chart passes too.
    let pod = |objects: &[Value]| the(objects, "Deployment").expect("Deployment")["spec"]["template"]["spec"].clone();
    let (a, b) = (pod(&config), pod(&chart));
    assert_eq!(a["securityContext"], b["securityContext"]);
    let (a, b) = (&a["containers"][0], &b["containers"][0]);
    for field in ["args", "ports", "securityContext", "startupProbe", "livenessProbe", "readinessProbe", "volumeMounts"]
    {
        assert_eq!(a[field], b[field], "container {field} differs");
    }
    let names = |container: &Value| -> BTreeSet<String> {
        container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str().map(str::to_owned))
            .collect()
    };
    let missing: Vec<_> = names(a).difference(&names(b)).cloned().collect();
    assert!(missing.is_empty(), "the chart does not set {missing:?}");
}

/// An object's `…aggregate-to-…` labels: which aggregated roles it is part of.
fn aggregation_labels(object: &Value) -> BTreeSet<(String, String)> {
    let labels = object["metadata"]["labels"].as_object().into_iter().flatten();
    labels
        .filter(|(k, _)| k.contains("/aggregate-to-"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

#[test]
fn the_roles_for_people_aggregate_as_documented_and_can_be_left_out() {
    let config = config_default();
    let labels = |name: &str| aggregation_labels(find(&config, &format!("ClusterRole /{name}")));
    let set = |pairs: &[&str]| -> BTreeSet<(String, String)> {
        pairs.iter().map(|k| ((*k).to_owned(), "true".to_owned())).collect()
    };
    let k8s = |role: &str| format!("rbac.authorization.k8s.io/aggregate-to-{role}");
    assert_eq!(labels("berth-viewer"), set(&[&k8s("view"), "berth.dev/aggregate-to-requester"]));
    assert_eq!(labels("berth-edit"), set(&[&k8s("edit"), "berth.dev/aggregate-to-requester"]));
    assert_eq!(labels("berth-requester"), set(&["berth.dev/aggregate-to-admin"]));
    assert_eq!(labels("berth-platform"), set(&["berth.dev/aggregate-to-admin"]));
    // Approving is in no aggregation, and berth-admin in none of Kubernetes' roles.
    assert_eq!(labels("berth-approver"), set(&[]));
    assert_eq!(labels("berth-admin"), set(&[]));
    let approver = find(&config, "ClusterRole /berth-approver");
    let rule =
        serde_json::json!([{"apiGroups": ["berth.dev"], "resources": ["environmentclasses"], "verbs": ["approve"]}]);
    assert_eq!(approver["rules"], rule);
    // Only the leaves carry rules; no role for people touches a status subresource.
    for name in ["berth-requester", "berth-admin"] {
        let role = find(&config, &format!("ClusterRole /{name}"));
        assert!(role["rules"].is_null(), "{name} is aggregated: the apiserver fills its rules");
    }
    let people = ["berth-viewer", "berth-edit", "berth-platform", "berth-approver"];
    for name in people {
        let rules = find(&config, &format!("ClusterRole /{name}"))["rules"].to_string();
        assert!(!rules.contains('/') && !rules.contains('*'), "{name}: {rules}");
    }

    let without = chart(&["--set", "roles.create=false"]);
    let left: Vec<String> =
        without.iter().filter(|o| o["kind"] == "ClusterRole" && key(o) != "ClusterRole /berth").map(key).collect();
    assert!(left.is_empty(), "roles.create=false still installs {left:?}");
}

/// The value a Deployment gives the environment variable `name`.
pub fn env_value(objects: &[Value], name: &str) -> Value {
    let container = &the(objects, "Deployment").expect("Deployment")["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().into_iter().flatten().find(|e| e["name"] == name);
    env.unwrap_or_else(|| panic!("no {name}"))["value"].clone()
}

#[test]
fn the_chart_turns_refresh_after_push_on_or_off() {
    assert_eq!(env_value(&chart(&[]), "BERTH_ARGOCD_REFRESH"), "true");
    assert_eq!(env_value(&chart(&["--set", "argocd.refresh=false"]), "BERTH_ARGOCD_REFRESH"), "false");
}

#[test]
fn applications_are_watchable_only_in_the_namespace_berth_watches_them_in() {
    let gitops = chart(&["--set", "argocd.namespace=gitops"]);
    for (name, rendered) in [("config/default", config_default()), ("the chart", chart(&[])), ("gitops", gitops)] {
        let namespace = env_value(&rendered, "BERTH_ARGOCD_NAMESPACE");
        let namespace = namespace.as_str().unwrap_or_else(|| panic!("{name}: BERTH_ARGOCD_NAMESPACE"));
        let role = find(&rendered, &format!("Role {namespace}/berth-applications"));
        let rule = serde_json::json!([{"apiGroups": ["argoproj.io"], "resources": ["applications"], "verbs": ["list", "watch", "patch"]}]);
        assert_eq!(role["rules"], rule, "{name}");
        let binding = find(&rendered, &format!("RoleBinding {namespace}/berth-applications"));
        assert_eq!(binding["roleRef"]["name"], "berth-applications", "{name}");
        let subject = serde_json::json!([{"kind": "ServiceAccount", "name": "berth", "namespace": "berth-system"}]);
        assert_eq!(binding["subjects"], subject, "{name}");
        // Nowhere else: no other role grants anything in argoproj.io (or every group).
        let grants_argo =
            |rule: &Value| rule["apiGroups"].as_array().into_iter().flatten().any(|g| g == "argoproj.io" || g == "*");
        let elsewhere: Vec<String> = rendered
            .iter()
            .filter(|o| (o["kind"] == "ClusterRole" || o["kind"] == "Role") && key(o) != key(role))
            .filter(|o| o["rules"].as_array().into_iter().flatten().any(grants_argo))
            .map(key)
            .collect();
        assert!(elsewhere.is_empty(), "{name}: {elsewhere:?} also grant on argoproj.io");
    }
}

/// The webhooks of a rendering, without the caBundle cert-manager fills in.
fn webhooks(objects: &[Value], kind: &str) -> Value {
    let mut webhooks = the(objects, kind).unwrap_or_else(|e| panic!("{e:#}"))["webhooks"].clone();
    for webhook in webhooks.as_array_mut().into_iter().flatten() {
        if let Some(config) = webhook["clientConfig"].as_object_mut() {
            config.remove("caBundle");
        }
    }
    webhooks
}

#[test]
fn both_register_exactly_the_webhooks_berth_serves() {
    let registration = Registration {
        endpoint: Endpoint::Service { namespace: "berth-system".into(), name: "berth".into(), port: 443 },
        ca_bundle: Vec::new(),
        timeout_seconds: 5,
    };
    let berth = [
        serde_json::to_value(configuration::validating(&registration)).expect("serializes"),
        serde_json::to_value(configuration::mutating(&registration)).expect("serializes"),
    ];
    let berth: Vec<Value> = berth
        .into_iter()
        .zip(["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"])
        .map(|(mut object, kind)| {
            object["kind"] = kind.into();
            object
        })
        .collect();
    for (name, rendered) in [("config/default", config_default()), ("the chart", chart(&[]))] {
        for kind in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
            assert_eq!(webhooks(&rendered, kind), webhooks(&berth, kind), "{name}: {kind} is not what Berth registers");
            let annotations = &the(&rendered, kind).expect(kind)["metadata"]["annotations"];
            assert_eq!(annotations["cert-manager.io/inject-ca-from"], "berth-system/berth-webhook", "{name}: {kind}");
        }
        // The certificate cert-manager issues is for the Service the webhooks name.
        let certificate = rendered
            .iter()
            .find(|o| o["kind"] == "Certificate" && o["metadata"]["name"] == "berth-webhook")
            .unwrap_or_else(|| panic!("{name}: no Certificate berth-webhook"));
        assert_eq!(certificate["spec"]["dnsNames"][0], "berth.berth-system.svc", "{name}");
        assert_eq!(certificate["spec"]["secretName"], "berth-webhook-tls", "{name}");
    }

    // Without cert-manager the chart takes the CA itself; without the webhook it
    // registers nothing and runs none.
    let ca = berth::cli::dev::self_signed(&["berth.berth-system.svc"]).expect("certificate").ca_pem;
    let manual = chart(&["--set", "webhook.certManager.enabled=false", "--set", &format!("webhook.caBundle={ca}")]);
    assert!(!manual.iter().any(|o| o["apiVersion"].as_str().is_some_and(|v| v.starts_with("cert-manager.io"))));
    let bundle =
        &the(&manual, "ValidatingWebhookConfiguration").expect("webhooks")["webhooks"][0]["clientConfig"]["caBundle"];
    use base64::{Engine, engine::general_purpose::STANDARD};
    assert_eq!(STANDARD.decode(bundle.as_str().unwrap_or_default()).ok(), Some(ca.into_bytes()));
    let off = chart(&["--set", "webhook.enabled=false", "--set", "strict=false"]);
    assert!(!off.iter().any(|o| o["kind"].as_str().is_some_and(|k| k.ends_with("WebhookConfiguration"))));
    let env =
        the(&off, "Deployment").expect("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(!env.contains("BERTH_WEBHOOK_CERT_FILE"), "webhook off still configures TLS: {env}");
}

/// Every environment variable a Deployment sets.
fn env_names(objects: &[Value]) -> BTreeSet<String> {
    let container = &the(objects, "Deployment").expect("Deployment")["spec"]["template"]["spec"]["containers"][0];
    container["env"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect()
}

#[test]
fn every_setting_the_manifests_pass_is_one_berth_reads() {
    let binary = berth_e2e::operator::berth_binary().unwrap_or_else(|e| panic!("{e:#}"));
    let help = std::process::Command::new(binary).args(["run", "--help"]).output().expect("berth run --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    // What `berth run` reads outside its flags (POD_NAME, RUST_LOG, BERTH_LOG_FORMAT):
    // named as a string literal somewhere in src/.
    let mut sources = String::new();
    let mut dirs = vec![berth_e2e::repo_root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let ssh = ["--set", "gitops.credentials.type=ssh", "--set", "gitops.credentials.sshPassphrase=true"];
    let approvals = ["--set", "approvals.secretName=berth-approvals"];
    let renderings = [config_default(), chart(&[]), chart(&ssh), chart(&approvals)];
    for name in renderings.iter().flat_map(|r| env_names(r)) {
        let known = help.contains(&format!("[env: {name}=")) || sources.contains(&format!("\"{name}\""));
        assert!(known, "the manifests set {name}, which berth run does not read");
    }
}

#[test]
fn helm_lint_passes_for_each_way_to_install() {
    let remote = "gitops.remote=https://git.example.com/platform/gitops.git";
    let ca = berth::cli::dev::self_signed(&["berth.berth-system.svc"]).expect("certificate").ca_pem;
    let manual_ca = format!("webhook.caBundle={ca}");
    let variants: [&[&str]; 4] = [
        &[],
        &["--set", "webhook.enabled=false", "--set", "strict=false", "--set", "gitops.credentials.type=none"],
        &["--set", "webhook.certManager.enabled=false", "--set", &manual_ca],
        &["--set", "gitops.credentials.type=ssh", "--set", "approvals.secretName=berth-approvals"],
    ];
    for variant in variants {
        let mut args = vec!["--set", remote];
        args.extend_from_slice(variant);
        install::helm_lint(&args).unwrap_or_else(|e| panic!("helm lint {variant:?}: {e:#}"));
    }
    // A missing remote is a mistake helm reports at once, not a pod that never gets
    // ready. (`helm lint` lets `required` pass; rendering does not.)
    let missing = install::helm_template("berth", "berth-system", &[]).expect_err("a chart without gitops.remote");
    assert!(format!("{missing:#}").contains("gitops.remote is required"), "{missing:#}");
}
