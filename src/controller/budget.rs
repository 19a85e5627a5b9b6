//! The controller's budget guard: one decision at a time, over the requests in
//! memory, remembering whom it admitted.
//!
//! [`policy::budget`](crate::policy::budget) decides from a set of requests. Two
//! things make that set trustworthy here without listing the namespace for every
//! new request (a list that grows with the tenant, so a burst cost O(n²)):
//!
//! - The store is filled by the watch that triggers reconciles, and a watch delivers
//!   in etcd order, so a snapshot taken under the guard's lock holds every request
//!   created before the one being decided, and every admission made before it.
//! - A request this process admitted counts as provisioned from that moment, until
//!   the store shows its committed status. Without that, two requests created in the
//!   same second could both be admitted: the later-created one, first by name, saw
//!   the earlier one as merely pending and ordered itself ahead of it.
//!
//! - A request whose folder is already in git holds its budget too, whatever its status
//!   says: a process that crashed between commit and status write left it deployed,
//!   and the process after it must count it (git is what Argo CD deploys).
//!
//! An admission holds for the generation it was made for; the controller forgets it
//! when the request is then refused for another reason, expires, goes away, or shows
//! provisioned ([`BudgetGuard::settle`], at its next reconcile: not on the watch event
//! of its own status write, which reconciles nothing, see `echoes`. Forgetting it on
//! the write's answer would leave a moment where the store does not show it
//! provisioned yet and the memory no longer holds it).
//! A remembered request that shows provisioned counts by its status whatever the memory
//! says, so forgetting it then is housekeeping, kept off the decision: a decision in a
//! tenant of 10,000 requests does not look each of them up. The memory is this
//! process's: one replica decides at a time (leader election), and one that takes
//! over starts from what statuses and git say.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
};

use kube::ResourceExt;

use crate::{
    api::{EnvironmentClass, EnvironmentRequest, Tenant},
    policy::budget::{self, BudgetExceeded, NamespaceRequests, is_provisioned},
};

/// Remembered admissions beyond which a decision sweeps its namespace's settled ones
/// (a safety net: [`BudgetGuard::settle`] normally forgets each one as it lands).
const SWEEP_ABOVE: usize = 4096;

/// Requests admitted by this process that the store does not yet show provisioned.
#[derive(Default)]
pub struct BudgetGuard {
    admitted: Mutex<HashMap<String, Admission>>,
}

/// One admission, by request uid.
struct Admission {
    namespace: String,
    /// The request's `metadata.generation` when admitted: an edited request is
    /// decided again.
    generation: Option<i64>,
}

impl BudgetGuard {
    /// Whether `request` fits `tenant`'s budget on top of the other requests and what
    /// this guard admitted before. `requests` is called under the guard's lock for a
    /// snapshot of the requests of its namespace (`Index::budget_view`: the provisioned
    /// ones counted, without the request itself); `in_git` says whether git already holds
    /// a request's folder. Admitting it records it.
    pub fn decide(
        &self,
        request: &EnvironmentRequest,
        tenant: &Tenant,
        requests: impl FnOnce() -> NamespaceRequests,
        classes: &[Arc<EnvironmentClass>],
        in_git: impl Fn(&EnvironmentRequest) -> bool,
    ) -> Result<(), BudgetExceeded> {
        let namespace = request.namespace().unwrap_or_default();
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        // Taken under the lock: every admission decided before this one is in it, or
        // in the memory below.
        let snapshot = requests();

        if admitted.len() > SWEEP_ABOVE {
            // What the store shows provisioned (counted, so not among the others), going
            // away or gone needs no remembering.
            let unsettled: HashSet<&str> = std::iter::once(request)
                .chain(snapshot.others.iter().map(AsRef::as_ref))
                .filter(|r| !is_provisioned(r) && r.metadata.deletion_timestamp.is_none())
                .filter_map(|r| r.metadata.uid.as_deref())
                .collect();
            admitted.retain(|uid, admission| admission.namespace != namespace || unsettled.contains(uid.as_str()));
        }

        let holds = |r: &EnvironmentRequest| {
            r.metadata
                .uid
                .as_deref()
                .and_then(|uid| admitted.get(uid))
                .is_some_and(|admission| admission.generation == r.metadata.generation)
                || in_git(r)
        };
        let decision = budget::decide_request(request, tenant, &snapshot, classes.iter().map(AsRef::as_ref), holds)
            .unwrap_or_else(|| Err(BudgetExceeded::NotListed { request: request.name_any() }));
        if decision.is_ok()
            && let Some(uid) = request.metadata.uid.as_deref()
            && !is_provisioned(request)
        {
            admitted.insert(uid.to_owned(), Admission { namespace, generation: request.metadata.generation });
        }
        decision
    }

