//! Freeze windows through the real operator (tier 2): a recurring window around now
//! holds a rollout's next batch and releases it when it ends; `notBefore` holds its
//! start; a class's window holds the re-render of a class change; a window both one-shot and recurring is refused
//! by the schema (one Berth cannot read is refused by the webhook: `e2e/tests/webhook`).

use std::time::Duration;

use berth::api::{EnvironmentClass, environment_request::Phase, rollout::RolloutPhase};
use berth_e2e::{rollout::*, suite::*};
use k8s_openapi::jiff::{SignedDuration, Timestamp, tz::TimeZone};
use kube::Api;

/// How long the windows below hold, from when the test writes them.
const HOLD: i64 = 30;

#[tokio::test]
async fn a_recurring_freeze_around_now_holds_the_next_batch_and_releases_it_when_it_ends() {
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    // Every day at this minute in New York, for long enough to end HOLD seconds from now.
    let zone = TimeZone::get("America/New_York").expect("the bundled time zone database");
    let now = Timestamp::now().to_zoned(zone);
    let duration = i64::from(now.second()) + HOLD;
    let window = format!(
        "freezeWindows: [{{schedule: '{} {} * * *', duration: {duration}s, timeZone: America/New_York, reason: e2e freeze}}]",
        now.minute(),
        now.hour()
    );
    let before = head();
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", &window)).await;

    let waiting = wait_rollout(&tenant, "web-v2", RolloutPhase::Waiting).await;
    // What a person sees, while the window lasts (`--nocapture` prints it).
    let shown = berth_rollout_ok(&["status", "web-v2", "-n", &tenant]);
    let status = waiting.status.unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("Frozen"), "{status:?}");
    assert!(status.message.as_deref().unwrap_or_default().contains("Rollout: e2e freeze"), "{status:?}");
    let frozen = status.frozen.expect("status.frozen");
    let opens = frozen.opens_at.expect("when the freeze ends").0;
    let start_of_minute = now.timestamp().as_second() - i64::from(now.second());
    assert_eq!(opens.as_second(), start_of_minute + duration, "the window's end");
    // The same minute tomorrow, local time: 24 hours later, or 23 or 25 across a clock change.
    let next = frozen.closes_at.as_ref().map(|t| (t.0.as_second() - start_of_minute) / 3600);
    assert!(matches!(next, Some(23..=25)), "{:?}", frozen.closes_at);
    let ours =
        |since: &str| messages_since(since).into_iter().filter(|(_, m)| m.contains(&format!("{tenant}/"))).count();
    assert_eq!(ours(&before), 0, "nothing committed while frozen");
    println!("berth rollout status web-v2 -n {tenant} (frozen):\n{shown}");
    assert!(shown.contains("Frozen:   until ") && shown.contains("; next freeze "), "{shown}");
    assert!(shown.contains("e2e freeze"), "{shown}");

    let done = wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    task.abort();
    let status = done.status.unwrap_or_default();
    assert_eq!(status.frozen, None);
    let first = status.history.first().expect("the first batch").at.0;
    assert!(first >= opens, "the first batch at {first}, before the freeze ended at {opens}");
    assert!(
        first.duration_since(opens) < SignedDuration::from_secs(15),
        "released at its end, not at a resync: {first} after {opens}"
    );
}

#[tokio::test]
async fn not_before_holds_the_start_until_its_time_and_the_rollout_starts_then() {
    let argocd = FakeArgoCd::default();
    let (tenant, task) = three_environments(&argocd).await;
    let start = Timestamp::from_second(Timestamp::now().as_second() + HOLD).expect("a time");
    let before = head();
    kubectl_apply(&rollout_yaml(&tenant, "web-v2", "v2", &format!("notBefore: '{start}'"))).await;

    let waiting = wait_rollout(&tenant, "web-v2", RolloutPhase::Waiting).await;
    let status = waiting.status.unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("NotBefore"), "{status:?}");
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains(&format!("spec.notBefore {start}")), "{message}");
    assert!(status.plan.is_none(), "planned only when it starts: {:?}", status.plan);
    let ours =
        |since: &str| messages_since(since).into_iter().filter(|(_, m)| m.contains(&format!("{tenant}/"))).count();
    assert_eq!(ours(&before), 0, "nothing committed before notBefore");

    let done = wait_rollout(&tenant, "web-v2", RolloutPhase::Succeeded).await;
    task.abort();
    let status = done.status.unwrap_or_default();
    let first = status.history.first().expect("the first batch").at.0;
    assert!(first >= start, "the first batch at {first}, before notBefore {start}");
    assert!(first.duration_since(start) < SignedDuration::from_secs(15), "started at its time: {first} after {start}");
}

