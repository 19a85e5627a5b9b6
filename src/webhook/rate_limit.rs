//! A per-caller limit on `POST /v1/approvals`: each authenticated subject may ask for
//! so many approvals a minute (in bursts of up to the same number), so a leaked
//! approver token or a runaway script can neither mint approvals by the thousand nor
//! bury the audit log. Keyed by the authenticated subject, so one caller's flood
//! never slows another; callers who fail authentication are refused before it.

use std::{num::NonZeroU32, time::Duration};

use governor::{
    DefaultKeyedRateLimiter, Quota,
    clock::{Clock, DefaultClock},
};

/// The limiter, shared by every request of the auth API.
pub struct ApprovalRateLimit {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    per_minute: NonZeroU32,
}

impl ApprovalRateLimit {
    /// `per_minute` asks per caller and minute, in bursts of up to as many.
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute)),
            clock: DefaultClock::default(),
            per_minute,
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> NonZeroU32 {
        self.per_minute
    }

    /// `Ok` when `caller` may ask now (the ask is counted), else how long until they
    /// may, in whole seconds rounded up (what `Retry-After` says).
    pub fn check(&self, caller: &str) -> Result<(), u64> {
        let checked = self.limiter.check_key(&caller.to_owned());
        // Subjects seen once are kept only while their budget refills.
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        checked.map_err(|not_until| retry_after(not_until.wait_time_from(self.clock.now())))
    }
}

/// `wait` in whole seconds, rounded up, at least one.
fn retry_after(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_has_a_burst_of_the_rate_and_then_waits() {
        let limit = ApprovalRateLimit::per_minute(NonZeroU32::new(3).expect("nonzero"));
        for _ in 0..3 {
            assert_eq!(limit.check("bob"), Ok(()));
        }
        let wait = limit.check("bob").expect_err("the fourth ask within a minute");
        assert!((1..=20).contains(&wait), "one ask back every 20 s: {wait}");
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
