//! A per-caller limit on `POST /v1/approvals`: each authenticated subject may ask for
//! so many approvals a minute (in bursts of up to the same number), so a leaked
//! approver token or a runaway script can neither mint approvals by the thousand nor
//! bury the audit log (a limited caller's refusals are audited once a minute).
//! Keyed by the authenticated subject, so one caller's flood never slows another;
//! callers who fail authentication are refused before it. The count is each
//! replica's own (kept in memory): with two replicas serving, a caller may ask up to
//! twice the rate.

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};

/// The limiter, shared by every request of the auth API.
pub struct ApprovalRateLimit {
    asks: DefaultKeyedRateLimiter<String>,
    /// One audit record a minute per limited caller.
    audits: DefaultKeyedRateLimiter<String>,
    per_minute: NonZeroU32,
    checks: AtomicU64,
}

/// A caller past the rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    /// Whole seconds until they may ask again, rounded up (`Retry-After`).
    pub retry_after: u64,
    /// Whether this refusal should be audited (the first of its minute).
    pub audit: bool,
}

/// Callers kept in memory before those whose budget refilled are forgotten.
const FORGET_ABOVE: usize = 10_000;

impl ApprovalRateLimit {
    /// `per_minute` asks per caller and minute, in bursts of up to as many.
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        Self {
            asks: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute)),
            audits: DefaultKeyedRateLimiter::keyed(Quota::per_minute(NonZeroU32::MIN)),
            per_minute,
            checks: AtomicU64::new(0),
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> NonZeroU32 {
        self.per_minute
    }

    /// `Ok` when `caller` may ask now (the ask is counted), else how long until they
    /// may and whether to audit the refusal.
    pub fn check(&self, caller: &str) -> Result<(), Limited> {
        let key = caller.to_owned();
        let checked = self.asks.check_key(&key);
        // Now and then, forget callers whose budget refilled (a fresh key is the same).
        if self.checks.fetch_add(1, Ordering::Relaxed).is_multiple_of(1024) && self.asks.len() > FORGET_ABOVE {
            self.asks.retain_recent();
            self.audits.retain_recent();
        }
        checked.map_err(|not_until| Limited {
            retry_after: retry_after(not_until.wait_time_from(self.asks.clock().now())),
            audit: self.audits.check_key(&key).is_ok(),
        })
    }
}

/// `wait` in whole seconds, rounded up, at least one.
fn retry_after(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_caller_has_a_burst_of_the_rate_and_then_waits_and_is_audited_once() {
        let limit = ApprovalRateLimit::per_minute(NonZeroU32::new(3).expect("nonzero"));
        for _ in 0..3 {
            assert_eq!(limit.check("bob"), Ok(()));
        }
        let first = limit.check("bob").expect_err("the fourth ask within a minute");
        assert!((1..=20).contains(&first.retry_after), "one ask back every 20 s: {first:?}");
        assert!(first.audit, "the first refusal is audited");
        let again = limit.check("bob").expect_err("the fifth");
        assert!(!again.audit, "not every refusal of the minute: {again:?}");
        assert_eq!(limit.check("carol"), Ok(()), "another caller is not slowed");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after(Duration::from_millis(1)), 1);
        assert_eq!(retry_after(Duration::from_millis(19_001)), 20);
        assert_eq!(retry_after(Duration::from_secs(20)), 20);
        assert_eq!(retry_after(Duration::ZERO), 1);
    }
}