    /// Forgets a request's admission once its status shows it provisioned: from then on
    /// that status holds its budget.
    pub fn settle(&self, request: &EnvironmentRequest) {
        if is_provisioned(request) {
            self.forget(request);
        }
    }

    /// Forgets a request's admission: it is going away, expired, or was refused for
    /// another reason after the budget admitted it.
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
    use crate::api::environment_request::{EnvironmentRequestStatus, Phase};

    const NS: &str = "payments";

    fn classes() -> Vec<Arc<EnvironmentClass>> {
        let class = |yaml: &str| Arc::new(serde_yaml::from_str::<EnvironmentClass>(yaml).expect("class"));
        vec![
            class("metadata: {name: preview}\nspec: {estimatedMonthlyCostUSD: 400}"),
            class(
                "metadata: {name: production}
spec: {estimatedMonthlyCostUSD: 400, approval: {required: true, approverGroups: [sre]}}",
            ),
        ]
    }

    fn tenant(budget: &str) -> Tenant {
        serde_yaml::from_str(&format!(
            "metadata: {{name: payments}}\nspec: {{owners: [{{kind: User, name: alice}}], budget: {budget}}}"
        ))
        .expect("tenant")
    }

    /// A pending request of `class` created at `second`, generation 1.
    fn request_of(class: &str, name: &str, second: i64) -> EnvironmentRequest {
        let mut request: EnvironmentRequest = serde_yaml::from_str(&format!(
            "metadata: {{name: {name}, namespace: {NS}, uid: uid-{name}, generation: 1}}
spec: {{tenant: payments, class: {class}, app: {{name: web, repoURL: 'https://example.com/web.git'}}}}"
        ))
        .expect("request");
        request.metadata.creation_timestamp = Some(Time(Timestamp::from_second(second).expect("time")));
        request
    }

    fn request(name: &str, second: i64) -> EnvironmentRequest {
        request_of("preview", name, second)
    }

    use crate::testing::provisioned;

    /// The store's snapshot, as the controller passes it for deciding `deciding`
    /// (`Index::budget_view` leaves that request out).
    fn store_for(deciding: &str, requests: &[&EnvironmentRequest]) -> impl FnOnce() -> NamespaceRequests {
        let of_namespace = requests.iter().filter(|r| r.metadata.namespace.as_deref() == Some(NS));
        let snapshot = NamespaceRequests::of(of_namespace.map(|r| Arc::new((*r).clone())), deciding);
        move || snapshot
    }

    fn nothing_in_git(_: &EnvironmentRequest) -> bool {
        false
    }

    fn over_count(max: u32) -> Result<(), BudgetExceeded> {
        Err(BudgetExceeded::Count { tenant: "payments".to_owned(), current: max, max })
    }

    #[test]
    fn a_request_admitted_earlier_holds_its_place_before_its_status_shows_it() {
        // Created in the same second, `zeta` first; `alpha` sorts first by name.
        let (zeta, alpha) = (request("zeta", 10), request("alpha", 10));
        let (tenant, classes) = (tenant("{maxEnvironments: 1}"), classes());
        let guard = BudgetGuard::default();

        // `zeta` is decided before `alpha` exists.
        assert_eq!(
            guard.decide(&zeta, &tenant, store_for(&zeta.name_any(), &[&zeta]), &classes, nothing_in_git),
            Ok(())
        );
        // Deciding from the set alone, `alpha` would win its tie by name and both
        // would be provisioned: the race the guard's memory closes.
        let terms = budget::class_terms(classes.iter().map(AsRef::as_ref));
        let claims = budget::claims("payments", [&zeta, &alpha], &terms, "alpha", |_| false);
        assert_eq!(budget::decide_for("payments", &tenant.spec.budget, &claims, "alpha"), Some(Ok(())));
        assert_eq!(
            guard.decide(&alpha, &tenant, store_for(&alpha.name_any(), &[&zeta, &alpha]), &classes, nothing_in_git),
            over_count(1)
        );
        // Deciding `zeta` again (its commit failed and it retries) keeps it admitted.
        assert_eq!(
            guard.decide(&zeta, &tenant, store_for(&zeta.name_any(), &[&zeta, &alpha]), &classes, nothing_in_git),
            Ok(())
        );
    }

