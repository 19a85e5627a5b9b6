//! EnvironmentClass controller: validates the class into status, counts its
//! environments and re-renders them all when the class changes, so the GitOps
//! writer batches those renders into one commit. `Valid` and `Rendered` say what
//! it cannot do, with a Warning event when either turns False.

use std::sync::Arc;

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
    let renders: Vec<_> = requests
        .iter()
        .filter(|r| crate::policy::budget::is_provisioned(r))
        .map(|request| request::rerender(request, class.clone(), ctx))
        .collect();
    let mut count = 0;
    for result in futures::future::join_all(renders).await {
        count += usize::from(result?.is_some());
    }
    if count > 0 {
        tracing::info!(class = %class.name_any(), environments = count, "re-rendered the class's environments");
    }
    Ok(())
}

pub async fn reconcile(class: Arc<EnvironmentClass>, ctx: Arc<Context>) -> Result<Action, Error> {
    let requests = ctx.index().await.requests_of_class(&class.name_any());
    let rerendered = if class.status.as_ref().and_then(|s| s.observed_generation) != class.metadata.generation {
        rerender(&class, &requests, &ctx).await
    } else {
        Ok(())
    };
    let environments = requests
        .iter()
        .filter(|r| r.spec.class == class.name_any())
        .filter(|r| crate::policy::budget::is_provisioned(r))
        .count();
    let status = next_status(&class, environments, rerendered.as_ref().err(), &Time(Timestamp::now()));
    if class.status.as_ref() != Some(&status) {
        super::apply_status(&Api::<EnvironmentClass>::all(ctx.client.clone()), class.as_ref(), &status).await?;
        announce(&class, &status, &ctx).await;
    }
    // A failed re-render is retried as its error says; the status above told it once.
    rerendered?;
    Ok(Action::requeue(super::RESYNC))
}

/// The class's status (pure; transition times kept when unchanged). `rerender_failed`
/// is why its environments could not be re-rendered for this generation: then
/// `observedGeneration` stays behind, which keeps its provisioned requests waiting
/// and makes the next pass try again.
fn next_status(
    class: &EnvironmentClass,
    environments: usize,
    rerender_failed: Option<&Error>,
    now: &Time,
) -> EnvironmentClassStatus {
    let mut status: EnvironmentClassStatus = class.status.clone().unwrap_or_default();
    let generation = class.metadata.generation;
    if rerender_failed.is_none() {
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
    let (state, reason, message) = match rerender_failed {
        None => (
            ConditionStatus::True,
            reasons::RENDERED,
            format!("its environments are rendered from generation {generation_text}"),
        ),
        Some(error) => (
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
        let status = next_status(&class, 3, Some(&commit_failed()), &at(10));
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
        class.status = Some(next_status(&class, 3, Some(&commit_failed()), &at(10)));
        let status = next_status(&class, 3, None, &at(20));
        assert_eq!(status.observed_generation, Some(2));
        let rendered = conditions::find(&status.conditions, types::RENDERED).expect("Rendered");
        assert_eq!((rendered.status.as_str(), rendered.reason.as_str()), ("True", "Rendered"));
        assert_eq!(rendered.last_transition_time, at(20));
        assert_eq!(status.environments, 3);
    }

    #[test]
    fn an_unchanged_class_writes_the_same_status_again() {
        let mut class = changed_class();
        class.status = Some(next_status(&class, 1, None, &at(10)));
        assert_eq!(Some(next_status(&class, 1, None, &at(99))), class.status);
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
        async fn a_settled_class_writes_nothing() {
            let mut class = crate::testing::class("preview");
            class.metadata.generation = Some(1);
            class.status = Some(next_status(&class, 1, None, &at(10)));
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
            class.status = Some(next_status(&class, 0, None, &at(10)));
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
