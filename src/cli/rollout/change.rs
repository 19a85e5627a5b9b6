//! What `berth rollout pause|resume|abort|retry` change: each one JSON merge patch a
//! person could send with kubectl, worked out here from the rollout as it is (pure),
//! with the line that says what changed and the kubectl command that does the same.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api::{
    Rollout,
    rollout::{RETRY_ANNOTATION, RolloutPhase},
};

/// A control a person applies to a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Abort,
    Retry,
}

/// What a control does to one rollout.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Send `patch`; `summary` says what it changes.
    Patch { patch: Value, summary: String, kubectl: String, hint: Option<String> },
    /// Nothing to send: the rollout already is that way.
    Nothing { summary: String, hint: Option<String> },
}

/// Why a control is not sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "aborting {name} cannot be undone: nothing more is committed and the environments stay where they are (a rollback is not started); run again with --yes to abort, or `berth rollout pause` to stop for now"
    )]
    AbortNeedsYes { name: String },
    #[error("{name} is {phase:?}: nothing more will happen to it; create a new Rollout")]
    Finished { name: String, phase: RolloutPhase },
}

/// The change `control` makes to `rollout` at `now`; `yes` confirms an abort.
pub fn change(rollout: &Rollout, control: Control, yes: bool, now: Timestamp) -> Result<Change, Refusal> {
    let name = format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any());
    let phase = rollout.status.as_ref().and_then(|s| s.phase);
    let spec = &rollout.spec;
    let set_spec = |field: &str, from: bool, to: bool, verb: &str| {
        if from == to {
            return Change::Nothing { summary: format!("{name} is already {verb} (spec.{field} is {to})"), hint: None };
        }
        let patch = json!({ "spec": { field: to } });
        Change::Patch {
            summary: format!("{verb} {name}: spec.{field} {from} → {to}"),
            kubectl: kubectl_patch(rollout, &patch),
            patch,
            hint: None,
        }
    };
    // Pausing or aborting a finished rollout changes nothing it will do; say so
    // rather than write a field nobody acts on.
    if let Some(phase) = phase.filter(|p| p.is_terminal()) {
        return Err(Refusal::Finished { name, phase });
    }
    let change = match control {
        Control::Pause => set_spec("paused", spec.paused, true, "paused"),
        Control::Resume => {
            let mut change = set_spec("paused", spec.paused, false, "resumed");
            let failed = rollout.status.as_ref().and_then(|s| s.reason.as_deref())
                == Some(crate::rollout::machine::reasons::GATE_FAILED);
            if failed {
                let hint = format!(
                    "{name} stopped because a gate failed, not because it was paused: `berth rollout retry` looks at the failed batch again"
                );
                match &mut change {
                    Change::Patch { hint: h, .. } | Change::Nothing { hint: h, .. } => *h = Some(hint),
                }
            }
            change
        }
        Control::Abort if !spec.abort && !yes => return Err(Refusal::AbortNeedsYes { name }),
        Control::Abort => set_spec("abort", spec.abort, true, "aborted"),
        Control::Retry => {
            let value = now.to_string();
            let patch = json!({ "metadata": { "annotations": { RETRY_ANNOTATION: value } } });
            let failed = rollout.status.as_ref().and_then(|s| s.reason.as_deref())
                == Some(crate::rollout::machine::reasons::GATE_FAILED);
            let hint = (!failed).then(|| {
                format!("{name} has no failed batch now; retry only looks again at a batch whose gate failed")
            });
            Change::Patch {
                summary: format!("asked {name} to look at its failed batch again: {RETRY_ANNOTATION}={value}"),
                kubectl: format!(
                    "kubectl annotate rollouts.berth.dev {} -n {} --overwrite {RETRY_ANNOTATION}={value}",
                    rollout.name_any(),
                    rollout.namespace().unwrap_or_default()
                ),
                patch,
                hint,
            }
        }
    };
    Ok(change)
}

