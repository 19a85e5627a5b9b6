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

mod usage;

use std::{cmp::Ordering, collections::BTreeMap, sync::Arc};

use k8s_openapi::jiff::Timestamp;

use kube::{Resource, ResourceExt};

pub use usage::{Amounts, Usage, amounts, display};

use crate::api::{
    EnvironmentClass, EnvironmentRequest, Tenant,
    conditions::{self, reasons, types},
    environment_request::Phase,
    tenant::Budget,
};

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
mod tests;
