//! EnvironmentClass controller: validates the class into status and counts its
//! environments. Re-rendering a changed class's environments is the request
//! controller's job (it watches classes); the GitOps writer batches those renders
//! into one commit.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{Api, ResourceExt, runtime::controller::Action};

use super::{Context, Error, request};
use crate::api::{
    EnvironmentClass, EnvironmentRequest, Tenant,
    conditions::{ConditionStatus, Observation, reasons, set_condition, types},
    environment_class::EnvironmentClassStatus,
    environment_request::Phase,
};

/// Problems the CRD's CEL rules cannot see; empty when the class is usable.
pub fn problems(class: &EnvironmentClass) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(ttl) = &class.spec.ttl {
        for (field, value) in [("ttl.default", &ttl.default), ("ttl.max", &ttl.max)] {
            if let Err(e) = value.parse() {
                problems.push(format!("{field}: {e}"));
            }
        }
    }
    if class.spec.quota.is_empty() {
        problems.push("quota is empty: environments would have no ResourceQuota limits".to_owned());
    }
    problems
}

/// Re-renders every provisioned environment of a changed class at once, so the GitOps
/// writer batches them into one commit. Their request reconciles wait for this (they
/// see the class status lagging its generation) and then find nothing left to commit.
async fn rerender(class: &EnvironmentClass, requests: &[Arc<EnvironmentRequest>], ctx: &Context) -> Result<(), Error> {
    let tenants: Api<Tenant> = Api::all(ctx.client.clone());
    let mut renders = Vec::new();
    // A class that now needs approval keeps its environments as they are: nothing
    // unapproved is (re)provisioned.
    if class.spec.approval.required {
        return Ok(());
    }
    let expired = |r: &EnvironmentRequest| {
        r.status.as_ref().and_then(|s| s.phase) == Some(crate::api::environment_request::Phase::Expired)
    };
    for request in requests
        .iter()
        .filter(|r| r.spec.class == class.name_any() && crate::policy::budget::is_provisioned(r) && !expired(r))
    {
        let Some(tenant) = tenants
            .get_opt(&request.spec.tenant)
            .await
            .map_err(|source| Error::Read { what: format!("Tenant {}", request.spec.tenant), source })?
        else {
            continue;
        };
        renders.push(async move { request::commit_environment(request, class, &tenant, ctx).await });
    }
    let count = renders.len();
    for result in futures::future::join_all(renders).await {
        // A request the class no longer allows reports that itself, from its own reconcile.
        let _ = result?;
    }
    if count > 0 {
        tracing::info!(class = %class.name_any(), environments = count, "re-rendered the class's environments");
    }
    Ok(())
}

pub async fn reconcile(class: Arc<EnvironmentClass>, ctx: Arc<Context>) -> Result<Action, Error> {
    let requests = ctx.all_requests().await?;
    if class.status.as_ref().and_then(|s| s.observed_generation) != class.metadata.generation {
        rerender(&class, &requests, &ctx).await?;
    }
    let environments = requests
        .iter()
        .filter(|r| r.spec.class == class.name_any())
        .filter(|r| matches!(r.status.as_ref().and_then(|s| s.phase), Some(Phase::Provisioning | Phase::Ready)))
        .count();
    let mut status: EnvironmentClassStatus = class.status.clone().unwrap_or_default();
    status.observed_generation = class.metadata.generation;
    status.environments = u32::try_from(environments).unwrap_or(u32::MAX);
    let problems = problems(&class);
    let (state, reason, message) = if problems.is_empty() {
        (ConditionStatus::True, reasons::VALID, "the class can be requested".to_owned())
    } else {
        (ConditionStatus::False, reasons::INVALID, problems.join("; "))
    };
    let observation = Observation {
        type_: types::VALID,
        status: state,
        reason,
        message,
        observed_generation: class.metadata.generation,
    };
    set_condition(&mut status.conditions, observation, &Time(Timestamp::now()));
    if class.status.as_ref() != Some(&status) {
        super::apply_status(&Api::<EnvironmentClass>::all(ctx.client.clone()), class.as_ref(), &status).await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}
