//! Drift remediation, the decision (pure): whether Berth asks Argo CD to sync an
//! environment's drifted objects back now, later, or not at all.
//!
//! An episode of drift starts when live objects that matched the commit stop matching
//! (the `InSync` condition turns False): objects missing because Argo CD has not
//! applied them yet are no episode. Berth asks at most once per episode, and never
//! while Argo CD runs an operation on the Application that applied them (it may be
//! putting them right already, and a new operation would replace the running one);
//! the episode ends when the environment is in sync again.

use crate::api::{environment_class::DriftMode, environment_request::Remediation};

/// What the drift check found this time, and what was recorded before.
#[derive(Clone, Copy, Debug)]
pub struct Episode {
    /// The class's `drift.mode`.
    pub mode: DriftMode,
    /// The environment was in sync before this check (`InSync` was True).
    pub was_in_sync: bool,
    /// What status recorded for this episode so far.
    pub before: Option<Remediation>,
    /// This check found drift.
    pub drifted: bool,
    /// Argo CD runs (or is about to run) an operation on the Application to ask.
    pub busy: bool,
}

/// What to do, and what status records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to ask; status records this.
    Record(Option<Remediation>),
    /// Ask Argo CD to sync now (status records `Requested` once it is asked).
    Ask,
}

/// Whether to ask Argo CD to sync the drifted objects back.
pub fn decide(episode: Episode) -> Decision {
    let Episode { mode, was_in_sync, before, drifted, busy } = episode;
    if !drifted || mode == DriftMode::Report {
        return Decision::Record(None);
    }
    match before {
        // Once per episode.
        Some(Remediation::Requested) => Decision::Record(before),
        // No episode: drift that was there from the start.
        None if !was_in_sync => Decision::Record(None),
        _ if busy => Decision::Record(Some(Remediation::Pending)),
        _ => Decision::Ask,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn episode(was_in_sync: bool, before: Option<Remediation>, drifted: bool, busy: bool) -> Episode {
        Episode { mode: DriftMode::Remediate, was_in_sync, before, drifted, busy }
    }

    #[test]
    fn berth_asks_once_when_matching_objects_drift() {
        assert_eq!(decide(episode(true, None, true, false)), Decision::Ask);
        // Asked: still drifted on the next checks, it does not ask again.
        assert_eq!(
            decide(episode(false, Some(Remediation::Requested), true, false)),
            Decision::Record(Some(Remediation::Requested))
        );
        // In sync again: the episode ends, and the next drift is a new one.
        assert_eq!(decide(episode(false, Some(Remediation::Requested), false, false)), Decision::Record(None));
        assert_eq!(decide(episode(true, None, true, false)), Decision::Ask);
    }

    #[test]
    fn berth_waits_while_argo_cd_runs_an_operation_and_asks_once_it_is_done() {
        let waiting = decide(episode(true, None, true, true));
        assert_eq!(waiting, Decision::Record(Some(Remediation::Pending)));
        // The next check: InSync is False by now, but the episode is still owed its request.
        assert_eq!(
            decide(episode(false, Some(Remediation::Pending), true, true)),
            Decision::Record(Some(Remediation::Pending))
        );
        assert_eq!(decide(episode(false, Some(Remediation::Pending), true, false)), Decision::Ask);
    }

    #[test]
    fn nothing_is_asked_when_reporting_or_for_objects_not_applied_yet() {
        let report = Episode { mode: DriftMode::Report, ..episode(true, None, true, false) };
        assert_eq!(decide(report), Decision::Record(None));
        // Missing since the commit (Argo CD has not applied it): no episode.
        assert_eq!(decide(episode(false, None, true, false)), Decision::Record(None));
        assert_eq!(decide(episode(true, None, false, false)), Decision::Record(None));
    }
}
