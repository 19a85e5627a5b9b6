//! Readiness: named checks that components flip, read by `/readyz`.
//!
//! A component (the controllers once their caches synced, the GitOps writer once its clone is
//! ready) asks for its own [`ReadinessCheck`] and sets it; `/readyz` reports ready only when
//! every registered check is. Names are fixed strings chosen in code, so the 503 body tells a
//! person exactly what the replica is still waiting for.

use std::sync::{
    Arc, PoisonError, RwLock,
    atomic::{AtomicBool, Ordering},
};

/// Shared registry of readiness checks; cheap to clone.
///
/// With no check registered the process counts as ready, so register every check before the
/// server starts answering `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<Vec<ReadinessCheck>>>,
}

impl Readiness {
    /// Creates an empty readiness state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the check `name`, initially not ready, and returns its handle. Asking again
    /// for a name already registered returns a handle to the same check.
    pub fn check(&self, name: impl Into<String>) -> ReadinessCheck {
        let name = name.into();
        let mut checks = self.checks.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = checks.iter().find(|check| *check.name == name) {
            return existing.clone();
        }
        let check = ReadinessCheck { name: name.into(), ready: Arc::new(AtomicBool::new(false)) };
        checks.push(check.clone());
        check
    }

    /// Names of the checks that are not ready, in registration order; empty when ready.
    pub fn not_ready(&self) -> Vec<String> {
        let checks = self.checks.read().unwrap_or_else(PoisonError::into_inner);
        checks.iter().filter(|check| !check.is_ready()).map(|check| check.name.to_string()).collect()
    }

    /// Whether every registered check is ready.
    pub fn is_ready(&self) -> bool {
        let checks = self.checks.read().unwrap_or_else(PoisonError::into_inner);
        checks.iter().all(ReadinessCheck::is_ready)
    }
}

/// Handle to one readiness check; cheap to clone, all clones share the state.
#[derive(Debug, Clone)]
pub struct ReadinessCheck {
    name: Arc<str>,
    ready: Arc<AtomicBool>,
}

impl ReadinessCheck {
    /// Marks the check ready (`true`) or not ready (`false`).
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the check is currently ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The name given at registration.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_is() {
        let readiness = Readiness::new();
        assert!(readiness.is_ready(), "no checks registered");

        let caches = readiness.check("caches-synced");
        let writer = readiness.clone().check("gitops-writer");
        assert_eq!(caches.name(), "caches-synced");
        assert!(!readiness.is_ready());
        assert_eq!(readiness.not_ready(), ["caches-synced", "gitops-writer"]);

        caches.set(true);
        assert_eq!(readiness.not_ready(), ["gitops-writer"]);
        writer.set(true);
        assert!(readiness.is_ready());
        assert!(readiness.not_ready().is_empty());

        writer.set(false);
        assert_eq!(readiness.not_ready(), ["gitops-writer"]);
    }

    #[test]
    fn same_name_shares_state() {
        let readiness = Readiness::new();
        let first = readiness.check("caches-synced");
        let second = readiness.check("caches-synced");
        second.set(true);
        assert!(first.is_ready());
        assert!(readiness.is_ready());
        assert_eq!(readiness.checks.read().map(|c| c.len()).unwrap_or_default(), 1);
    }
}