    #[test]
    fn an_admitted_request_of_an_approval_class_holds_its_place_too() {
        // Approval classes count only provisioned requests: an admitted one must count
        // although its status does not say so yet.
        let (first, second) = (request_of("production", "first", 1), request_of("production", "second", 2));
        let (tenant, classes) = (tenant("{maxEnvironments: 1}"), classes());
        let guard = BudgetGuard::default();
        assert_eq!(
            guard.decide(&first, &tenant, store_for(&first.name_any(), &[&first]), &classes, nothing_in_git),
            Ok(())
        );
        assert_eq!(
            guard.decide(&second, &tenant, store_for(&second.name_any(), &[&first, &second]), &classes, nothing_in_git),
            over_count(1)
        );
    }

    #[test]
    fn an_admission_is_forgotten_when_the_request_is_refused_later_or_edited() {
        let (tenant, classes) = (tenant("{maxEnvironments: 1}"), classes());
        let guard = BudgetGuard::default();
        let (x, y) = (request("x", 1), request("y", 2));
        assert_eq!(guard.decide(&x, &tenant, store_for(&x.name_any(), &[&x]), &classes, nothing_in_git), Ok(()));
        assert_eq!(
            guard.decide(&y, &tenant, store_for(&y.name_any(), &[&x, &y]), &classes, nothing_in_git),
            over_count(1)
        );

        // `x` fails to render after admission: forgotten, `y` gets the place, and `x`
        // no longer skips the budget when it is tried again.
        guard.forget(&x);
        let mut x = x;
        x.status = Some(EnvironmentRequestStatus { phase: Some(Phase::Failed), ..EnvironmentRequestStatus::default() });
        assert_eq!(guard.decide(&y, &tenant, store_for(&y.name_any(), &[&x, &y]), &classes, nothing_in_git), Ok(()));
        let y = provisioned(y);
        assert_eq!(
            guard.decide(&x, &tenant, store_for(&x.name_any(), &[&x, &y]), &classes, nothing_in_git),
            over_count(1)
        );

        // An admission is for one generation: an edited request is decided again.
        let guard = BudgetGuard::default();
        let (x, mut y) = (request("x", 1), request("y", 2));
        assert_eq!(guard.decide(&y, &tenant, store_for(&y.name_any(), &[&y]), &classes, nothing_in_git), Ok(()));
        y.metadata.generation = Some(2);
        // `x` is older: with `y`'s admission stale, `x` comes first and `y` no longer fits.
        assert_eq!(
            guard.decide(&y, &tenant, store_for(&y.name_any(), &[&x, &y]), &classes, nothing_in_git),
            over_count(1)
        );
    }

    #[test]
    fn admissions_are_dropped_once_the_store_shows_them_provisioned_or_deleted() {
        let (tenant, classes) = (tenant("{monthlyCostUSD: 1000}"), classes());
        let guard = BudgetGuard::default();
        let (a, b) = (request("a", 1), request("b", 2));
        assert_eq!(guard.decide(&a, &tenant, store_for(&a.name_any(), &[&a]), &classes, nothing_in_git), Ok(()));
        assert_eq!(guard.decide(&b, &tenant, store_for(&b.name_any(), &[&a, &b]), &classes, nothing_in_git), Ok(()));
        assert_eq!(guard.remembered(), 2);

        // Settling a request that does not show provisioned yet keeps it.
        guard.settle(&b);
        assert_eq!(guard.remembered(), 2);
        // `a` shows provisioned: it still counts (from its status), remembered or not.
        let a = provisioned(a);
        let c = request("c", 3);
        assert!(matches!(
            guard.decide(&c, &tenant, store_for(&c.name_any(), &[&a, &b, &c]), &classes, nothing_in_git),
            Err(BudgetExceeded::Cost { total: 1200, budget: 1000, .. })
        ));
        // Its reconcile settles it: no longer remembered, and it counts the same.
        guard.settle(&a);
        assert_eq!(guard.remembered(), 1);
        assert!(matches!(
            guard.decide(&c, &tenant, store_for(&c.name_any(), &[&a, &b, &c]), &classes, nothing_in_git),
            Err(BudgetExceeded::Cost { total: 1200, budget: 1000, .. })
        ));

        // `b` is deleted: forgotten, and `c` now fits next to `a`.
        guard.forget(&b);
        assert_eq!(guard.remembered(), 0);
        assert_eq!(guard.decide(&c, &tenant, store_for(&c.name_any(), &[&a, &c]), &classes, nothing_in_git), Ok(()));
    }

