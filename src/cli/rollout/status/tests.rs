use super::*;

/// A rollout midway: staging done, production soaking its second batch of four,
/// one environment failing, two skipped, one failure on record.
fn midway() -> Rollout {
    let mut rollout: Rollout = crate::testing::example("rollout-checkout.yaml");
    rollout.metadata.generation = Some(2);
    rollout.status = Some(
        serde_yaml::from_str(
            r#"
observedGeneration: 2
phase: Progressing
reason: Soaking
message: "production batch 2/3: soaking until 2026-12-01T10:30:00Z"
progress: 3/7
currentStage: production
plan:
  environments: 7
  skipped: 2
  skippedEnvironments:
    - {name: checkout-legacy, reason: Held}
    - {name: web-prod, reason: OtherApp}
  plannedAt: "2026-12-01T08:00:00Z"
stages:
  - name: staging
    phase: Succeeded
    environments: [checkout-staging]
    batchSize: 1
    batchesDone: 1
    counts: {pending: 0, committing: 0, verifying: 0, promoted: 1, failed: 0, rolledBack: 0}
  - name: production
    phase: Progressing
    environments: [prod-a, prod-b, prod-c, prod-d, prod-e, prod-f]
    batchSize: 2
    batchesDone: 1
    counts: {pending: 2, committing: 0, verifying: 2, promoted: 2, failed: 0, rolledBack: 0}
    current:
      number: 2
      of: 3
      step: Committed
      commit: 0123456789abcdef0123456789abcdef01234567
      committedAt: "2026-12-01T09:50:00Z"
      healthySince: "2026-12-01T09:55:00Z"
      soakUntil: "2026-12-01T10:30:00Z"
      gate: {passed: 1, waiting: 0, failing: 1, failed: 0}
      failing:
        - {environment: prod-d, since: "2026-12-01T09:59:30Z"}
      metrics:
        - name: error-rate
          query: 'sum(rate(http_errors_total{namespace=~"tn-prod-c|tn-prod-d"}[2m]))'
          value: "0.2"
          verdict: Fail
          message: 0.2 > max 0.05
          measurements: 3
          failures: 1
          measuredAt: "2026-12-01T09:59:50Z"
failures:
  - environment: prod-x
    stage: production
    batch: 1
    reason: Degraded
    message: "Deployment checkout: 0/3 replicas available"
    at: "2026-12-01T09:00:00Z"
history:
  - {stage: staging, batch: 1, action: Promote, commit: aaaaaaaaaaaaaaaa, environments: 1, at: "2026-12-01T08:00:05Z"}
  - {stage: production, batch: 1, action: Promote, commit: bbbbbbbbbbbbbbbb, environments: 2, at: "2026-12-01T09:00:05Z"}
  - {stage: production, batch: 2, action: Promote, commit: 0123456789abcdef0123456789abcdef01234567, environments: 2, at: "2026-12-01T09:50:00Z"}
"#,
        )
        .expect("a status"),
    );
    rollout
}

fn now() -> Timestamp {
    "2026-12-01T10:00:00Z".parse().expect("a time")
}

