//! EnvironmentClass controller: validates the class into status, counts its
//! environments and re-renders them all when the class changes, so the GitOps
//! writer batches those renders into one commit. `Valid` and `Rendered` say what
//! it cannot do, with a Warning event when either turns False. While a freeze
//! window of the class or of the cluster covers now, the re-render waits (its
//! environments keep their rendering) and goes out when the freeze ends.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{Api, Resource, ResourceExt, runtime::controller::Action};

use super::{Context, Error, events::condition_event, request};
use crate::api::{
    EnvironmentClass, EnvironmentRequest,
    conditions::{self, ConditionStatus, Observation, reasons, set_condition, types},
    environment_class::EnvironmentClassStatus,
};

/// Re-renders every provisioned environment of a changed class at once, so the GitOps
/// writer batches them into one commit. Each goes through the request pipeline
/// (validate → build → apply), so a request the class no longer allows is not
/// re-rendered (its own reconcile reports why). Their request reconciles wait for this
/// (they see the class status lagging its generation) and then find nothing to commit.
async fn rerender(
    class: &Arc<EnvironmentClass>,
    requests: &[Arc<EnvironmentRequest>],
    ctx: &Context,
) -> Result<(), Error> {
    // A class that now needs approval keeps its environments as they are: nothing
    // unapproved is (re)provisioned.
    if class.spec.approval.required {
        return Ok(());
    }
    let mut rerendered = Vec::new();
    for request in requests.iter().filter(|r| crate::policy::budget::is_provisioned(r)) {
        rerendered.extend(request::rerender(request, class.clone(), ctx).await);
    }
    // Every rendering first, then all of them to the writer at once: its batch window
    // then holds them all, however long rendering took (one commit for the class).
    let commits = rerendered.into_iter().map(|environment| request::commit_rerendered(environment, ctx));
    let mut count = 0;
    for result in futures::future::join_all(commits).await {
        count += usize::from(result?.is_some());
    }
    if count > 0 {
        tracing::info!(class = %class.name_any(), environments = count, "re-rendered the class's environments");
    }
    Ok(())
}

pub async fn reconcile(class: Arc<EnvironmentClass>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Judged against the status last written, even before the index shows it.
    let class = ctx.class_writes.as_last_written(class, |c, written| c.status = Some(written));
    let index = ctx.index().await;
    let requests = index.requests_of_class(&class.name_any());
    let now = Timestamp::now();
    let mut requeue = super::RESYNC;
    let changed = class.status.as_ref().and_then(|s| s.observed_generation) != class.metadata.generation;
    // Only a change with environments to re-render waits (a new class never does).
    let rerenders = changed && requests.iter().any(|r| crate::policy::budget::is_provisioned(r));
    let freeze = rerenders.then(|| super::rollout::freezes(index).for_class(&class.name_any()).check(now));
    let rerendered = match freeze {
        Some(verdict) if verdict.frozen() => {
            if let Some(opens) = verdict.opens_at {
                let after = Duration::try_from(opens.duration_since(now)).unwrap_or_default();
                requeue = requeue.min(after + Duration::from_millis(100));
            }
            Rerender::Held(verdict)
        }
        _ if changed => rerender(&class, &requests, &ctx).await.map_or_else(Rerender::Failed, |()| Rerender::Done),
        _ => Rerender::Done,
    };
    let environments = requests
        .iter()
        .filter(|r| r.spec.class == class.name_any())
        .filter(|r| crate::policy::budget::is_provisioned(r))
        .count();
    let status = next_status(&class, environments, &rerendered, &Time(now));
    if class.status.as_ref() != Some(&status) {
        let api = Api::<EnvironmentClass>::all(ctx.client.clone());
        super::apply_status_recorded(&api, class.as_ref(), &status, &ctx.class_writes, ()).await?;
        announce(&class, &status, &ctx).await;
    }
    // A failed re-render is retried as its error says; the status above told it once.
    if let Rerender::Failed(error) = rerendered {
        return Err(error);
    }
    Ok(Action::requeue(requeue))
}

