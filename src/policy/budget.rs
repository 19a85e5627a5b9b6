//! The tenant budget guard: which of a tenant's environments fit its count and
//! cost budget, decided the same way by every reconcile, however many run at once.
//!
//! Admission alone cannot stop three concurrent requests that together overrun a
//! budget: each is checked against a state without the others. So the decision is
//! a pure function of the tenant's whole set of requests: environments already
//! provisioned count first, then pending ones in creation order (name breaks ties),
//! each admitted only if it still fits. Concurrent reconciles that read the same
//! set reach the same answer. What the set cannot show — a request admitted a moment
//! ago whose status is not written yet — the controller's guard remembers
//! (`controller::budget`).

use std::{cmp::Ordering, collections::BTreeMap, sync::Arc};

use k8s_openapi::{apimachinery::pkg::api::resource::Quantity, jiff::Timestamp};

use kube::{Resource, ResourceExt};

use crate::{
    api::quantity,
    api::{
        EnvironmentClass, EnvironmentRequest, Tenant,
        conditions::{self, reasons, types},
        environment_request::Phase,
        tenant::Budget,
    },
};

/// Resource name → amount in thousandths (exact; see [`quantity`]).
pub type Amounts = BTreeMap<String, i128>;

/// A ResourceQuota `hard` map as exact amounts; unparseable values count as zero
/// (the CRD schema and the apiserver reject them before they get here).
pub fn amounts(hard: &BTreeMap<String, Quantity>) -> Amounts {
    hard.iter()
        .map(|(name, q)| (name.clone(), quantity::Quantity::parse(&q.0).and_then(|q| q.millis()).unwrap_or(0)))
        .collect()
}

/// An amount written back as a quantity: whole numbers plain (or in Gi/Mi when
/// exact), fractions in milli.
pub fn display(millis: i128) -> String {
    const GI: i128 = 1 << 30;
    const MI: i128 = 1 << 20;
    if millis % 1000 != 0 {
        return format!("{millis}m");
    }
    let whole = millis / 1000;
    match whole {
        0 => "0".to_owned(),
        w if w % GI == 0 => format!("{}Gi", w / GI),
        w if w % MI == 0 => format!("{}Mi", w / MI),
        w => w.to_string(),
    }
}

/// One environment as the budget sees it. It borrows from the request and its class's
/// terms: a decision in a tenant of 10,000 requests makes 10,000 of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim<'a> {
    /// Request name (unique within the tenant's namespace).
    pub name: &'a str,
    /// When the request was created; orders pending claims.
    pub created: Option<Timestamp>,
    /// Already provisioned (committed): it holds budget whatever the order.
    pub provisioned: bool,
    /// Estimated monthly cost, whole US dollars.
    pub monthly_cost_usd: u32,
    /// The environment's ResourceQuota `hard` values (its class's quota, shared by
    /// every claim of the class).
    pub quota: &'a Amounts,
}

/// The quota of a claim whose class is unknown.
static NO_QUOTA: Amounts = BTreeMap::new();

/// Why an environment does not fit the tenant's budget. Messages name the limit
/// and what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BudgetExceeded {
    #[error(
        "tenant {tenant:?} already has {current} of its {max} environments; delete one or raise spec.budget.maxEnvironments"
    )]
    Count { tenant: String, current: u32, max: u32 },
    #[error(
        "tenant {tenant:?} would spend ${total} a month with this environment (${adding}); its budget is ${budget}; delete an environment or raise spec.budget.monthlyCostUSD"
    )]
    Cost { tenant: String, total: u64, adding: u32, budget: u32 },
    #[error(
        "tenant {tenant:?} would reserve {total} of {resource} with this environment ({adding}); its budget is {budget}; delete an environment or raise spec.budget.quota"
    )]
    Quota { tenant: String, resource: String, total: String, adding: String, budget: String },
    #[error("request {request:?} was not yet visible when the budget was checked; it is checked again shortly")]
    NotListed { request: String },
}

/// What one environment of a class costs the tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassTerms {
    /// Estimated monthly cost, whole US dollars.
    pub monthly_cost_usd: u32,
    /// Quota each environment reserves.
    pub quota: Arc<Amounts>,
    /// Environments of the class are provisioned only with an approval.
    pub approval_required: bool,
}