#[test]
fn a_rollout_midway_shows_stages_the_batch_in_flight_skips_failures_and_history() {
    let text = format_status(&midway(), now());
    let expected = "\
Rollout payments/checkout-v1-9-0: checkout to v1.9.0
Phase:    Progressing (Soaking)
Message:  production batch 2/3: soaking until 2026-12-01T10:30:00Z
Progress: 3/7 promoted
Plan:     7 environments, 2 skipped, planned 2026-12-01T08:00:00Z (2h0m ago)

STAGE       PHASE        BATCHES  PENDING  COMMITTING  VERIFYING  PROMOTED  FAILED  ROLLED BACK
staging     Succeeded    1/1      0        0           0          1         0       0
production  Progressing  1/3      2        0           2          2         0       0

Batch 2/3 of stage production (Committed): 2 environments
  commit         0123456789ab at 2026-12-01T09:50:00Z (10m ago)
  healthy since  2026-12-01T09:55:00Z (5m ago)
  soak until     2026-12-01T10:30:00Z (in 30m)
  gate           1 passed, 0 waiting, 1 failing, 0 failed
  failing        prod-d since 2026-12-01T09:59:30Z (30s ago)
  metric         error-rate Fail: 0.2 > max 0.05; last 0.2 at 2026-12-01T09:59:50Z (10s ago), 1 of 3 measurements failed
                 sum(rate(http_errors_total{namespace=~\"tn-prod-c|tn-prod-d\"}[2m]))

Skipped (2):
  checkout-legacy  Held
  web-prod         OtherApp

Failures (1, newest last):
  2026-12-01T09:00:00Z (1h0m ago) production/1 prod-x: Degraded: Deployment checkout: 0/3 replicas available

History (last 3 of 3):
  2026-12-01T08:00:05Z (1h59m ago) staging/1 promoted 1 environment in aaaaaaaaaaaa
  2026-12-01T09:00:05Z (59m ago) production/1 promoted 2 environments in bbbbbbbbbbbb
  2026-12-01T09:50:00Z (10m ago) production/2 promoted 2 environments in 0123456789ab
";
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn a_new_rollout_says_berth_has_not_looked_at_it_and_shows_the_controls_set() {
    let mut rollout = midway();
    rollout.status = None;
    rollout.spec.paused = true;
    let text = format_status(&rollout, now());
    assert_eq!(
        text,
        "\
Rollout payments/checkout-v1-9-0: checkout to v1.9.0
Phase:    not looked at yet
Control:  spec.paused is true (`berth rollout resume` goes on)
"
    );
}

#[test]
fn a_frozen_rollout_says_until_when_and_when_the_next_freeze_starts() {
    let mut rollout = midway();
    let at = |text: &str| Time(text.parse().expect("a time"));
    let status = rollout.status.get_or_insert_with(Default::default);
    status.frozen = Some(berth_frozen(at("2026-12-01T12:00:00Z"), at("2026-12-04T16:00:00Z")));
    let text = format_status(&rollout, now());
    assert!(
        text.contains("Frozen:   until 2026-12-01T12:00:00Z (in 2h0m); next freeze 2026-12-04T16:00:00Z (in 3d6h)\n"),
        "\n{text}"
    );
}

fn berth_frozen(opens: Time, closes: Time) -> crate::api::rollout::FrozenStatus {
    crate::api::rollout::FrozenStatus {
        windows: vec!["Rollout: weekend".into()],
        opens_at: Some(opens),
        closes_at: Some(closes),
    }
}

#[test]
fn a_status_from_before_the_last_spec_change_says_so() {
    let mut rollout = midway();
    rollout.metadata.generation = Some(3);
    rollout.spec.abort = true;
    let text = format_status(&rollout, now());
    assert!(text.contains("Control:  spec.abort is true (nothing more is committed)\n"), "{text}");
    assert!(text.contains("Note:     the status predates the last spec change"), "{text}");
}

#[test]
fn long_lists_are_cut_and_say_how_many_more() {
    let mut rollout = midway();
    let status = rollout.status.as_mut().expect("a status");
    let plan = status.plan.as_mut().expect("a plan");
    plan.skipped = 250;
    plan.skipped_environments = (0..100)
        .map(|i| crate::api::rollout::Skipped { name: format!("held-{i:03}"), reason: "Held".into() })
        .collect();
    let entry = status.history[0].clone();
    status.history = vec![entry; 30];
    let text = format_status(&rollout, now());
    assert!(text.contains("Skipped (250):\n  held-000  Held\n"), "{text}");
    assert!(text.contains("  held-009  Held\n  … and 240 more\n"), "{text}");
    assert!(!text.contains("held-010"), "{text}");
    assert!(text.contains("History (last 10 of 30):"), "{text}");
}

#[test]
fn a_rollback_shows_what_is_done_and_what_is_left() {
    let mut rollout = midway();
    let status = rollout.status.as_mut().expect("a status");
    status.rollback = Some(
        serde_yaml::from_str(
            "{pending: [{stage: production, batch: 1}], current: {stage: production, batch: 2}, step: Marked, done: 0}",
        )
        .expect("a rollback"),
    );
    let text = format_status(&rollout, now());
    assert!(text.contains("\nRollback: 0 batches rolled back, now production/2 (Marked), 1 to go\n"), "{text}");
}

#[test]
fn durations_read_in_their_largest_units() {
    assert_eq!(human(0), "0s");
    assert_eq!(human(59), "59s");
    assert_eq!(human(60), "1m");
    assert_eq!(human(3599), "59m");
    assert_eq!(human(3600 * 3 + 60 * 20), "3h20m");
    assert_eq!(human(86_400 * 2 + 3600 * 4 + 59), "2d4h");
}

#[test]
fn an_approved_stage_shows_who_approved_it_and_a_break_glass() {
    let mut rollout = midway();
    let status = rollout.status.as_mut().expect("a status");
    status.stages[1].approval = Some(crate::api::rollout::AcceptedApproval {
        approver: "bob".into(),
        approved_at: Time("2026-12-01T09:00:00Z".parse().expect("a time")),
        accepted_at: Time("2026-12-01T09:05:00Z".parse().expect("a time")),
        key_id: "k1".into(),
        freeze_override: true,
        classes: vec!["production".into()],
        spec_digest: Some(crate::approval::digest::rollout_digest(&midway().spec)),
        expires_at: Some(Time("2026-12-01T11:00:00Z".parse().expect("a time"))),
        token_id: Some("tok-1".into()),
    });
    let out = format_status(&rollout, now());
    assert!(
        out.contains("\nApprovals:\n  production  by bob at 2026-12-01T09:00:00Z (1h0m ago), key k1, freeze override (break-glass) until 2026-12-01T11:00:00Z\n"),
        "{out}"
    );
    let later = now().checked_add(k8s_openapi::jiff::SignedDuration::from_hours(2)).expect("a time");
    assert!(format_status(&rollout, later).contains("freeze override (break-glass) expired at 2026-12-01T11:00:00Z"));
    // After a spec change the record no longer counts, and says so.
    rollout.spec.not_before = Some(Time("2026-12-01T08:00:00Z".parse().expect("a time")));
    assert!(format_status(&rollout, now()).contains(
        "until 2026-12-01T11:00:00Z; voided: the spec changed since (the rest of the stage waits for a new approval)\n"
    ));
    assert!(!format_status(&midway(), now()).contains("Approvals:"));
}
