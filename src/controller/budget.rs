//! The controller's budget guard: one decision at a time, over the requests in
//! memory, remembering whom it admitted.
//!
//! [`policy::budget`](crate::policy::budget) decides from a set of requests. Two
//! things make that set trustworthy here without listing the namespace for every
//! new request (a list that grows with the tenant, so a burst cost O(n²)):
//!
//! - The store is filled by the watch that triggers reconciles, and a watch delivers
//!   in etcd order, so it holds every request created before the one being decided.
//! - A request this process admitted counts as provisioned from that moment, until
//!   the store shows its committed status. Without that, two requests created in the
//!   same second could both be admitted: the later-created one, first by name, saw
//!   the earlier one as merely pending and ordered itself ahead of it.
//!
//! Decisions hold a lock, so concurrent reconciles see each other's admissions.
//! This assumes one Berth replica deciding at a time.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, PoisonError},
};

use kube::ResourceExt;

use crate::{
    api::{EnvironmentClass, EnvironmentRequest, Tenant},
    policy::budget::{self, BudgetExceeded, is_provisioned},
};

/// Requests admitted by this process that the store does not yet show provisioned.
#[derive(Default)]
pub struct BudgetGuard {
    /// Request uid → namespace.
    admitted: Mutex<HashMap<String, String>>,
}

