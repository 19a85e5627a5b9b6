//! What a tenant's admitted environments add up to: counts, monthly cost and quota
//! amounts, exact (thousandths), as tenant status, admission and the guard read them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Claim;
use crate::api::quantity;

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

/// Totals of the claims a budget admitted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub environments: u32,
    pub monthly_cost_usd: u64,
    pub quota: Amounts,
}

impl Usage {
    /// Counts `claim` in.
    pub(super) fn add(&mut self, claim: &Claim) {
        self.add_times(claim.monthly_cost_usd, claim.quota, 1);
    }

    /// Counts in `times` environments of the same terms (in place).
    pub(super) fn add_times(&mut self, monthly_cost_usd: u32, quota: &Amounts, times: u32) {
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
    pub(super) fn add_usage(&mut self, other: &Usage) {
        self.environments += other.environments;
        self.monthly_cost_usd += other.monthly_cost_usd;
        for (resource, amount) in &other.quota {
            *self.quota.entry(resource.clone()).or_default() += amount;
        }
    }

    /// What the provisioned claims use. They always count (they exist), so their order
    /// does not matter: they are counted per class, and a tenant of 10,000 environments
    /// of three classes is three additions, not 10,000.
    pub(super) fn of_provisioned(claims: &[Claim]) -> Self {
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
