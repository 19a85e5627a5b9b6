//! The feeds of the controllers: every change the watches deliver, one feed per
//! controller that reacts to it (the request controller reads all of them, the tenant
//! and class controllers their own kind).

use k8s_openapi::api::{
    core::v1::{LimitRange, Namespace, ResourceQuota},
    networking::v1::NetworkPolicy,
    rbac::v1::RoleBinding,
};
use kube::api::DynamicObject;

use super::{Feed, Index};
use crate::api::{EnvironmentClass, EnvironmentRequest, Freeze, Rollout, Tenant};

pub struct Feeds {
    pub requests: Feed<EnvironmentRequest>,
    pub classes: Feed<EnvironmentClass>,
    pub tenants: Feed<Tenant>,
    pub namespaces: Feed<Namespace>,
    pub quotas: Feed<ResourceQuota>,
    pub limits: Feed<LimitRange>,
    pub network_policies: Feed<NetworkPolicy>,
    pub bindings: Feed<RoleBinding>,
    pub applications: Feed<DynamicObject>,
    /// Tenants again, for the Tenant controller.
    pub tenant_controller: Feed<Tenant>,
    /// Classes again, for the EnvironmentClass controller.
    pub class_controller: Feed<EnvironmentClass>,
    pub rollouts: Feed<Rollout>,
    /// Requests again, for the Rollout controller (their status says how a batch fares).
    pub rollout_requests: Feed<EnvironmentRequest>,
    /// Cluster-wide freezes, for the Rollout controller (a freeze lifted early).
    pub rollout_freezes: Feed<Freeze>,
    /// Cluster-wide freezes, for the EnvironmentClass controller.
    pub class_freezes: Feed<Freeze>,
}

impl Index {
    /// Subscribes the controllers' feeds: every change from now on. Subscribed before
    /// [`Index::start`], they carry the first list too; a standby subscribes when it is
    /// elected (what it missed, its controllers reconcile once: `takeover`).
    pub fn feeds(&self) -> Feeds {
        Feeds {
            requests: self.requests.subscribe(),
            classes: self.classes.subscribe(),
            tenants: self.tenants.subscribe(),
            namespaces: self.namespaces.subscribe(),
            quotas: self.quotas.subscribe(),
            limits: self.limits.subscribe(),
            network_policies: self.network_policies.subscribe(),
            bindings: self.bindings.subscribe(),
            applications: self.applications.subscribe(),
            tenant_controller: self.tenants.subscribe(),
            class_controller: self.classes.subscribe(),
            rollouts: self.rollouts.subscribe(),
            rollout_requests: self.requests.subscribe(),
            rollout_freezes: self.freezes.subscribe(),
            class_freezes: self.freezes.subscribe(),
        }
    }
}
