//! `berth rollout status`: a Rollout's status as text a person reads top to bottom —
//! where it is and why, each stage's counts, the batch in flight, then what was
//! skipped, what failed and the last batches committed. Pure: the object and the
//! clock in, text out.

use std::fmt::Write;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::ResourceExt;

use crate::api::{
    Rollout,
    rollout::{BatchStatus, HistoryAction, RollbackStatus, RolloutStatus, StagePhase, StageStatus},
};

/// History lines shown (status keeps up to 200; git holds them all).
const HISTORY_SHOWN: usize = 10;
/// Failures shown, newest (status keeps up to 50).
const FAILURES_SHOWN: usize = 10;
/// Skipped environments named (all are counted).
const SKIPPED_SHOWN: usize = 10;
/// Environments named per line of a batch's failing list.
const FAILING_SHOWN: usize = 5;

/// The status of `rollout` as text, times also given relative to `now`.
pub fn format_status(rollout: &Rollout, now: Timestamp) -> String {
    let mut out = String::new();
    let name = format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any());
    let spec = &rollout.spec;
    let _ = writeln!(out, "Rollout {name}: {} to {}", spec.app, spec.revision);
    let empty = RolloutStatus::default();
    let status = rollout.status.as_ref().unwrap_or(&empty);
    let phase = status.phase.map_or_else(|| "not looked at yet".to_owned(), |p| format!("{p:?}"));
    let reason = status.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
    let _ = writeln!(out, "Phase:    {phase}{reason}");
    if let Some(message) = &status.message {
        let _ = writeln!(out, "Message:  {message}");
    }
    if let Some(frozen) = &status.frozen {
        let opens =
            frozen.opens_at.as_ref().map_or_else(|| "no end known".to_owned(), |t| format!("until {}", when(t, now)));
        let closes = frozen.closes_at.as_ref().map(|t| format!("; next freeze {}", when(t, now))).unwrap_or_default();
        let _ = writeln!(out, "Frozen:   {opens}{closes}");
    }
    let mut controls = Vec::new();
    if spec.paused {
        controls.push("spec.paused is true (`berth rollout resume` goes on)");
    }
    if spec.abort {
        controls.push("spec.abort is true (nothing more is committed)");
    }
    for control in controls {
        let _ = writeln!(out, "Control:  {control}");
    }
    if let Some(progress) = &status.progress {
        let _ = writeln!(out, "Progress: {progress} promoted");
    }
    if let Some(plan) = &status.plan {
        let planned = plan.planned_at.as_ref().map(|t| format!(", planned {}", when(t, now))).unwrap_or_default();
        let _ =
            writeln!(out, "Plan:     {}, {} skipped{planned}", plural(plan.environments, "environment"), plan.skipped);
    }
    if status.observed_generation.is_some_and(|g| Some(g) != rollout.metadata.generation) {
        let _ = writeln!(out, "Note:     the status predates the last spec change; Berth has not looked at it yet");
    }
    if !status.stages.is_empty() {
        out.push('\n');
        out.push_str(&stage_table(&status.stages));
    }
    for stage in &status.stages {
        if let Some(batch) = &stage.current {
            out.push('\n');
            current_batch(&mut out, stage, batch, now);
        }
    }
    if let Some(rollback) = &status.rollback {
        out.push('\n');
        rollback_lines(&mut out, rollback);
    }
    let approved: Vec<_> = status.stages.iter().filter_map(|s| s.approval.as_ref().map(|a| (s, a))).collect();
    if !approved.is_empty() {
        let _ = writeln!(out, "\nApprovals:");
        let width = approved.iter().map(|(stage, _)| stage.name.len()).max().unwrap_or(0);
        let digest = crate::approval::digest::rollout_digest(&rollout.spec);
        for (stage, approval) in approved {
            // Only a stage with batches to go waits for a new approval.
            let going = matches!(stage.phase, StagePhase::Pending | StagePhase::Progressing);
            let voided = if going && !approval.covers(&digest) {
                "; voided: the spec changed since (the rest of the stage waits for a new approval)"
            } else {
                ""
            };
            let stage = &stage.name;
            let glass = match (&approval.freeze_override, &approval.expires_at) {
                (false, _) => String::new(),
                (true, Some(until)) if until.0 > now => format!(", freeze override (break-glass) until {}", until.0),
                (true, Some(until)) => format!(", freeze override (break-glass) expired at {}", until.0),
                (true, None) => ", freeze override (break-glass)".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {stage:width$}  by {} at {}, key {}{glass}{voided}",
                approval.approver,
                when(&approval.approved_at, now),
                approval.key_id
            );
        }
    }
    if let Some(plan) = status.plan.as_ref().filter(|p| p.skipped > 0) {
        let _ = writeln!(out, "\nSkipped ({}):", plan.skipped);
        let width = plan.skipped_environments.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for skipped in plan.skipped_environments.iter().take(SKIPPED_SHOWN) {
            let _ = writeln!(out, "  {:width$}  {}", skipped.name, skipped.reason);
        }
        let named = plan.skipped_environments.len().min(SKIPPED_SHOWN);
        more(&mut out, (plan.skipped as usize).saturating_sub(named));
    }
    if !status.failures.is_empty() {
        let shown = status.failures.len().min(FAILURES_SHOWN);
        let _ = writeln!(out, "\nFailures ({}, newest last):", status.failures.len());
        for failure in &status.failures[status.failures.len() - shown..] {
            let _ = writeln!(
                out,
                "  {} {}/{} {}: {}: {}",
                when(&failure.at, now),
                failure.stage,
                failure.batch,
                failure.environment,
                failure.reason,
                failure.message
            );
        }
    }
    if !status.history.is_empty() {
        let shown = status.history.len().min(HISTORY_SHOWN);
        let _ = writeln!(out, "\nHistory (last {shown} of {}):", status.history.len());
        for entry in &status.history[status.history.len() - shown..] {
            let action = match entry.action {
                HistoryAction::Promote => "promoted",
                HistoryAction::Rollback => "rolled back",
            };
            let _ = writeln!(
                out,
                "  {} {}/{} {action} {} in {}",
                when(&entry.at, now),
                entry.stage,
                entry.batch,
                plural(entry.environments, "environment"),
                short(&entry.commit)
            );
        }
    }
    out
}