/// A class of `pods` pods, frozen from a minute ago until `end`.
fn frozen_class_yaml(name: &str, pods: u32, end: Timestamp) -> String {
    let start = Timestamp::now() - SignedDuration::from_mins(1);
    let window = format!("freezeWindows: [{{start: '{start}', end: '{end}', reason: quarter close}}]");
    class_yaml(name, 1, &window).replace("pods: '10'", &format!("pods: '{pods}'"))
}

#[tokio::test]
async fn a_class_freeze_holds_the_re_render_of_a_class_change_until_it_ends() {
    operator().await;
    let (tenant, class) = (format!("tn-{}", suffix()), format!("fz-{}", suffix()));
    let end = Timestamp::now() + SignedDuration::from_secs(2 * HOLD);
    kubectl_apply(&frozen_class_yaml(&class, 10, end)).await;
    kubectl_apply(&tenant_yaml(&tenant, &[&class], "{}")).await;
    wait_tenant_namespace(&tenant).await;
    // A new environment is not a class-wide re-render: it is committed during the
    // freeze (Ready or not: other tests of this binary install Argo CD's CRDs).
    kubectl_apply(&request_yaml(&tenant, "web", &tenant, &class, "")).await;
    let path = wait_for(Duration::from_secs(60), "the new environment to be committed", || {
        let tenant = tenant.clone();
        async move {
            let status = request(&tenant, "web").await.status?;
            let provisioned = matches!(status.phase, Some(Phase::Provisioning | Phase::Ready));
            let gitops = status.gitops.filter(|g| g.commit.is_some() && provisioned)?;
            gitops.path
        }
    })
    .await;
    let before = head();
    assert!(Timestamp::now() + SignedDuration::from_secs(10) < end, "provisioning took the whole freeze");

    kubectl_apply(&frozen_class_yaml(&class, 20, end)).await;
    let api: Api<EnvironmentClass> = Api::all(cluster().client("admin").await);
    let held = wait_for(Duration::from_secs(30), "the class change to be held", || {
        let (api, name) = (api.clone(), class.clone());
        async move {
            let class = api.get_opt(&name).await.ok().flatten()?;
            let rendered = class.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Rendered")?.clone();
            (rendered.reason == "Frozen").then_some((class, rendered))
        }
    })
    .await;
    let (held_class, rendered) = held;
    assert_eq!(held_class.status.as_ref().and_then(|s| s.observed_generation), Some(1), "{rendered:?}");
    assert!(rendered.message.contains("quarter close"), "{}", rendered.message);
    assert!(rendered.message.contains(&format!("waits until {end}")), "{}", rendered.message);
    assert!(!changed_since(&before, &path), "the change went out during the freeze");

    wait_for(Duration::from_secs(3 * HOLD as u64), "the class change to be re-rendered", || {
        let (api, name) = (api.clone(), class.clone());
        async move {
            let class = api.get_opt(&name).await.ok().flatten()?;
            (class.status?.observed_generation == Some(2)).then_some(())
        }
    })
    .await;
    let after = Timestamp::now();
    assert!(after >= end, "re-rendered at {after}, before the freeze ended at {end}");
    wait_for(Duration::from_secs(30), "the environment's folder to hold the change", || {
        let (before, path) = (before.clone(), path.clone());
        async move { changed_since(&before, &path).then_some(()) }
    })
    .await;
    let files = files_at_head(&remote(), &path).expect("committed");
    assert!(files.values().any(|f| f.contains("pods: '20'") || f.contains("pods: \"20\"")), "{files:#?}");
}

/// Whether a commit since `before` changed the folder `path`.
fn changed_since(before: &str, path: &str) -> bool {
    messages_since(before).iter().any(|(commit, _)| changed_folders(commit).iter().any(|f| f == path))
}

#[tokio::test]
async fn a_freeze_window_both_one_shot_and_recurring_is_refused_by_the_schema() {
    // CEL in the CRD, no webhook: a Freeze's window as much as a Rollout's.
    operator().await;
    let name = format!("fz-{}", suffix());
    let both = format!(
        "apiVersion: berth.dev/v1alpha1
kind: Freeze
metadata: {{name: {name}}}
spec:
  windows: [{{schedule: '0 0 1 1 *', duration: 1m, start: '2030-01-01T00:00:00Z', end: '2030-01-02T00:00:00Z'}}]
"
    );
    let refused = cluster().kubectl("admin", &["apply", "-f", "-"], Some(&both)).await;
    assert!(!refused.success, "a window both one-shot and recurring was admitted");
    assert!(refused.stderr.contains("either one-shot (start and end) or recurring"), "{}", refused.stderr);
}
