//! The webhook's view of the cluster: reflectors on Berth's kinds, so an admission
//! decision reads memory instead of calling the apiserver that is waiting on it.

use std::sync::Arc;

use futures::StreamExt;
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tokio::task::JoinHandle;

use super::admission::View;
use crate::api::{EnvironmentClass, EnvironmentRequest, Tenant};

/// Stores kept current by watches on Tenants, EnvironmentClasses and EnvironmentRequests.
#[derive(Clone)]
pub struct Caches {
    tenants: Store<Tenant>,
    classes: Store<EnvironmentClass>,
    requests: Store<EnvironmentRequest>,
}

/// Starts a reflector for `api` and returns its store and the task driving it.
fn reflect<K>(api: Api<K>) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!(error = %e, "webhook cache watch failed; retrying");
            }
        });
    (reader, tokio::spawn(stream))
}

impl Caches {
    /// Starts the watches. Call [`Caches::ready`] before serving decisions.
    pub fn start(client: &Client) -> (Caches, Vec<JoinHandle<()>>) {
        let (tenants, t) = reflect(Api::<Tenant>::all(client.clone()));
        let (classes, c) = reflect(Api::<EnvironmentClass>::all(client.clone()));
        let (requests, r) = reflect(Api::<EnvironmentRequest>::all(client.clone()));
        (Caches { tenants, classes, requests }, vec![t, c, r])
    }

    /// Resolves once every store holds its first full list.
    pub async fn ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.tenants.wait_until_ready().await?;
        self.classes.wait_until_ready().await?;
        self.requests.wait_until_ready().await
    }
}

impl View for Caches {
    fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.get(&ObjectRef::new(name))
    }

    fn class(&self, name: &str) -> Option<Arc<EnvironmentClass>> {
        self.classes.get(&ObjectRef::new(name))
    }

    fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.tenants.state()
    }

    fn classes(&self) -> Vec<Arc<EnvironmentClass>> {
        self.classes.state()
    }

    fn requests(&self) -> Vec<Arc<EnvironmentRequest>> {
        self.requests.state()
    }
}