/// Every class's terms by name, from whatever list the caller holds.
pub fn class_terms<'a>(classes: impl IntoIterator<Item = &'a EnvironmentClass>) -> BTreeMap<String, ClassTerms> {
    classes
        .into_iter()
        .map(|c| {
            let terms = ClassTerms {
                monthly_cost_usd: c.spec.estimated_monthly_cost_usd,
                quota: Arc::new(amounts(&c.spec.quota)),
                approval_required: c.spec.approval.required,
            };
            (c.name_any(), terms)
        })
        .collect()
}

/// Whether the request holds a committed environment (and so its budget).
pub fn is_provisioned(request: &EnvironmentRequest) -> bool {
    if request.meta().deletion_timestamp.is_some() {
        return false;
    }
    request.status.as_ref().is_some_and(|s| {
        matches!(s.phase, Some(Phase::Provisioning | Phase::Ready))
            && s.gitops.as_ref().is_some_and(|g| g.commit.is_some())
    })
}

/// Whether the request's last status said it did not fit the budget.
fn over_budget(request: &EnvironmentRequest) -> bool {
    request.status.as_ref().is_some_and(|s| {
        conditions::find(&s.conditions, types::READY).is_some_and(|c| c.reason == reasons::OVER_BUDGET)
    })
}

/// What the request alone says of whether it may compete for its tenant's budget:
/// alive, not expired, not failed for a reason other than the budget (which it may fit
/// later). The index keeps only such requests in full (besides the counted ones).
pub fn may_claim(request: &EnvironmentRequest) -> bool {
    let phase = request.status.as_ref().and_then(|s| s.phase);
    let failed_for_other_reasons = phase == Some(Phase::Failed) && !over_budget(request);
    request.meta().deletion_timestamp.is_none() && phase != Some(Phase::Expired) && !failed_for_other_reasons
}

/// Whether a request competes for its tenant's budget: [`may_claim`], of an existing
/// class, and, for approval classes, only once `provisioned` (an unapproved one never
/// gets budget).
fn is_claim(request: &EnvironmentRequest, provisioned: bool, terms: Option<&ClassTerms>) -> bool {
    terms.is_some_and(|terms| may_claim(request) && (!terms.approval_required || provisioned))
}

/// The claims on `tenant`'s budget among `requests`. The request named `deciding`
/// is always a claim, whatever its last status said: it is the one being decided.
/// `held` names requests that hold budget although their status does not say so yet
/// (admitted a moment ago); they count as provisioned.
pub fn claims<'a>(
    tenant: &str,
    requests: impl IntoIterator<Item = &'a EnvironmentRequest>,
    classes: &'a BTreeMap<String, ClassTerms>,
    deciding: &str,
    held: impl Fn(&EnvironmentRequest) -> bool,
) -> Vec<Claim<'a>> {
    requests
        .into_iter()
        .filter(|r| r.spec.tenant == tenant)
        .filter_map(|r| {
            let name = r.metadata.name.as_deref();
            let deciding = name == Some(deciding);
            // Cheap checks first: `held` may look the request up elsewhere (git).
            if !deciding && !may_claim(r) {
                return None;
            }
            let terms = classes.get(&r.spec.class);
            let provisioned = is_provisioned(r) || held(r);
            if !deciding && !is_claim(r, provisioned, terms) {
                return None;
            }
            Some(Claim {
                name: name.unwrap_or_default(),
                created: r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                provisioned,
                monthly_cost_usd: terms.map_or(0, |t| t.monthly_cost_usd),
                quota: terms.map_or(&NO_QUOTA, |t| &t.quota),
            })
        })
        .collect()
}

/// A namespace's requests as a budget decision reads them: those provisioned counted
/// per tenant and class (they always count, so which ones they are does not matter:
/// the index keeps these counts as requests change), and every other request in full.
/// A decision in a tenant of 10,000 environments then reads a few counts and the
/// requests still pending, not 10,000 requests.
#[derive(Clone, Debug, Default)]
pub struct NamespaceRequests {
    /// (tenant, class) → how many provisioned requests name them.
    pub provisioned: Vec<((String, String), u32)>,
    /// Every request that is not provisioned and may claim budget ([`may_claim`]).
    pub others: Vec<Arc<EnvironmentRequest>>,
}

