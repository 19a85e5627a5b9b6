//! Deletion waits for Argo CD: once the folder is out of git, a deleted request keeps
//! Berth's finalizer until Argo CD has pruned the environment (its Application gone,
//! and on Berth's own cluster its namespace too), so the request does not vanish
//! while its namespace, quota and app still run, and a request of the same name
//! created next does not meet a namespace being torn down. Without Argo CD nothing
//! prunes, and nothing is waited for.
//!
//! Bounded by [`PATIENCE`] from the deletion: Argo CD down longer than that is an
//! outage people handle, and the finalizer goes with a Warning (Argo CD still prunes
//! once it is back: the folder is gone from git and the Application carries Argo CD's
//! resources finalizer).

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::{EventType, key, patch_status, publish};
use crate::{
    api::{
        EnvironmentRequest,
        conditions::{ConditionStatus, Observation, find, reasons, set_condition, types},
        environment_class::IN_CLUSTER,
    },
    controller::{Context, Error},
};

/// How long a deleted request waits for Argo CD to prune its environment.
pub const PATIENCE: Duration = Duration::from_secs(30 * 60);

/// What is left of a deleted environment, as Berth's watches see it.
#[derive(Clone, Debug, Default)]
pub struct Leftovers<'a> {
    /// The environment's namespace (none when nothing was ever committed).
    pub namespace: Option<&'a str>,
    /// Argo CD's Application for it still exists (`None`: Argo CD is not installed).
    pub application: Option<bool>,
    /// Its namespace still exists, on Berth's own cluster.
    pub namespace_exists: bool,
}

/// Where the prune stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prune {
    /// Nothing left to wait for.
    Done,
    /// Argo CD has yet to prune what the message names.
    Waiting(String),
    /// Waited [`PATIENCE`]; the finalizer goes anyway.
    GaveUp(String),
}

/// Whether the deletion still waits for Argo CD, `waited` after it began.
pub fn prune(left: &Leftovers<'_>, argocd_namespace: &str, waited: Duration) -> Prune {
    let (Some(namespace), Some(application)) = (left.namespace, left.application) else {
        return Prune::Done;
    };
    let what = match (application, left.namespace_exists) {
        (false, false) => return Prune::Done,
        (true, true) => format!("its Application {argocd_namespace}/{namespace} and namespace {namespace} still exist"),
        (true, false) => format!("its Application {argocd_namespace}/{namespace} still exists"),
        (false, true) => format!("namespace {namespace} still exists"),
    };
    if waited >= PATIENCE {
        Prune::GaveUp(format!("Argo CD did not prune {namespace} within {} minutes: {what}", PATIENCE.as_secs() / 60))
    } else {
        Prune::Waiting(format!("removed from git; waiting for Argo CD to prune {namespace}: {what}"))
    }
}

/// Whether the deleted request's status already says it waits for the prune (its
/// folder is out of git then, so it is not removed again).
pub(super) fn awaiting(request: &EnvironmentRequest) -> bool {
    let conditions = request.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    find(conditions, types::READY).is_some_and(|c| c.reason == reasons::AWAITING_PRUNE)
}

/// `Err` while Argo CD has yet to prune the environment, which keeps the finalizer (and
/// retries); status and one event say what it waits for.
pub(super) async fn wait(request: &EnvironmentRequest, ctx: &Context) -> Result<(), Error> {
    let index = ctx.index().await;
    let status = request.status.clone().unwrap_or_default();
    let namespace = status.namespace.as_deref();
    let argocd_namespace = &index.argocd().namespace;
    let exists = |kind: &str, ns: Option<&str>, name: &str| index.live(kind, ns, name).ok().flatten().is_some();
    let left = Leftovers {
        namespace,
        application: index
            .argocd_installed()
            .then(|| namespace.is_some_and(|n| exists("Application", Some(argocd_namespace), n))),
        namespace_exists: request.spec.cluster == IN_CLUSTER && namespace.is_some_and(|n| exists("Namespace", None, n)),
    };
    let since = request.metadata.deletion_timestamp.as_ref().map_or(Timestamp::now(), |t| t.0);
    let waited = Duration::try_from(Timestamp::now().duration_since(since)).unwrap_or_default();
    match prune(&left, argocd_namespace, waited) {
        Prune::Done => Ok(()),
        Prune::GaveUp(message) => {
            publish(ctx, request, EventType::Warning, reasons::PRUNE_TIMED_OUT, message).await;
            Ok(())
        }
        Prune::Waiting(message) => {
            // Status says what is left now; the event comes once.
            let first = !awaiting(request);
            let said = find(&status.conditions, types::READY).map(|c| c.message.as_str());
            if first || said != Some(message.as_str()) {
                let mut new = status.clone();
                let observation = Observation {
                    type_: types::READY,
                    status: ConditionStatus::False,
                    reason: reasons::AWAITING_PRUNE,
                    message: message.clone(),
                    observed_generation: request.metadata.generation,
                };
                set_condition(&mut new.conditions, observation, &Time(Timestamp::now()));
                patch_status(request, ctx, &new).await?;
            }
            if first {
                publish(ctx, request, EventType::Normal, reasons::AWAITING_PRUNE, message.clone()).await;
            }
            Err(Error::AwaitingPrune(format!("{}: {message}", key(request))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(application: Option<bool>, namespace_exists: bool) -> Leftovers<'static> {
        Leftovers { namespace: Some("payments-web-1234"), application, namespace_exists }
    }

    #[test]
    fn a_deletion_waits_until_argo_cd_pruned_the_application_and_the_namespace() {
        let minute = Duration::from_secs(60);
        let Prune::Waiting(both) = prune(&left(Some(true), true), "argocd", minute) else { panic!("must wait") };
        assert!(both.contains("Application argocd/payments-web-1234") && both.contains("namespace"), "{both}");
        // The Application went first; its namespace is still being deleted.
        let Prune::Waiting(namespace) = prune(&left(Some(false), true), "argocd", minute) else { panic!("must wait") };
        assert!(namespace.contains("namespace payments-web-1234 still exists"), "{namespace}");
        assert!(matches!(prune(&left(Some(true), false), "argocd", minute), Prune::Waiting(_)));
        assert_eq!(prune(&left(Some(false), false), "argocd", minute), Prune::Done);
    }

    #[test]
    fn without_argo_cd_or_a_commit_nothing_is_waited_for() {
        assert_eq!(prune(&left(None, true), "argocd", Duration::ZERO), Prune::Done);
        let never_committed = Leftovers { namespace: None, application: Some(true), namespace_exists: true };
        assert_eq!(prune(&never_committed, "argocd", Duration::ZERO), Prune::Done);
    }

    #[test]
    fn after_its_patience_the_deletion_goes_on_and_says_what_is_left() {
        let Prune::GaveUp(message) = prune(&left(Some(true), true), "argocd", PATIENCE) else { panic!("gives up") };
        assert!(message.contains("within 30 minutes") && message.contains("still exist"), "{message}");
    }
}
