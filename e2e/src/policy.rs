//! ValidatingAdmissionPolicies the e2e suites use to make the apiserver refuse
//! something on purpose (a namespace, a status write), as a cluster's own policy would.

/// What a [`denying_policy`] refuses.
pub struct Refusal<'a> {
    /// The policy's and its binding's name.
    pub name: &'a str,
    /// `apiGroups` entry (`''` for the core group).
    pub group: &'a str,
    /// `resources` entry, e.g. `namespaces` or `environmentrequests/status`.
    pub resource: &'a str,
    /// `operations` entry, e.g. `CREATE`.
    pub operation: &'a str,
    /// CEL that must hold for the request to pass (`'false'` refuses every one).
    pub expression: &'a str,
    /// What the apiserver answers when it refuses.
    pub message: &'a str,
    /// Only in this namespace, or cluster-wide.
    pub namespace: Option<&'a str>,
}

/// A ValidatingAdmissionPolicy and its binding (action Deny) as YAML for `kubectl apply`.
pub fn denying_policy(refusal: &Refusal<'_>) -> String {
    let Refusal { name, group, resource, operation, expression, message, namespace } = refusal;
    let scope = namespace
        .map(|ns| {
            format!(
                "\n  matchResources:\n    namespaceSelector:\n      matchLabels: {{kubernetes.io/metadata.name: {ns}}}"
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - {{apiGroups: ['{group}'], apiVersions: ['*'], operations: [{operation}], resources: [{resource}]}}
  validations:
    - expression: {expression:?}
      message: {message:?}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  validationActions: [Deny]{scope}
"
    )
}
