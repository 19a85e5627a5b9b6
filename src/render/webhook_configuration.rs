//! The Validating- and MutatingWebhookConfiguration that register Berth's webhook
//! with the apiserver. One rendering for the chart, `berth webhook-config`, the demo
//! and the e2e suite.
//!
//! Safety properties (unit-tested): rules match only Berth's own resources, so
//! kube-system and everything else are never sent here; `failurePolicy: Fail` (a
//! Berth object is refused rather than admitted unchecked when the webhook is down);
//! `sideEffects: None`; a short timeout; and a namespace selector that excludes the
//! cluster's system namespaces anyway.

use k8s_openapi::{
    ByteString,
    api::admissionregistration::v1::{
        MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, ValidatingWebhook,
        ValidatingWebhookConfiguration, WebhookClientConfig,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta},
};

use crate::api::Kind;
use crate::policy::references::RESERVED_NAMESPACES;

/// Name of both configurations.
pub const NAME: &str = "berth";

/// How the apiserver reaches the webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A URL, e.g. `https://127.0.0.1:8443` for a webhook outside the cluster.
    Url(String),
    /// A Service in the cluster (the chart's choice).
    Service { namespace: String, name: String, port: i32 },
}

/// Settings of the rendered configurations.
#[derive(Clone, Debug)]
pub struct Registration {
    pub endpoint: Endpoint,
    /// PEM of the CA that signed the webhook's serving certificate.
    pub ca_bundle: Vec<u8>,
    /// Seconds the apiserver waits for a decision (1–30).
    pub timeout_seconds: i32,
}

fn client_config(registration: &Registration, path: &str) -> WebhookClientConfig {
    let ca_bundle = Some(ByteString(registration.ca_bundle.clone()));
    match &registration.endpoint {
        Endpoint::Url(base) => {
            WebhookClientConfig { url: Some(format!("{}{path}", base.trim_end_matches('/'))), ca_bundle, service: None }
        }
        Endpoint::Service { namespace, name, port } => WebhookClientConfig {
            service: Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(path.to_owned()),
                port: Some(*port),
            }),
            ca_bundle,
            url: None,
        },
    }
}

fn rule(kind: Kind, operations: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec!["berth.dev".to_owned()]),
        api_versions: Some(vec!["*".to_owned()]),
        resources: Some(vec![kind.plural().to_owned()]),
        operations: Some(operations.iter().map(|o| (*o).to_owned()).collect()),
        // Namespaced and cluster-scoped alike; status subresources are not matched.
        scope: Some("*".to_owned()),
    }
}

/// Namespaced objects in the system namespaces never reach the webhook.
fn not_system_namespaces() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".to_owned(),
            operator: "NotIn".to_owned(),
            values: Some(
                RESERVED_NAMESPACES.iter().filter(|n| n.starts_with("kube-")).map(|n| (*n).to_owned()).collect(),
            ),
        }]),
        match_labels: None,
    }
}

fn validating_webhook(registration: &Registration, kind: Kind, operations: &[&str]) -> ValidatingWebhook {
    ValidatingWebhook {
        name: format!("{}.validate.berth.dev", kind.plural()),
        admission_review_versions: vec!["v1".to_owned()],
        client_config: client_config(registration, &format!("/validate/{}", kind.plural())),
        failure_policy: Some("Fail".to_owned()),
        match_policy: Some("Equivalent".to_owned()),
        namespace_selector: Some(not_system_namespaces()),
        rules: Some(vec![rule(kind, operations)]),
        side_effects: "None".to_owned(),
        timeout_seconds: Some(registration.timeout_seconds),
        ..Default::default()
    }
}

/// The validating configuration: every Berth kind, with the operations a rule needs.
pub fn validating(registration: &Registration) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta { name: Some(NAME.to_owned()), ..Default::default() },
        webhooks: Some(vec![
            validating_webhook(registration, Kind::EnvironmentRequest, &["CREATE", "UPDATE"]),
            validating_webhook(registration, Kind::Tenant, &["CREATE", "UPDATE", "DELETE"]),
            validating_webhook(registration, Kind::EnvironmentClass, &["DELETE"]),
            validating_webhook(registration, Kind::Rollout, &["CREATE", "UPDATE"]),
            validating_webhook(registration, Kind::Freeze, &["CREATE", "UPDATE"]),
        ]),
    }
}

/// The mutating configuration: records the creator and spec author of
/// EnvironmentRequests and Rollouts (whose approvals' four-eyes rule reads them).
pub fn mutating(registration: &Registration) -> MutatingWebhookConfiguration {
    let webhook = |kind: Kind| MutatingWebhook {
        name: format!("{}.mutate.berth.dev", kind.plural()),
        admission_review_versions: vec!["v1".to_owned()],
        client_config: client_config(registration, &format!("/mutate/{}", kind.plural())),
        failure_policy: Some("Fail".to_owned()),
        match_policy: Some("Equivalent".to_owned()),
        namespace_selector: Some(not_system_namespaces()),
        rules: Some(vec![rule(kind, &["CREATE", "UPDATE"])]),
        side_effects: "None".to_owned(),
        timeout_seconds: Some(registration.timeout_seconds),
        // Another webhook changing the object afterwards cannot drop the record.
        reinvocation_policy: Some("IfNeeded".to_owned()),
        ..Default::default()
    };
    MutatingWebhookConfiguration {
        metadata: ObjectMeta { name: Some(NAME.to_owned()), ..Default::default() },
        webhooks: Some(vec![webhook(Kind::EnvironmentRequest), webhook(Kind::Rollout)]),
    }
}