    #[test]
    fn past_the_sweep_threshold_a_decision_drops_settled_admissions_of_its_namespace() {
        let (tenant, classes) = (tenant("{maxEnvironments: 100000}"), classes());
        let guard = BudgetGuard::default();
        let requests: Vec<EnvironmentRequest> =
            (0..=SWEEP_ABOVE).map(|i| request(&format!("r{i:05}"), i as i64)).collect();
        for request in &requests {
            // The budget is large: each decision needs only itself in the snapshot.
            assert_eq!(
                guard.decide(request, &tenant, store_for(&request.name_any(), &[request]), &classes, nothing_in_git),
                Ok(())
            );
        }
        assert_eq!(guard.remembered(), SWEEP_ABOVE + 1);
        // Their statuses show them provisioned but no reconcile settled them: the next
        // decision sweeps them.
        let settled: Vec<EnvironmentRequest> = requests.iter().cloned().map(provisioned).collect();
        let next = request("next", SWEEP_ABOVE as i64 + 1);
        let mut all: Vec<&EnvironmentRequest> = settled.iter().collect();
        all.push(&next);
        assert_eq!(guard.decide(&next, &tenant, store_for(&next.name_any(), &all), &classes, nothing_in_git), Ok(()));
        assert_eq!(guard.remembered(), 1, "only `next` is remembered");
    }

    #[test]
    fn requests_of_other_namespaces_do_not_count() {
        let (tenant, classes) = (tenant("{maxEnvironments: 1}"), classes());
        let guard = BudgetGuard::default();
        let mut elsewhere = provisioned(request("other", 1));
        elsewhere.metadata.namespace = Some("elsewhere".to_owned());
        let mine = request("mine", 2);
        assert_eq!(
            guard.decide(&mine, &tenant, store_for(&mine.name_any(), &[&elsewhere, &mine]), &classes, nothing_in_git),
            Ok(())
        );
    }

    #[test]
    fn a_refused_request_is_not_remembered() {
        let (tenant, classes) = (tenant("{maxEnvironments: 1}"), classes());
        let guard = BudgetGuard::default();
        let (a, b) = (provisioned(request("a", 1)), request("b", 2));
        assert!(guard.decide(&b, &tenant, store_for(&b.name_any(), &[&a, &b]), &classes, nothing_in_git).is_err());
        assert_eq!(guard.remembered(), 0);
    }

    #[test]
    fn folders_already_in_git_hold_their_budget_after_a_restart() {
        // A crashed process committed c037..c040 (and c001) without recording it; the
        // next one must not admit c002..c005 on top of them.
        let (tenant, classes) = (tenant("{maxEnvironments: 5}"), classes());
        let guard = BudgetGuard::default();
        let requests: Vec<EnvironmentRequest> = (1..=40).map(|i| request(&format!("c{i:03}"), 1)).collect();
        let committed = ["c001", "c037", "c038", "c039", "c040"];
        let in_git = |r: &EnvironmentRequest| committed.contains(&r.name_any().as_str());
        let all: Vec<&EnvironmentRequest> = requests.iter().collect();
        let admitted: Vec<String> = requests
            .iter()
            .filter(|r| guard.decide(r, &tenant, store_for(&r.name_any(), &all), &classes, in_git).is_ok())
            .map(|r| r.name_any())
            .collect();
        assert_eq!(admitted, committed);
        // Without git's view the first five by name are admitted: with the four other
        // folders already in git, nine environments for a budget of five.
        let forgetful = BudgetGuard::default();
        let admitted: Vec<String> = requests
            .iter()
            .filter(|r| forgetful.decide(r, &tenant, store_for(&r.name_any(), &all), &classes, nothing_in_git).is_ok())
            .map(|r| r.name_any())
            .collect();
        assert_eq!(admitted, ["c001", "c002", "c003", "c004", "c005"]);
    }
}