impl BudgetGuard {
    /// Whether `request` fits `tenant`'s budget on top of the other `requests` (any
    /// namespaces; those outside the request's are ignored) and what this guard
    /// admitted before. Admitting it records it.
    pub fn decide<'a>(
        &self,
        request: &'a EnvironmentRequest,
        tenant: &Tenant,
        requests: impl IntoIterator<Item = &'a EnvironmentRequest>,
        classes: impl IntoIterator<Item = &'a EnvironmentClass>,
    ) -> Result<(), BudgetExceeded> {
        let namespace = request.namespace().unwrap_or_default();
        let name = request.name_any();
        let neighbours: Vec<&EnvironmentRequest> = requests
            .into_iter()
            .filter(|r| {
                r.metadata.namespace.as_deref() == Some(namespace.as_str())
                    && r.metadata.name.as_deref() != Some(name.as_str())
            })
            .chain(std::iter::once(request))
            .collect();
        let terms = budget::class_terms(classes);

        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        // What the store shows provisioned (or going away) needs no remembering.
        let settled: HashSet<&str> = neighbours
            .iter()
            .filter(|r| is_provisioned(r) || r.metadata.deletion_timestamp.is_some())
            .filter_map(|r| r.metadata.uid.as_deref())
            .collect();
        admitted.retain(|uid, ns| *ns != namespace || !settled.contains(uid.as_str()));

        let uids: HashMap<String, &str> =
            neighbours.iter().filter_map(|r| Some((r.name_any(), r.metadata.uid.as_deref()?))).collect();
        let mut claims = budget::claims(&tenant.name_any(), neighbours.iter().copied(), &terms, &name);
        for claim in &mut claims {
            if uids.get(&claim.name).is_some_and(|uid| admitted.contains_key(*uid)) {
                claim.provisioned = true;
            }
        }
        let decision = budget::decide_for(&tenant.name_any(), &tenant.spec.budget, &claims, &name)
            .unwrap_or(Err(BudgetExceeded::NotListed { request: name }));
        if decision.is_ok()
            && let Some(uid) = request.metadata.uid.as_deref()
            && !is_provisioned(request)
        {
            admitted.insert(uid.to_owned(), namespace);
        }
        decision
    }

    /// Forgets a request that is going away (its finalizer ran).
    pub fn forget(&self, request: &EnvironmentRequest) {
        if let Some(uid) = request.metadata.uid.as_deref() {
            self.admitted.lock().unwrap_or_else(PoisonError::into_inner).remove(uid);
        }
    }

    /// How many admissions are remembered (for tests).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.admitted.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

    use super::*;
    use crate::api::environment_request::{EnvironmentRequestStatus, GitOpsStatus, Phase};

    const NS: &str = "payments";

    fn class() -> EnvironmentClass {
        serde_yaml::from_str("metadata: {name: preview}\nspec: {estimatedMonthlyCostUSD: 400}").expect("class")
    }

    fn tenant(budget: &str) -> Tenant {
        serde_yaml::from_str(&format!(
            "metadata: {{name: payments}}\nspec: {{owners: [{{kind: User, name: alice}}], budget: {budget}}}"
        ))
        .expect("tenant")
    }

    /// A pending request of the `preview` class created at `second`.
    fn request(name: &str, second: i64) -> EnvironmentRequest {
        let mut request: EnvironmentRequest = serde_yaml::from_str(&format!(
            "metadata: {{name: {name}, namespace: {NS}, uid: uid-{name}}}
spec: {{tenant: payments, class: preview, app: {{name: web, repoURL: 'https://example.com/web.git'}}}}"
        ))
        .expect("request");
        request.metadata.creation_timestamp = Some(Time(Timestamp::from_second(second).expect("time")));
        request
    }

    fn provisioned(mut request: EnvironmentRequest) -> EnvironmentRequest {
        request.status = Some(EnvironmentRequestStatus {
            phase: Some(Phase::Ready),
            gitops: Some(GitOpsStatus { commit: Some("abc".to_owned()), ..GitOpsStatus::default() }),
            ..EnvironmentRequestStatus::default()
        });
        request
    }

    #[test]
    fn a_request_admitted_earlier_holds_its_place_before_its_status_shows_it() {
        // Created in the same second, `zeta` first; `alpha` sorts first by name.
        let (zeta, alpha) = (request("zeta", 10), request("alpha", 10));
        let (tenant, classes) = (tenant("{maxEnvironments: 1}"), [class()]);
        let guard = BudgetGuard::default();

        // `zeta` is decided before `alpha` exists.
        assert_eq!(guard.decide(&zeta, &tenant, [&zeta], &classes), Ok(()));
        // Deciding from the set alone, `alpha` would win its tie by name and both
        // would be provisioned: the race the guard's memory closes.
        let terms = budget::class_terms(&classes);
        let claims = budget::claims("payments", [&zeta, &alpha], &terms, "alpha");
        assert_eq!(budget::decide_for("payments", &tenant.spec.budget, &claims, "alpha"), Some(Ok(())));
        assert_eq!(
            guard.decide(&alpha, &tenant, [&zeta, &alpha], &classes),
            Err(BudgetExceeded::Count { tenant: "payments".to_owned(), current: 1, max: 1 })
        );
        // Deciding `zeta` again (its commit failed and it retries) keeps it admitted.
        assert_eq!(guard.decide(&zeta, &tenant, [&zeta, &alpha], &classes), Ok(()));
    }

    #[test]
    fn admissions_are_forgotten_once_the_store_shows_them_provisioned_or_deleted() {
        let (tenant, classes) = (tenant("{monthlyCostUSD: 1000}"), [class()]);
        let guard = BudgetGuard::default();
        let (a, b) = (request("a", 1), request("b", 2));
        assert_eq!(guard.decide(&a, &tenant, [&a], &classes), Ok(()));
        assert_eq!(guard.decide(&b, &tenant, [&a, &b], &classes), Ok(()));
        assert_eq!(guard.remembered(), 2);

        // `a` shows provisioned: it still counts (from its status), and is no longer remembered.
        let a = provisioned(a);
        let c = request("c", 3);
        assert!(matches!(
            guard.decide(&c, &tenant, [&a, &b, &c], &classes),
            Err(BudgetExceeded::Cost { total: 1200, budget: 1000, .. })
        ));
        assert_eq!(guard.remembered(), 1);

        // `b` is deleted: forgotten, and `c` now fits next to `a`.
        guard.forget(&b);
        assert_eq!(guard.remembered(), 0);
        assert_eq!(guard.decide(&c, &tenant, [&a, &c], &classes), Ok(()));
    }

    #[test]
    fn requests_of_other_namespaces_do_not_count() {
        let (tenant, classes) = (tenant("{maxEnvironments: 1}"), [class()]);
        let guard = BudgetGuard::default();
        let mut elsewhere = provisioned(request("other", 1));
        elsewhere.metadata.namespace = Some("elsewhere".to_owned());
        let mine = request("mine", 2);
        assert_eq!(guard.decide(&mine, &tenant, [&elsewhere, &mine], &classes), Ok(()));
    }

    #[test]
    fn a_refused_request_is_not_remembered() {
        let (tenant, classes) = (tenant("{maxEnvironments: 1}"), [class()]);
        let guard = BudgetGuard::default();
        let (a, b) = (provisioned(request("a", 1)), request("b", 2));
        assert!(guard.decide(&b, &tenant, [&a, &b], &classes).is_err());
        assert_eq!(guard.remembered(), 0);
    }
}
