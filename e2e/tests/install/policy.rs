//! The NetworkPolicy around Berth's own pods and strict mode, as `config/` and the
//! chart render them; no apiserver needed (apply.rs has the apiserver accept them).

use std::collections::BTreeSet;

use berth_e2e::install::{self, the};
use serde_json::Value;

use crate::{chart, config_default, rendering::env_value};

fn pod(objects: &[Value]) -> &Value {
    &the(objects, "Deployment").expect("Deployment")["spec"]["template"]
}

/// The named ports a policy's ingress rules open.
fn ingress_ports(policy: &Value) -> BTreeSet<String> {
    let rules = policy["spec"]["ingress"].as_array().into_iter().flatten();
    rules.flat_map(|r| r["ports"].as_array().into_iter().flatten()).map(|p| p["port"].to_string()).collect()
}

#[test]
fn both_fence_berth_in_with_the_same_policy_on_the_ports_its_pod_names() {
    let (config, chart) = (config_default(), chart(&[]));
    let policies = [the(&config, "NetworkPolicy").expect("config/"), the(&chart, "NetworkPolicy").expect("chart")];
    for (policy, rendered) in policies.iter().zip([&config, &chart]) {
        // It selects the operator's pods, and every port it opens is one they name.
        let labels = &pod(rendered)["metadata"]["labels"];
        assert_eq!(&policy["spec"]["podSelector"]["matchLabels"], labels);
        let named: BTreeSet<String> = pod(rendered)["spec"]["containers"][0]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["name"].to_string())
            .collect();
        assert_eq!(ingress_ports(policy), named, "ingress to exactly admission, the auth API and metrics");
        assert_eq!(policy["spec"]["policyTypes"], serde_json::json!(["Ingress", "Egress"]));
    }
    let spec = |policy: &Value| {
        let mut spec = policy["spec"].clone();
        spec["podSelector"] = Value::Null;
        spec
    };
    assert_eq!(spec(policies[0]), spec(policies[1]), "config/ and the chart police differently");
    // Egress: the apiserver (443, 6443), DNS, git (443, 22) and OTLP, nothing else.
    let egress: BTreeSet<String> = policies[0]["spec"]["egress"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["ports"].as_array().into_iter().flatten())
        .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("")))
        .collect();
    let expected = ["443/TCP", "6443/TCP", "53/UDP", "53/TCP", "22/TCP", "4317/TCP", "4318/TCP"];
    assert_eq!(egress, expected.iter().map(|p| (*p).to_owned()).collect());
}

#[test]
fn the_charts_policy_follows_its_values() {
    let monitoring = r#"networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#;
    let narrowed = chart(&[
        "--set-json",
        monitoring,
        "--set",
        "networkPolicy.authApi.enabled=false",
        "--set",
        "prometheus.url=http://prometheus.monitoring:9090",
        "--set-json",
        r#"networkPolicy.extraEgress=[{"ports":[{"port":2222,"protocol":"TCP"}]}]"#,
    ]);
    let policy = the(&narrowed, "NetworkPolicy").expect("NetworkPolicy");
    assert_eq!(ingress_ports(policy), ["\"http\"", "\"webhook\""].iter().map(|p| (*p).to_owned()).collect());
    let http = policy["spec"]["ingress"].as_array().into_iter().flatten().find(|r| r["ports"][0]["port"] == "http");
    let from = &http.expect("a metrics rule")["from"][0]["namespaceSelector"]["matchLabels"];
    assert_eq!(from["kubernetes.io/metadata.name"], "monitoring");
    let egress = policy["spec"]["egress"].to_string();
    assert!(egress.contains("9090") && egress.contains("2222"), "{egress}");

    let off = chart(&["--set", "networkPolicy.enabled=false"]);
    assert!(!off.iter().any(|o| o["kind"] == "NetworkPolicy"));
}

#[test]
fn both_run_berth_strict_and_the_chart_refuses_what_strict_would() {
    for (name, rendered) in [("config/default", config_default()), ("the chart", chart(&[]))] {
        assert_eq!(env_value(&rendered, "BERTH_STRICT"), "true", "{name}");
        let key = env_value(&rendered, "BERTH_APPROVAL_SIGNING_KEY_FILE");
        assert_eq!(key, "/etc/berth/approvals/approval-signing.pem", "{name}");
        assert_eq!(env_value(&rendered, "BERTH_AUTH_LISTEN"), "0.0.0.0:8444", "{name}");
    }
    let remote = ["--set", "gitops.remote=https://git.example.com/platform/gitops.git"];
    for (values, says) in [
        (["--set", "webhook.enabled=false"], "strict needs webhook.enabled"),
        (["--set", "approvals.secretName="], "strict needs approvals.secretName"),
    ] {
        let refused = install::helm_template("berth", "berth-system", &[&remote[..], &values[..]].concat())
            .expect_err("strict without what it needs");
        assert!(format!("{refused:#}").contains(says), "{refused:#}");
    }
    let dev = chart(&["--set", "strict=false", "--set", "approvals.secretName="]);
    assert_eq!(env_value(&dev, "BERTH_STRICT"), "false");
}
