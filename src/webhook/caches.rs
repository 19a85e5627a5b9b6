//! The webhook's view of the cluster: the stores the request controller's watches
//! fill, so an admission decision reads memory instead of calling the apiserver
//! that is waiting on it.

use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;

use super::admission::View;
use crate::{
    api::{EnvironmentClass, EnvironmentRequest, Tenant},
    controller::stores::Stores,
};

impl View for Stores {
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