impl NamespaceRequests {
    /// Splits `requests` (of one namespace) the way the index keeps them, leaving out
    /// the one named `excluding` (the request being decided) and those that can never claim.
    pub fn of(requests: impl IntoIterator<Item = Arc<EnvironmentRequest>>, excluding: &str) -> Self {
        let mut provisioned: BTreeMap<(String, String), u32> = BTreeMap::new();
        let mut others = Vec::new();
        for request in requests.into_iter().filter(|r| r.metadata.name.as_deref() != Some(excluding)) {
            match counted_as(&request) {
                Some((tenant, class)) => *provisioned.entry((tenant.to_owned(), class.to_owned())).or_default() += 1,
                None if may_claim(&request) => others.push(request),
                None => {}
            }
        }
        Self { provisioned: provisioned.into_iter().collect(), others }
    }

    /// What `tenant`'s provisioned environments use, each at its class's terms (a class
    /// that no longer exists counts nothing, as [`claims`] leaves its requests out).
    pub fn provisioned_usage(&self, tenant: &str, classes: &BTreeMap<String, ClassTerms>) -> Usage {
        let mut usage = Usage::default();
        for ((of_tenant, class), count) in &self.provisioned {
            if let Some(terms) = classes.get(class).filter(|_| of_tenant == tenant) {
                usage.add_times(terms.monthly_cost_usd, &terms.quota, *count);
            }
        }
        usage
    }
}

/// The tenant and class a request is counted under while it is provisioned; `None`
/// while it is not (then it is kept in full: its claim depends on more than that).
pub fn counted_as(request: &EnvironmentRequest) -> Option<(&str, &str)> {
    is_provisioned(request).then_some((request.spec.tenant.as_str(), request.spec.class.as_str()))
}

/// Totals of the claims a budget admitted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub environments: u32,
    pub monthly_cost_usd: u64,
    pub quota: Amounts,
}

impl Usage {
    /// Counts `claim` in.
    fn add(&mut self, claim: &Claim) {
        self.add_times(claim.monthly_cost_usd, claim.quota, 1);
    }

    /// Counts in `times` environments of the same terms (in place).
    fn add_times(&mut self, monthly_cost_usd: u32, quota: &Amounts, times: u32) {
        self.environments += times;
        self.monthly_cost_usd += u64::from(monthly_cost_usd) * u64::from(times);
        for (resource, amount) in quota {
            match self.quota.get_mut(resource) {
                Some(total) => *total += amount * i128::from(times),
                None => {
                    self.quota.insert(resource.clone(), amount * i128::from(times));
                }
            }
        }
    }

    /// Counts `other` in.
    fn add_usage(&mut self, other: &Usage) {
        self.environments += other.environments;
        self.monthly_cost_usd += other.monthly_cost_usd;
        for (resource, amount) in &other.quota {
            *self.quota.entry(resource.clone()).or_default() += amount;
        }
    }

    /// What the provisioned claims use. They always count (they exist), so their order
    /// does not matter: they are counted per class, and a tenant of 10,000 environments
    /// of three classes is three additions, not 10,000.
    fn of_provisioned(claims: &[Claim]) -> Self {
        let mut classes: Vec<(u32, &Amounts, u32)> = Vec::new();
        for claim in claims.iter().filter(|c| c.provisioned) {
            let same = |(cost, quota, _): &&mut (u32, &Amounts, u32)| {
                *cost == claim.monthly_cost_usd && std::ptr::eq(*quota, claim.quota)
            };
            match classes.iter_mut().find(same) {
                Some((_, _, count)) => *count += 1,
                None => classes.push((claim.monthly_cost_usd, claim.quota, 1)),
            }
        }
        let mut usage = Self::default();
        for (cost, quota, count) in classes {
            usage.add_times(cost, quota, count);
        }
        usage
    }
}

/// A budget's quota parsed once per decision, not once per claim.
struct Limits<'a> {
    budget: &'a Budget,
    quota: Amounts,
}

impl<'a> Limits<'a> {
    fn of(budget: &'a Budget) -> Self {
        Self { budget, quota: amounts(&budget.quota) }
    }
}