/// The kubectl command sending `patch`. The resource is spelled out in full:
/// Argo Rollouts' `rollout` may be installed beside Berth's.
fn kubectl_patch(rollout: &Rollout, patch: &Value) -> String {
    format!(
        "kubectl patch rollouts.berth.dev {} -n {} --type merge -p '{patch}'",
        rollout.name_any(),
        rollout.namespace().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::RolloutStatus;

    fn rollout(paused: bool, abort: bool, phase: RolloutPhase, reason: &str) -> Rollout {
        let mut rollout: Rollout = crate::testing::example("rollout-checkout.yaml");
        rollout.spec.paused = paused;
        rollout.spec.abort = abort;
        rollout.status =
            Some(RolloutStatus { phase: Some(phase), reason: Some(reason.to_owned()), ..Default::default() });
        rollout
    }

    fn now() -> Timestamp {
        "2026-12-01T10:00:00Z".parse().expect("a time")
    }

    fn patch(change: Result<Change, Refusal>) -> (Value, String, String, Option<String>) {
        match change {
            Ok(Change::Patch { patch, summary, kubectl, hint }) => (patch, summary, kubectl, hint),
            other => panic!("expected a patch, got {other:?}"),
        }
    }

    #[test]
    fn pause_and_resume_flip_spec_paused_with_the_kubectl_command_that_does_the_same() {
        let running = rollout(false, false, RolloutPhase::Progressing, "Soaking");
        let (body, summary, kubectl, hint) = patch(change(&running, Control::Pause, false, now()));
        assert_eq!(body, json!({"spec": {"paused": true}}));
        assert_eq!(summary, "paused payments/checkout-v1-9-0: spec.paused false → true");
        assert_eq!(
            kubectl,
            r#"kubectl patch rollouts.berth.dev checkout-v1-9-0 -n payments --type merge -p '{"spec":{"paused":true}}'"#
        );
        assert_eq!(hint, None);
        let paused = rollout(true, false, RolloutPhase::Paused, "UserPaused");
        let (body, summary, _, _) = patch(change(&paused, Control::Resume, false, now()));
        assert_eq!(body, json!({"spec": {"paused": false}}));
        assert_eq!(summary, "resumed payments/checkout-v1-9-0: spec.paused true → false");
        assert_eq!(
            change(&paused, Control::Pause, false, now()),
            Ok(Change::Nothing {
                summary: "payments/checkout-v1-9-0 is already paused (spec.paused is true)".into(),
                hint: None
            })
        );
    }

    #[test]
    fn resuming_a_rollout_a_failed_gate_stopped_points_at_retry() {
        let failed = rollout(false, false, RolloutPhase::Paused, "GateFailed");
        match change(&failed, Control::Resume, false, now()) {
            Ok(Change::Nothing { hint: Some(hint), .. }) => assert!(hint.contains("`berth rollout retry`"), "{hint}"),
            other => panic!("expected a hint, got {other:?}"),
        }
    }

    #[test]
    fn abort_needs_yes_because_it_cannot_be_undone() {
        let running = rollout(false, false, RolloutPhase::Progressing, "Verifying");
        let refused = change(&running, Control::Abort, false, now()).expect_err("needs --yes");
        assert!(refused.to_string().contains("cannot be undone"), "{refused}");
        assert!(refused.to_string().contains("--yes"), "{refused}");
        let (body, summary, _, _) = patch(change(&running, Control::Abort, true, now()));
        assert_eq!(body, json!({"spec": {"abort": true}}));
        assert_eq!(summary, "aborted payments/checkout-v1-9-0: spec.abort false → true");
    }

    #[test]
    fn retry_sets_the_annotation_to_the_current_time() {
        let failed = rollout(false, false, RolloutPhase::Paused, "GateFailed");
        let (body, summary, kubectl, hint) = patch(change(&failed, Control::Retry, false, now()));
        assert_eq!(body, json!({"metadata": {"annotations": {"berth.dev/retry": "2026-12-01T10:00:00Z"}}}));
        assert!(summary.ends_with("berth.dev/retry=2026-12-01T10:00:00Z"), "{summary}");
        assert_eq!(
            kubectl,
            "kubectl annotate rollouts.berth.dev checkout-v1-9-0 -n payments --overwrite berth.dev/retry=2026-12-01T10:00:00Z"
        );
        assert_eq!(hint, None);
        let running = rollout(false, false, RolloutPhase::Progressing, "Verifying");
        let (_, _, _, hint) = patch(change(&running, Control::Retry, false, now()));
        assert!(hint.is_some_and(|h| h.contains("no failed batch")));
    }

    #[test]
    fn a_finished_rollout_is_not_patched() {
        for phase in [RolloutPhase::Succeeded, RolloutPhase::RolledBack, RolloutPhase::Aborted] {
            let done = rollout(false, phase == RolloutPhase::Aborted, phase, "Done");
            for control in [Control::Pause, Control::Resume, Control::Abort, Control::Retry] {
                assert_eq!(
                    change(&done, control, true, now()),
                    Err(Refusal::Finished { name: "payments/checkout-v1-9-0".into(), phase }),
                    "{control:?} on {phase:?}"
                );
            }
        }
    }
}