/// Both configurations as one YAML stream, for `kubectl apply -f -`.
pub fn to_yaml(registration: &Registration) -> Result<String, serde_yaml::Error> {
    let mut validating = serde_yaml::to_value(validating(registration))?;
    let mut mutating = serde_yaml::to_value(mutating(registration))?;
    for (value, kind) in
        [(&mut validating, "ValidatingWebhookConfiguration"), (&mut mutating, "MutatingWebhookConfiguration")]
    {
        if let serde_yaml::Value::Mapping(map) = value {
            map.insert("apiVersion".into(), "admissionregistration.k8s.io/v1".into());
            map.insert("kind".into(), kind.into());
        }
    }
    Ok(format!("{}---\n{}", serde_yaml::to_string(&validating)?, serde_yaml::to_string(&mutating)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration() -> Registration {
        Registration {
            endpoint: Endpoint::Url("https://127.0.0.1:8443/".into()),
            ca_bundle: b"-----BEGIN CERTIFICATE-----".to_vec(),
            timeout_seconds: 5,
        }
    }

    /// What every webhook must get right, whichever configuration it is in.
    type Essentials<'a> =
        (&'a str, Option<&'a str>, &'a str, Option<i32>, &'a Vec<RuleWithOperations>, &'a LabelSelector);

    #[test]
    fn every_webhook_fails_closed_has_no_side_effects_and_matches_only_berth_resources() {
        let validating = validating(&registration());
        let mutating = mutating(&registration());
        let webhooks: Vec<Essentials> = validating
            .webhooks
            .iter()
            .flatten()
            .map(|w| {
                let rules = w.rules.as_ref().expect("rules");
                let selector = w.namespace_selector.as_ref().expect("selector");
                (
                    w.name.as_str(),
                    w.failure_policy.as_deref(),
                    w.side_effects.as_str(),
                    w.timeout_seconds,
                    rules,
                    selector,
                )
            })
            .chain(mutating.webhooks.iter().flatten().map(|w| {
                let rules = w.rules.as_ref().expect("rules");
                let selector = w.namespace_selector.as_ref().expect("selector");
                (
                    w.name.as_str(),
                    w.failure_policy.as_deref(),
                    w.side_effects.as_str(),
                    w.timeout_seconds,
                    rules,
                    selector,
                )
            }))
            .collect();
        assert_eq!(webhooks.len(), 7);
        for (name, failure, side_effects, timeout, rules, selector) in webhooks {
            assert_eq!(failure, Some("Fail"), "{name}");
            assert_eq!(side_effects, "None", "{name}");
            assert_eq!(timeout, Some(5), "{name}");
            for rule in rules {
                assert_eq!(rule.api_groups.as_deref(), Some(&["berth.dev".to_owned()][..]), "{name}");
                let resources = rule.resources.as_ref().expect("resources");
                assert!(resources.iter().all(|r| Kind::from_plural(r).is_some() && !r.contains('/')), "{name}");
            }
            let excluded = &selector.match_expressions.as_ref().expect("expressions")[0];
            assert_eq!(excluded.operator, "NotIn");
            assert!(excluded.values.as_ref().expect("values").contains(&"kube-system".to_owned()), "{name}");
        }
    }

    #[test]
    fn url_endpoints_get_one_path_per_resource_and_the_ca_bundle() {
        let validating = validating(&registration());
        let request = &validating.webhooks.as_ref().expect("webhooks")[0];
        assert_eq!(request.client_config.url.as_deref(), Some("https://127.0.0.1:8443/validate/environmentrequests"));
        assert_eq!(request.client_config.ca_bundle.as_ref().map(|b| b.0.clone()), Some(registration().ca_bundle));
        let service = Registration {
            endpoint: Endpoint::Service { namespace: "berth".into(), name: "berth-webhook".into(), port: 443 },
            ..registration()
        };
        let mutating = mutating(&service);
        let hook = &mutating.webhooks.as_ref().expect("webhooks")[0];
        let reference = hook.client_config.service.as_ref().expect("service");
        assert_eq!(
            (reference.name.as_str(), reference.path.as_deref(), hook.client_config.url.as_ref()),
            ("berth-webhook", Some("/mutate/environmentrequests"), None)
        );
    }

    #[test]
    fn yaml_carries_kind_and_api_version() {
        let yaml = to_yaml(&registration()).expect("yaml");
        assert!(yaml.contains("kind: ValidatingWebhookConfiguration"));
        assert!(yaml.contains("kind: MutatingWebhookConfiguration"));
        assert_eq!(yaml.matches("apiVersion: admissionregistration.k8s.io/v1").count(), 2);
    }
}