/// What `tenant`'s provisioned environments among `requests` use: the one usage its
/// status shows and its budget is decided on (each environment at its class's terms).
pub fn usage<'a>(
    tenant: &str,
    requests: impl IntoIterator<Item = &'a EnvironmentRequest>,
    classes: &'a BTreeMap<String, ClassTerms>,
) -> Usage {
    Usage::of_provisioned(&claims(tenant, requests, classes, "", |_| false))
}

/// Checks whether `claim` fits on top of `usage`.
fn fits(tenant: &str, limits: &Limits, usage: &Usage, claim: &Claim) -> Result<(), BudgetExceeded> {
    if let Some(max) = limits.budget.max_environments
        && usage.environments + 1 > max
    {
        return Err(BudgetExceeded::Count { tenant: tenant.to_owned(), current: usage.environments, max });
    }
    if let Some(limit) = limits.budget.monthly_cost_usd {
        let total = usage.monthly_cost_usd + u64::from(claim.monthly_cost_usd);
        if total > u64::from(limit) {
            return Err(BudgetExceeded::Cost {
                tenant: tenant.to_owned(),
                total,
                adding: claim.monthly_cost_usd,
                budget: limit,
            });
        }
    }
    for (resource, limit) in &limits.quota {
        let adding = claim.quota.get(resource).copied().unwrap_or(0);
        let total = usage.quota.get(resource).copied().unwrap_or(0) + adding;
        if total > *limit {
            return Err(BudgetExceeded::Quota {
                tenant: tenant.to_owned(),
                total: display(total),
                adding: display(adding),
                budget: display(*limit),
                resource: resource.clone(),
            });
        }
    }
    Ok(())
}

/// A claim's name and whether it fits.
pub type Decision = (String, Result<(), BudgetExceeded>);

/// Provisioned claims first, then pending ones oldest first, ties by name.
fn admission_order(a: &Claim, b: &Claim) -> Ordering {
    b.provisioned.cmp(&a.provisioned).then_with(|| a.created.cmp(&b.created)).then_with(|| a.name.cmp(b.name))
}

/// The decision for every claim of a tenant, in admission order, and the usage of
/// those admitted. Provisioned claims are always admitted (they already exist);
/// if they alone overrun a budget that was lowered, new ones simply do not fit.
pub fn decide(tenant: &str, budget: &Budget, claims: &[Claim]) -> (Vec<Decision>, Usage) {
    let limits = Limits::of(budget);
    let mut ordered: Vec<&Claim> = claims.iter().collect();
    ordered.sort_unstable_by(|a, b| admission_order(a, b));
    let mut usage = Usage::default();
    let decisions = ordered
        .into_iter()
        .map(|claim| {
            let decision = if claim.provisioned { Ok(()) } else { fits(tenant, &limits, &usage, claim) };
            if decision.is_ok() {
                usage.add(claim);
            }
            (claim.name.to_owned(), decision)
        })
        .collect();
    (decisions, usage)
}

/// Whether `budget` limits anything: a tenant without one admits every request.
pub fn limits_anything(budget: &Budget) -> bool {
    budget.max_environments.is_some() || budget.monthly_cost_usd.is_some() || !budget.quota.is_empty()
}

/// The decision for `request` in `tenant`'s budget, as admission and the controller's
/// guard both reach it: the provisioned requests of its namespace counted at their
/// classes' terms, then the pending ones (`namespace.others`, plus the request itself)
/// as claims. `held` names requests that hold budget although their status does not say
/// so yet (the guard's memory and git; admission sees only statuses). `None` when the
/// request is no claim on `tenant` (it names another tenant).
pub fn decide_request<'a>(
    request: &EnvironmentRequest,
    tenant: &Tenant,
    namespace: &NamespaceRequests,
    classes: impl IntoIterator<Item = &'a EnvironmentClass>,
    held: impl Fn(&EnvironmentRequest) -> bool,
) -> Option<Result<(), BudgetExceeded>> {
    let tenant_name = tenant.name_any();
    let name = request.name_any();
    let in_namespace = request.metadata.namespace.as_deref();
    let terms = class_terms(classes);
    let provisioned = namespace.provisioned_usage(&tenant_name, &terms);
    // The caller's snapshot leaves the request out; a copy of it there would be older.
    let neighbours = namespace
        .others
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| {
            r.metadata.namespace.as_deref() == in_namespace && r.metadata.name.as_deref() != Some(name.as_str())
        })
        .chain(std::iter::once(request));
    let claims = claims(&tenant_name, neighbours, &terms, &name, held);
    decide_for_over(&tenant_name, &tenant.spec.budget, provisioned, &claims, &name)
}