/// The classes whose change waits to be re-rendered (a Freeze change may release them).
pub(super) fn held(index: &crate::index::Index) -> Vec<kube::runtime::reflector::ObjectRef<EnvironmentClass>> {
    index
        .classes
        .state()
        .iter()
        .filter(|c| c.status.as_ref().and_then(|s| s.observed_generation) != c.metadata.generation)
        .map(|c| kube::runtime::reflector::ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// How re-rendering the class's environments for this generation went.
enum Rerender {
    /// Done, or nothing to do.
    Done,
    /// Why it could not be done.
    Failed(Error),
    /// A freeze window holds it.
    Held(crate::freeze::Verdict),
}

/// The class's status (pure; transition times kept when unchanged). Unless the
/// re-render is done, `observedGeneration` stays behind, which keeps its
/// provisioned requests waiting and makes the next pass try again.
fn next_status(
    class: &EnvironmentClass,
    environments: usize,
    rerender: &Rerender,
    now: &Time,
) -> EnvironmentClassStatus {
    let mut status: EnvironmentClassStatus = class.status.clone().unwrap_or_default();
    let generation = class.metadata.generation;
    if matches!(rerender, Rerender::Done) {
        status.observed_generation = generation;
    }
    status.environments = u32::try_from(environments).unwrap_or(u32::MAX);
    let problems = crate::policy::class::problems(class);
    let (state, reason, message) = if problems.is_empty() {
        (ConditionStatus::True, reasons::VALID, "the class can be requested".to_owned())
    } else {
        (ConditionStatus::False, reasons::INVALID, problems.join("; "))
    };
    let valid = Observation { type_: types::VALID, status: state, reason, message, observed_generation: generation };
    set_condition(&mut status.conditions, valid, now);
    let generation_text = generation.unwrap_or_default();
    let (state, reason, message) = match rerender {
        Rerender::Done => (
            ConditionStatus::True,
            reasons::RENDERED,
            format!("its environments are rendered from generation {generation_text}"),
        ),
        Rerender::Held(verdict) => (
            ConditionStatus::False,
            reasons::FROZEN,
            format!(
                "generation {generation_text} is not rendered yet: {}; its environments keep their last rendering until then",
                verdict.message("re-rendering its environments")
            ),
        ),
        Rerender::Failed(error) => (
            ConditionStatus::False,
            reasons::RERENDER_FAILED,
            format!(
                "cannot re-render its environments for generation {generation_text}: {error}; they keep their last rendering until this succeeds, and Berth retries on its own (check the GitOps remote and `berth run`'s /readyz)"
            ),
        ),
    };
    let rendered =
        Observation { type_: types::RENDERED, status: state, reason, message, observed_generation: generation };
    set_condition(&mut status.conditions, rendered, now);
    status
}

/// Events for `Valid` and `Rendered` turning False (or True again); best effort.
async fn announce(class: &EnvironmentClass, status: &EnvironmentClassStatus, ctx: &Context) {
    let before = class.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    for type_ in [types::VALID, types::RENDERED] {
        let Some(after) = conditions::find(&status.conditions, type_) else {
            continue;
        };
        if let Some(event) = condition_event(conditions::find(before, type_), after) {
            ctx.events.publish_or_log(&event, &class.object_ref(&())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("valid"))
    }

    /// The preview class, changed to generation 2 after generation 1 was rendered.
    fn changed_class() -> EnvironmentClass {
        let mut class = crate::testing::class("preview");
        class.metadata.generation = Some(2);
        class.status = Some(EnvironmentClassStatus { observed_generation: Some(1), ..Default::default() });
        class
    }

    fn commit_failed() -> Error {
        Error::Commit { path: "clusters/in-cluster/tenants/payments/web".into(), source: crate::gitops::Error::Stopped }
    }

    #[test]
    fn a_failed_re_render_says_so_and_keeps_the_generation_behind() {
        let class = changed_class();
        let status = next_status(&class, 3, &Rerender::Failed(commit_failed()), &at(10));
        assert_eq!(status.observed_generation, Some(1), "requests keep waiting and the next pass retries");
        let rendered = conditions::find(&status.conditions, types::RENDERED).expect("Rendered");
        assert_eq!((rendered.status.as_str(), rendered.reason.as_str()), ("False", "RerenderFailed"));
        assert!(rendered.message.contains("generation 2"), "{}", rendered.message);
        assert!(rendered.message.contains("gitops writer is not running"), "{}", rendered.message);
        assert_eq!(rendered.observed_generation, Some(2));
        assert!(conditions::is_true(&status.conditions, types::VALID), "the class itself is fine");
    }

    #[test]
    fn a_successful_re_render_catches_up_and_recovers() {
        let mut class = changed_class();
        class.status = Some(next_status(&class, 3, &Rerender::Failed(commit_failed()), &at(10)));
        let status = next_status(&class, 3, &Rerender::Done, &at(20));
        assert_eq!(status.observed_generation, Some(2));
        let rendered = conditions::find(&status.conditions, types::RENDERED).expect("Rendered");
        assert_eq!((rendered.status.as_str(), rendered.reason.as_str()), ("True", "Rendered"));
        assert_eq!(rendered.last_transition_time, at(20));
        assert_eq!(status.environments, 3);
    }

    #[test]
    fn a_freeze_change_wakes_the_classes_whose_change_waits() {
        let settled = {
            let mut class = crate::testing::class("staging");
            class.metadata.generation = Some(2);
            class.status = Some(EnvironmentClassStatus { observed_generation: Some(2), ..Default::default() });
            class
        };
        let index = crate::index::Index::with_objects([], [changed_class(), settled], []);
        let woken: Vec<String> = held(&index).iter().map(|c| c.name.clone()).collect();
        assert_eq!(woken, ["preview"], "not staging, settled");
    }

    #[test]
    fn an_unchanged_class_writes_the_same_status_again() {
        let mut class = changed_class();
        class.status = Some(next_status(&class, 1, &Rerender::Done, &at(10)));
        assert_eq!(Some(next_status(&class, 1, &Rerender::Done, &at(99))), class.status);
    }

    mod reconcile_against_a_scripted_apiserver {
        use serde_json::json;

        use super::*;
        use crate::{
            api::environment_request::{EnvironmentRequestStatus, GitOpsStatus, Phase},
            controller::fixtures::context,
            index::Index,
            testing::{payments, request},
        };

        const STATUS: &str = "/apis/berth.dev/v1alpha1/environmentclasses/preview/status";

        fn provisioned() -> EnvironmentRequest {
            let mut r = request("preview");
            r.metadata.creation_timestamp = Some(at(1_000));
            r.status = Some(EnvironmentRequestStatus {
                phase: Some(Phase::Ready),
                gitops: Some(GitOpsStatus { commit: Some("abc".to_owned()), ..GitOpsStatus::default() }),
                ..EnvironmentRequestStatus::default()
            });
            r
        }

        #[tokio::test]
        async fn a_changed_class_re_renders_its_environments_into_git_then_records_the_generation() {
            let class = changed_class();
            let index = Index::with_objects([payments()], [class.clone()], [provisioned()]);
            let (ctx, mut server, remote) = context(index).await;
            let script = async {
                let call = server.status(STATUS, &class).await;
                server.assert_done();
                call
            };
            let (action, call) = tokio::join!(reconcile(Arc::new(class.clone()), ctx.clone()), script);
            assert_eq!(action.expect("reconciled"), Action::requeue(crate::controller::RESYNC));
            assert_eq!(call.body["status"]["observedGeneration"], json!(2));
            assert_eq!(call.body["status"]["environments"], json!(1));
            // The environment's folder is in git: the re-render went through the pipeline.
            let folders = ctx.writer.environment_folders(crate::render::NAMESPACE_FILE).await.expect("listed");
            assert_eq!(folders.len(), 1, "{folders:?}");
            assert!(folders[0].path.as_str().ends_with("/payments/checkout-pr-1234"), "{folders:?}");
            drop(remote);
        }

        #[tokio::test]
        async fn a_class_change_during_its_freeze_waits_uncommitted_and_says_until_when() {
            let mut class = changed_class();
            let end = Timestamp::now().checked_add(k8s_openapi::jiff::SignedDuration::from_mins(2)).expect("a time");
            class.spec.freeze_windows =
                vec![crate::api::FreezeWindow::once(at(0), Time(end), Some("quarter close".to_owned()))];
            let index = Index::with_objects([payments()], [class.clone()], [provisioned()]);
            let (ctx, mut server, remote) = context(index).await;
            let script = async {
                let status = server.status(STATUS, &class).await;
                let event = server.echo("POST", "/apis/events.k8s.io/v1/namespaces/default/events").await;
                server.assert_done();
                (status, event)
            };
            let (action, (call, event)) = tokio::join!(reconcile(Arc::new(class.clone()), ctx.clone()), script);
            let action = action.expect("reconciled");
            assert!(action != Action::requeue(crate::controller::RESYNC), "woken when the freeze ends: {action:?}");
            assert_eq!(call.body["status"]["observedGeneration"], json!(1), "its requests keep waiting");
            let rendered = call.body["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Rendered"))
                .cloned()
                .expect("Rendered");
            assert_eq!((rendered["status"].as_str(), rendered["reason"].as_str()), (Some("False"), Some("Frozen")));
            let message = rendered["message"].as_str().unwrap_or_default();
            assert!(message.contains("EnvironmentClass preview: quarter close"), "{message}");
            assert!(message.contains(&format!("waits until {end}")), "{message}");
            assert_eq!(event.body["reason"], json!("Frozen"));
            let folders = ctx.writer.environment_folders(crate::render::NAMESPACE_FILE).await.expect("listed");
            assert!(folders.is_empty(), "nothing committed during the freeze: {folders:?}");
            drop(remote);
        }

        #[tokio::test]
        async fn a_settled_class_writes_nothing() {
            let mut class = crate::testing::class("preview");
            class.metadata.generation = Some(1);
            class.status = Some(next_status(&class, 1, &Rerender::Done, &at(10)));
            let index = Index::with_objects([payments()], [class.clone()], [provisioned()]);
            let (ctx, mut server, _remote) = context(index).await;
            // A write would wait forever for an answer: bounded, so the test fails instead.
            let action = tokio::time::timeout(std::time::Duration::from_secs(5), reconcile(Arc::new(class), ctx)).await;
            assert!(action.is_ok_and(|a| a.is_ok()), "the reconcile made a call nobody answered, or failed");
            server.assert_done();
        }

        #[tokio::test]
        async fn an_unusable_class_is_reported_invalid_with_a_warning() {
            let mut class = crate::testing::class("preview");
            class.metadata.generation = Some(1);
            class.status = Some(next_status(&class, 0, &Rerender::Done, &at(10)));
            class.spec.quota.clear();
            let index = Index::with_objects([payments()], [class.clone()], []);
            let (ctx, mut server, _remote) = context(index).await;
            let script = async {
                let status = server.status(STATUS, &class).await;
                let event = server.echo("POST", "/apis/events.k8s.io/v1/namespaces/default/events").await;
                server.assert_done();
                (status, event)
            };
            let (action, (status, event)) = tokio::join!(reconcile(Arc::new(class.clone()), ctx), script);
            assert!(action.is_ok());
            let valid = status.body["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == json!("Valid")).cloned())
                .expect("Valid");
            assert_eq!(valid["status"], json!("False"));
            assert!(valid["message"].as_str().is_some_and(|m| m.contains("quota is empty")), "{valid}");
            assert_eq!(event.body["type"], json!("Warning"));
        }
    }
}