/// One row per stage: phase, batches done and the environments by where they are.
fn stage_table(stages: &[StageStatus]) -> String {
    let header =
        ["STAGE", "PHASE", "BATCHES", "PENDING", "COMMITTING", "VERIFYING", "PROMOTED", "FAILED", "ROLLED BACK"];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for stage in stages {
        let c = &stage.counts;
        let batches = crate::rollout::plan::batches(stage);
        rows.push(vec![
            stage.name.clone(),
            format!("{:?}", stage.phase),
            format!("{}/{batches}", stage.batches_done),
            c.pending.to_string(),
            c.committing.to_string(),
            c.verifying.to_string(),
            c.promoted.to_string(),
            c.failed.to_string(),
            c.rolled_back.to_string(),
        ]);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:width$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

fn current_batch(out: &mut String, stage: &StageStatus, batch: &BatchStatus, now: Timestamp) {
    let environments = crate::rollout::plan::batch(stage, batch.number);
    let _ = writeln!(
        out,
        "Batch {}/{} of stage {} ({:?}): {}",
        batch.number,
        batch.of,
        stage.name,
        batch.step,
        plural(u32::try_from(environments.len()).unwrap_or(u32::MAX), "environment")
    );
    let commit = batch.commit.as_deref().map_or_else(|| "not pushed yet".to_owned(), |c| short(c).to_owned());
    let committed = batch.committed_at.as_ref().map(|t| format!(" at {}", when(t, now))).unwrap_or_default();
    let _ = writeln!(out, "  commit         {commit}{committed}");
    if let Some(since) = &batch.healthy_since {
        let _ = writeln!(out, "  healthy since  {}", when(since, now));
    }
    if let Some(until) = &batch.soak_until {
        let _ = writeln!(out, "  soak until     {}", when(until, now));
    }
    let g = &batch.gate;
    let _ = writeln!(
        out,
        "  gate           {} passed, {} waiting, {} failing, {} failed",
        g.passed, g.waiting, g.failing, g.failed
    );
    for failing in batch.failing.iter().take(FAILING_SHOWN) {
        let _ = writeln!(out, "  failing        {} since {}", failing.environment, when(&failing.since, now));
    }
    more(out, batch.failing.len().saturating_sub(FAILING_SHOWN));
    for m in batch.metrics.iter().take(FAILING_SHOWN) {
        let whose = m.environment.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
        let value = m.value.as_deref().unwrap_or("no value");
        let why = m.message.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  metric         {}{whose} {:?}{why}; last {value} at {}, {} of {} measurements failed",
            m.name,
            m.verdict,
            when(&m.measured_at, now),
            m.failures,
            m.measurements
        );
        let _ = writeln!(out, "                 {}", m.query);
    }
    more(out, batch.metrics.len().saturating_sub(FAILING_SHOWN));
}

fn rollback_lines(out: &mut String, rollback: &RollbackStatus) {
    let current = match (&rollback.current, rollback.step) {
        (Some(batch), Some(step)) => format!(", now {}/{} ({step:?})", batch.stage, batch.batch),
        (Some(batch), None) => format!(", now {}/{}", batch.stage, batch.batch),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "Rollback: {} rolled back{current}, {} to go",
        plural(rollback.done, "batch"),
        rollback.pending.len()
    );
}

/// An absolute time and how far it is from `now` ("in 5m", "3h ago").
fn when(time: &Time, now: Timestamp) -> String {
    let seconds = time.0.as_second() - now.as_second();
    let span = human(seconds.unsigned_abs());
    match seconds {
        0 => format!("{} (now)", time.0),
        s if s > 0 => format!("{} (in {span})", time.0),
        _ => format!("{} ({span} ago)", time.0),
    }
}

/// A duration in its largest whole unit, and the next one for hours and days: `45s`, `12m`, `3h20m`, `2d4h`.
fn human(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The first 12 characters of a commit id, as `git log --oneline` would show it.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn plural(count: u32, noun: &str) -> String {
    crate::rollout::counted(usize::try_from(count).unwrap_or(usize::MAX), noun)
}

fn more(out: &mut String, hidden: usize) {
    if hidden > 0 {
        let _ = writeln!(out, "  … and {hidden} more");
    }
}

#[cfg(test)]
mod tests;