/// The decision for the claim named `name` (`None` when it is not among `claims`), the
/// same as [`decide`] reaches. Only what comes before it in admission order can change
/// it: every provisioned claim (counted per class) and the pending claims ahead of it,
/// the only ones sorted. A decision in a tenant of 10,000 environments costs a pass
/// over them, not a sort.
pub fn decide_for(tenant: &str, budget: &Budget, claims: &[Claim], name: &str) -> Option<Result<(), BudgetExceeded>> {
    decide_for_over(tenant, budget, Usage::default(), claims, name)
}

/// [`decide_for`] on top of `provisioned`: what provisioned environments not among
/// `claims` use ([`NamespaceRequests::provisioned_usage`]).
pub fn decide_for_over(
    tenant: &str,
    budget: &Budget,
    provisioned: Usage,
    claims: &[Claim],
    name: &str,
) -> Option<Result<(), BudgetExceeded>> {
    let deciding = claims.iter().find(|c| c.name == name)?;
    if deciding.provisioned {
        return Some(Ok(()));
    }
    let limits = Limits::of(budget);
    let mut usage = provisioned;
    usage.add_usage(&Usage::of_provisioned(claims));
    let mut ahead: Vec<&Claim> =
        claims.iter().filter(|c| !c.provisioned && admission_order(c, deciding) == Ordering::Less).collect();
    ahead.sort_unstable_by(|a, b| admission_order(a, b));
    for claim in ahead {
        if fits(tenant, &limits, &usage, claim).is_ok() {
            usage.add(claim);
        }
    }
    Some(fits(tenant, &limits, &usage, deciding))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(name: &str, second: i64, provisioned: bool, cost: u32) -> Claim<'_> {
        Claim {
            name,
            created: Some(Timestamp::from_second(second).expect("valid")),
            provisioned,
            monthly_cost_usd: cost,
            quota: &NO_QUOTA,
        }
    }

    fn hard(cpu: &str, memory: &str) -> Amounts {
        amounts(&BTreeMap::from([
            ("requests.cpu".to_owned(), Quantity(cpu.to_owned())),
            ("requests.memory".to_owned(), Quantity(memory.to_owned())),
        ]))
    }

    fn budget(max: Option<u32>, cost: Option<u32>) -> Budget {
        Budget { max_environments: max, monthly_cost_usd: cost, ..Budget::default() }
    }

    #[test]
    fn no_budget_admits_everything() {
        let claims = [claim("a", 1, false, 500), claim("b", 2, false, 500)];
        let (decisions, usage) = decide("t", &Budget::default(), &claims);
        assert!(decisions.iter().all(|(_, d)| d.is_ok()));
        assert_eq!((usage.environments, usage.monthly_cost_usd), (2, 1000));
    }

    #[test]
    fn concurrent_requests_overrunning_the_cost_budget_admit_the_oldest_that_fit() {
        // Three requests of $400 against $1000: the first two fit, the third does not.
        let claims = [claim("c", 3, false, 400), claim("a", 1, false, 400), claim("b", 2, false, 400)];
        let (decisions, usage) = decide("payments", &budget(None, Some(1000)), &claims);
        let admitted: Vec<&str> = decisions.iter().filter(|(_, d)| d.is_ok()).map(|(n, _)| n.as_str()).collect();
        assert_eq!(admitted, ["a", "b"]);
        assert_eq!(usage.monthly_cost_usd, 800);
        let refused = decide_for("payments", &budget(None, Some(1000)), &claims, "c").expect("c decided");
        assert_eq!(
            refused,
            Err(BudgetExceeded::Cost { tenant: "payments".into(), total: 1200, adding: 400, budget: 1000 })
        );
    }

    #[test]
    fn every_order_of_the_same_set_reaches_the_same_decisions() {
        let claims = vec![claim("a", 1, false, 300), claim("b", 1, false, 300), claim("c", 2, false, 300)];
        let expected = decide("t", &budget(Some(2), None), &claims).0;
        let mut reversed = claims.clone();
        reversed.reverse();
        assert_eq!(decide("t", &budget(Some(2), None), &reversed).0, expected);
        // Same creation second: the name breaks the tie.
        assert!(expected[0].1.is_ok() && expected[0].0 == "a");
        assert!(matches!(expected[2].1, Err(BudgetExceeded::Count { current: 2, max: 2, .. })));
    }

    #[test]
    fn provisioned_environments_hold_their_budget_before_older_pending_ones() {
        let claims = [claim("old-pending", 1, false, 600), claim("new-provisioned", 5, true, 600)];
        let decisions = decide("t", &budget(None, Some(1000)), &claims).0;
        assert_eq!(decisions[0], ("new-provisioned".to_owned(), Ok(())));
        assert!(decisions[1].1.is_err(), "the pending one no longer fits");
    }

    #[test]
    fn a_lowered_budget_keeps_provisioned_environments_and_blocks_new_ones() {
        let claims = [claim("a", 1, true, 700), claim("b", 2, true, 700), claim("new", 3, false, 10)];
        let (decisions, usage) = decide("t", &budget(None, Some(1000)), &claims);
        assert!(decisions[0].1.is_ok() && decisions[1].1.is_ok());
        assert!(decisions[2].1.is_err());
        assert_eq!(usage.monthly_cost_usd, 1400);
    }

    #[test]
    fn messages_say_what_to_change() {
        let count = BudgetExceeded::Count { tenant: "payments".into(), current: 3, max: 3 };
        assert_eq!(
            count.to_string(),
            "tenant \"payments\" already has 3 of its 3 environments; delete one or raise spec.budget.maxEnvironments"
        );
    }

    #[test]
    fn quota_budgets_add_up_exact_quantities() {
        let (quota_a, quota_b, quota_c) = (hard("1500m", "4Gi"), hard("1.5", "4096Mi"), hard("500m", "1Gi"));
        let mut a = claim("a", 1, false, 0);
        a.quota = &quota_a;
        let mut b = claim("b", 2, false, 0);
        b.quota = &quota_b;
        let mut c = claim("c", 3, false, 0);
        c.quota = &quota_c;
        let budget = Budget {
            quota: BTreeMap::from([
                ("requests.cpu".to_owned(), Quantity("3".to_owned())),
                ("requests.memory".to_owned(), Quantity("8Gi".to_owned())),
            ]),
            ..Budget::default()
        };
        let (decisions, usage) = decide("t", &budget, &[a, b, c]);
        assert!(decisions[0].1.is_ok() && decisions[1].1.is_ok(), "1.5 + 1.5 cpu and 4Gi + 4Gi fit exactly");
        assert_eq!(
            decisions[2].1,
            Err(BudgetExceeded::Quota {
                tenant: "t".into(),
                resource: "requests.cpu".into(),
                total: "3500m".into(),
                adding: "500m".into(),
                budget: "3".into(),
            })
        );
        assert_eq!(usage.quota.get("requests.memory").copied().map(display), Some("8Gi".to_owned()));
    }

    #[test]
    fn deciding_one_claim_agrees_with_deciding_them_all() {
        // Mixed: provisioned and pending, ties in time broken by name, a cost budget
        // that admits some and refuses others.
        let claims = [
            claim("e", 5, false, 300),
            claim("p", 9, true, 400),
            claim("a", 5, false, 300),
            claim("c", 3, false, 200),
            claim("z", 1, false, 500),
        ];
        let budget = budget(Some(4), Some(1400));
        let (all, _) = decide("t", &budget, &claims);
        for (name, decision) in &all {
            assert_eq!(decide_for("t", &budget, &claims, name).as_ref(), Some(decision), "{name}");
        }
        assert_eq!(decide_for("t", &budget, &claims, "missing"), None);
        // The order itself: provisioned p, then z(1), c(3), a(5), e(5).
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["p", "z", "c", "a", "e"]);
        assert!(all[3].1.is_ok() && all[4].1.is_err(), "{all:?}");
    }

    #[test]
    fn deciding_one_claim_agrees_with_deciding_them_all_over_many_mixed_sets() {
        // Sets of provisioned and pending claims of three classes (two sharing a cost but
        // not a quota), in shuffled orders, against count, cost and quota budgets: what
        // `decide_for` reaches from the provisioned totals and the pending claims ahead is
        // what `decide` reaches in full order.
        let quotas = [hard("1", "1Gi"), hard("1", "2Gi"), hard("250m", "512Mi")];
        let costs = [100, 100, 40];
        let names: Vec<String> = (0..40).map(|i| format!("r{i:02}")).collect();
        let mut seed = 0x2545_f491_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut refused, mut admitted) = (0, 0);
        for round in 0..200 {
            let claims: Vec<Claim> = names
                .iter()
                .take(5 + (next() % 35) as usize)
                .map(|name| {
                    let class = (next() % 3) as usize;
                    Claim {
                        name,
                        created: Some(Timestamp::from_second((next() % 8) as i64).expect("valid")),
                        provisioned: next() % 3 == 0,
                        monthly_cost_usd: costs[class],
                        quota: &quotas[class],
                    }
                })
                .collect();
            let budget = Budget {
                max_environments: (round % 3 == 0).then_some((next() % 30) as u32),
                monthly_cost_usd: (round % 3 == 1).then_some((next() % 2500) as u32),
                quota: if round % 3 == 2 {
                    BTreeMap::from([("requests.memory".to_owned(), Quantity(format!("{}Gi", next() % 30)))])
                } else {
                    BTreeMap::new()
                },
            };
            let (all, _) = decide("t", &budget, &claims);
            refused += all.iter().filter(|(_, d)| d.is_err()).count();
            admitted += all.iter().filter(|(_, d)| d.is_ok()).count();
            for (name, decision) in &all {
                assert_eq!(decide_for("t", &budget, &claims, name).as_ref(), Some(decision), "round {round}: {name}");
            }
        }
        // The sets exercise both outcomes, many times over.
        assert!(refused > 500 && admitted > 500, "{refused} refused, {admitted} admitted");
    }

    #[test]
    fn provisioned_usage_counted_per_class_equals_the_sum_of_its_claims() {
        let (small, large) = (hard("500m", "1Gi"), hard("2", "4Gi"));
        let mut claims = vec![claim("a", 1, true, 40), claim("b", 2, true, 40), claim("c", 3, true, 300)];
        claims[0].quota = &small;
        claims[1].quota = &small;
        claims[2].quota = &large;
        claims.push(claim("pending", 4, false, 1000));
        let usage = Usage::of_provisioned(&claims);
        assert_eq!((usage.environments, usage.monthly_cost_usd), (3, 380));
        assert_eq!(usage.quota, hard("3", "6Gi"));
    }

    #[test]
    fn usage_counts_only_provisioned_environments_at_their_class_terms() {
        let classes: BTreeMap<String, ClassTerms> = [(
            "preview".to_owned(),
            ClassTerms { monthly_cost_usd: 40, quota: Arc::new(hard("500m", "1Gi")), approval_required: false },
        )]
        .into();
        let request = |name: &str, tenant: &str, provisioned: bool| {
            let mut r: EnvironmentRequest = serde_yaml::from_str(&format!(
                "metadata: {{name: {name}, namespace: team}}
spec: {{tenant: {tenant}, class: preview, app: {{name: web, repoURL: 'https://example.com/web.git'}}}}"
            ))
            .expect("request");
            if provisioned {
                r.status = Some(crate::api::environment_request::EnvironmentRequestStatus {
                    phase: Some(Phase::Ready),
                    gitops: Some(crate::api::environment_request::GitOpsStatus {
                        commit: Some("abc".to_owned()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            r
        };
        let requests = [
            request("a", "team", true),
            request("b", "team", true),
            request("c", "team", false),
            request("d", "other", true),
        ];
        let usage = usage("team", &requests, &classes);
        assert_eq!((usage.environments, usage.monthly_cost_usd), (2, 80));
        assert_eq!(usage.quota, hard("1", "2Gi"));
    }
}
