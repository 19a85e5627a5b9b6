//! Step 1 of the pipeline: what a request refers to, read from the index (a cluster
//! object the index does not hold yet is read from the API: an index can lag an
//! object created a moment ago, and "missing" would fail the request).

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Api, Resource, ResourceExt};

use crate::{
    api::{
        EnvironmentClass, EnvironmentRequest, Tenant,
        conditions::{find, reasons, types},
    },
    controller::{Context, Error},
    index::Store,
};

/// The objects a request names, as they are now.
#[derive(Clone, Debug, Default)]
pub struct Dereferenced {
    pub tenant: Option<Arc<Tenant>>,
    pub class: Option<Arc<EnvironmentClass>>,
    /// The tenants whose request namespace is the request's namespace.
    pub claimants: Vec<String>,
}

impl Dereferenced {
    /// Whether the class changed and the class controller has not yet re-rendered its
    /// environments (its status lags its generation).
    pub fn class_change_pending(&self) -> bool {
        self.class
            .as_ref()
            .is_some_and(|c| c.status.as_ref().and_then(|s| s.observed_generation) != c.metadata.generation)
    }

    /// Whether a freeze window holds the class's pending re-render (its `Rendered`
    /// condition says `Frozen`).
    pub fn class_change_frozen(&self) -> bool {
        self.class_rendered().is_some_and(|c| c.reason == reasons::FROZEN)
    }

    /// What the class's `Rendered` condition says, if it says anything.
    pub fn class_rendered_message(&self) -> Option<&str> {
        self.class_rendered().map(|c| c.message.as_str()).filter(|m| !m.is_empty())
    }

    fn class_rendered(&self) -> Option<&Condition> {
        let status = self.class.as_ref()?.status.as_ref()?;
        find(&status.conditions, types::RENDERED)
    }
}

pub async fn dereference(request: &EnvironmentRequest, ctx: &Context) -> Result<Dereferenced, Error> {
    let index = ctx.index().await;
    let spec = &request.spec;
    let class =
        cached_or_read(index.classes.store(), Api::all(ctx.client.clone()), &spec.class, "EnvironmentClass").await?;
    let tenant = cached_or_read(index.tenants.store(), Api::all(ctx.client.clone()), &spec.tenant, "Tenant").await?;
    let claimants = index.claimants(&request.namespace().unwrap_or_default());
    Ok(Dereferenced { tenant, class, claimants })
}

/// A cluster-scoped object from the index; on a miss, from the API.
async fn cached_or_read<K>(store: &Store<K>, api: Api<K>, name: &str, kind: &str) -> Result<Option<Arc<K>>, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if let Some(found) = store.get(&kube::runtime::reflector::ObjectRef::new(name)) {
        return Ok(Some(found));
    }
    let read = api.get_opt(name).await.map_err(|source| Error::Read { what: format!("{kind} {name}"), source })?;
    Ok(read.map(Arc::new))
}
