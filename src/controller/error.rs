//! What can go wrong in a reconcile, and whether retrying can help.

use crate::gitops;

/// A reconcile failure. Problems with the object itself (bad class, over budget)
/// are not errors: they go to status, and the reconcile succeeds.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {what}: {source}")]
    Read { what: String, source: kube::Error },
    #[error("cannot apply {what}: {source}")]
    Apply { what: String, source: kube::Error },
    #[error("cannot update the status of {what}: {source}")]
    Status { what: String, source: kube::Error },
    #[error("cannot commit {path}: {source}")]
    Commit { path: String, source: gitops::Error },
    #[error("cannot remove {path} from git: {source}")]
    Remove { path: String, source: gitops::Error },
    #[error("cannot list the folders in the GitOps repository: {source}")]
    Inventory { source: gitops::Error },
    #[error("{0}; waiting for it before deciding about folders in git")]
    InventoryNotLoaded(#[from] super::inventory::NotLoaded),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("object has no {0}")]
    Incomplete(&'static str),
    /// Not a failure: a deleted request keeps its finalizer until Argo CD pruned it.
    #[error("{0}")]
    AwaitingPrune(String),
    /// An environment's class changed and its re-render has not gone out (a freeze may
    /// hold it): nothing else renders the environment from the new class first.
    #[error("{0}")]
    ClassChangeWaits(String),
}

impl Error {
    /// A deleted request waiting for Argo CD to prune it: expected, retried soon, and
    /// neither logged nor counted as a failure.
    pub fn is_awaiting_prune(&self) -> bool {
        match self {
            Self::AwaitingPrune(_) => true,
            Self::Finalizer(inner) => {
                matches!(inner.as_ref(), kube::runtime::finalizer::Error::CleanupFailed(e) if e.is_awaiting_prune())
            }
            _ => false,
        }
    }

    /// Whether the git remote refused Berth's credentials (wrong, expired or rotated
    /// token or key): permanent until the Secret changes.
    pub fn is_refused_credentials(&self) -> bool {
        match self {
            Self::Commit { source, .. } | Self::Remove { source, .. } | Self::Inventory { source } => {
                source.failure_kind() == Some(gitops::FailureKind::Auth)
            }
            Self::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.is_refused_credentials()
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether trying again later can succeed (network, conflicts, the git remote).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Read { source, .. } | Self::Apply { source, .. } | Self::Status { source, .. } => {
                !matches!(source, kube::Error::Api(status) if status.code == 400 || status.code == 422)
            }
            Self::Commit { source, .. } | Self::Remove { source, .. } | Self::Inventory { source } => {
                source.is_transient()
            }
            Self::InventoryNotLoaded(_) | Self::AwaitingPrune(_) | Self::ClassChangeWaits(_) => true,
            Self::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.is_transient()
                }
                _ => true,
            },
            Self::Incomplete(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deletion_waiting_for_argo_cd_is_retried_and_no_failure() {
        let waiting = || Error::AwaitingPrune("payments/web: waiting for Argo CD".to_owned());
        let through_finalizer = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::CleanupFailed(waiting())));
        assert!(through_finalizer.is_awaiting_prune() && through_finalizer.is_transient());
        assert!(waiting().is_awaiting_prune());
        assert!(!Error::Incomplete("namespace").is_awaiting_prune());
    }

    #[test]
    fn a_remote_refusing_the_credentials_is_permanent_but_told_apart_from_other_failures() {
        let failed = |kind| Error::Commit {
            path: "payments/web".to_owned(),
            source: gitops::Error::Git {
                remote: "https://git.example.com/gitops.git".to_owned(),
                branch: "main".to_owned(),
                failure: gitops::GitFailure { op: gitops::GitOp::Fetch, kind, message: "401".to_owned() },
            },
        };
        let refused = failed(gitops::FailureKind::Auth);
        assert!(refused.is_refused_credentials() && !refused.is_transient());
        // As the request controller reports it: through its finalizer.
        let applying = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(refused)));
        assert!(applying.is_refused_credentials());
        let down = failed(gitops::FailureKind::Network);
        assert!(!down.is_refused_credentials() && down.is_transient());
        assert!(!failed(gitops::FailureKind::Rejected).is_refused_credentials());
    }
}
