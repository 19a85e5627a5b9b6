//! Tenant controller: the team's request namespace with RBAC for its people, and
//! its usage against its budget in status. When the apiserver will not have the
//! namespace or the bindings, `Ready` turns False with its words and a Warning
//! event tells it once (see [`setup`]).

mod setup;

use std::sync::Arc;

use k8s_openapi::{
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Time},
    jiff::Timestamp,
};
use kube::{Api, Resource, ResourceExt, runtime::controller::Action};

use super::{Context, Error, events::condition_event};
use crate::{
    api::{
        Tenant,
        conditions::{self, ConditionStatus, Observation, reasons, set_condition, types},
        tenant::{TenantStatus, Usage},
    },
    policy::budget,
};

pub use crate::policy::request::request_namespace;
use setup::{SetupFailed, SetupFailure};

pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Judged against the status last written, even before the index shows it.
    let tenant = ctx.tenant_writes.as_last_written(tenant, |t, written| t.status = Some(written));
    let namespace = request_namespace(&tenant);
    let setup = setup::set_up(&tenant, &namespace, &ctx).await;

    let index = ctx.index().await;
    let requests = index.requests_in(&namespace);
    let classes = index.classes.state();
    let terms = budget::class_terms(classes.iter().map(AsRef::as_ref));
    let usage = budget::usage(&tenant.name_any(), requests.iter().map(AsRef::as_ref), &terms);
    let failure = setup.as_ref().err().map(|failed| &failed.failure);
    let now = Time(Timestamp::now());
    let status = next_status(&tenant, &namespace, failure, &usage, &now);
    if tenant.status.as_ref() != Some(&status) {
        let api = Api::<Tenant>::all(ctx.client.clone());
        super::apply_status_recorded(&api, tenant.as_ref(), &status, &ctx.tenant_writes, ()).await?;
        announce(&tenant, &status, &ctx).await;
    }
    match setup {
        Ok(()) => Ok(Action::requeue(super::RESYNC)),
        // Retried as the error says (transient: seconds; a refusal: minutes); the
        // status and event above are written once, not on every retry.
        Err(SetupFailed { error: Some(error), .. }) => Err(error),
        Err(SetupFailed { error: None, failure }) => Ok(Action::requeue(failure.poll())),
    }
}

/// A Warning event when `Ready` turns False (or fails anew), a Normal one when it
/// recovers; best effort, after the status that it narrates.
async fn announce(tenant: &Tenant, status: &TenantStatus, ctx: &Context) {
    let before = tenant.status.as_ref().and_then(|s| conditions::find(&s.conditions, types::READY));
    let Some(after) = conditions::find(&status.conditions, types::READY) else {
        return;
    };
    if let Some(event) = condition_event(before, after) {
        ctx.events.publish_or_log(&event, &tenant.object_ref(&())).await;
    }
}

/// Status from what the tenant has (pure; transition times kept when unchanged).
/// `failure` is why its namespace or bindings are not in place, if they are not;
/// `status.requestNamespace` names the namespace only once it is.
fn next_status(
    tenant: &Tenant,
    namespace: &str,
    failure: Option<&SetupFailure>,
    usage: &budget::Usage,
    now: &Time,
) -> TenantStatus {
    let (environments, cost, quota) = (usage.environments, usage.monthly_cost_usd, &usage.quota);
    let mut status = tenant.status.clone().unwrap_or_default();
    let generation = tenant.metadata.generation;
    status.observed_generation = generation;
    let ready = match failure {
        None => {
            status.request_namespace = Some(namespace.to_owned());
            Observation {
                type_: types::READY,
                status: ConditionStatus::True,
                reason: reasons::NAMESPACE_READY,
                message: format!("members create EnvironmentRequests in namespace {namespace}"),
                observed_generation: generation,
            }
        }
        Some(failure) => Observation {
            type_: types::READY,
            status: ConditionStatus::False,
            reason: failure.reason(),
            message: failure.message(),
            observed_generation: generation,
        },
    };
    status.environments = environments;
    status.usage = Usage {
        monthly_cost_usd: u32::try_from(cost).unwrap_or(u32::MAX),
        quota: quota.iter().map(|(resource, amount)| (resource.clone(), Quantity(budget::display(*amount)))).collect(),
    };
    set_condition(&mut status.conditions, ready, now);
    let budget = &tenant.spec.budget;
    let over_cost = budget.monthly_cost_usd.is_some_and(|limit| cost > u64::from(limit));
    let over_count = budget.max_environments.is_some_and(|max| environments > max);
    let over_quota = budget::amounts(&budget.quota)
        .iter()
        .any(|(resource, limit)| quota.get(resource).is_some_and(|used| used > limit));
    let over_cost = over_cost || over_quota;
    let message = format!(
        "{environments} environments{}, ${cost} a month{}",
        budget.max_environments.map(|m| format!(" of {m}")).unwrap_or_default(),
        budget.monthly_cost_usd.map(|m| format!(" of ${m}")).unwrap_or_default()
    );
    set_condition(
        &mut status.conditions,
        Observation {
            type_: types::WITHIN_BUDGET,
            status: (!(over_cost || over_count)).into(),
            reason: if over_cost || over_count { reasons::OVER_BUDGET } else { reasons::WITHIN_BUDGET },
            message,
            observed_generation: generation,
        },
        now,
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("valid"))
    }

    fn terminating() -> SetupFailure {
        SetupFailure::Terminating { namespace: "payments".into() }
    }

    /// The tenant after a status write of `status`.
    fn with(status: TenantStatus) -> Tenant {
        let mut tenant = crate::testing::payments();
        tenant.metadata.generation = Some(1);
        tenant.status = Some(status);
        tenant
    }

    fn status(tenant: &Tenant, failure: Option<&SetupFailure>, now: i64) -> TenantStatus {
        next_status(tenant, "payments", failure, &budget::Usage::default(), &at(now))
    }

    #[test]
    fn a_tenant_that_cannot_be_set_up_is_not_ready_and_says_why() {
        let mut tenant = crate::testing::payments();
        tenant.metadata.generation = Some(1);
        let status = status(&tenant, Some(&terminating()), 10);
        let ready = conditions::find(&status.conditions, types::READY).expect("Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "NamespaceTerminating");
        assert_eq!(ready.message, terminating().message());
        assert_eq!(ready.observed_generation, Some(1));
        assert_eq!(status.request_namespace, None, "no namespace to point people at yet");
        assert!(conditions::find(&status.conditions, types::WITHIN_BUDGET).is_some(), "usage is still reported");
    }

    #[test]
    fn the_same_failure_again_writes_the_same_status() {
        let first = status(&with(TenantStatus::default()), Some(&terminating()), 10);
        let again = status(&with(first.clone()), Some(&terminating()), 20);
        assert_eq!(again, first, "no write, so no watch event and no event per retry");
    }

    #[test]
    fn a_fixed_tenant_recovers_to_ready_and_keeps_its_namespace_when_it_fails_later() {
        let failed = status(&with(TenantStatus::default()), Some(&terminating()), 10);
        let recovered = status(&with(failed), None, 30);
        let ready = conditions::find(&recovered.conditions, types::READY).expect("Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "NamespaceReady"));
        assert_eq!(ready.last_transition_time, at(30));
        assert_eq!(recovered.request_namespace.as_deref(), Some("payments"));

        let refused = SetupFailure::Rbac {
            namespace: "payments".into(),
            object: "Role berth-requester".into(),
            cause: "forbidden".into(),
        };
        let failed_again = status(&with(recovered), Some(&refused), 40);
        let ready = conditions::find(&failed_again.conditions, types::READY).expect("Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "RBACFailed"));
        assert_eq!(failed_again.request_namespace.as_deref(), Some("payments"), "the namespace was made before");
    }

    mod reconcile_against_a_scripted_apiserver {
        use serde_json::json;

        use super::*;
        use crate::{
            api::{
                EnvironmentRequest,
                environment_request::{EnvironmentRequestStatus, GitOpsStatus},
            },
            controller::fixtures::{ScriptedApiServer, context},
            index::Index,
            testing::{class, request},
        };

        const NAMESPACE: &str = "/api/v1/namespaces/payments";
        const ROLES: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/roles";
        const BINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/rolebindings";
        const STATUS: &str = "/apis/berth.dev/v1alpha1/tenants/payments/status";

        fn tenant() -> Tenant {
            let mut tenant = crate::testing::payments();
            tenant.metadata.generation = Some(1);
            tenant.metadata.uid = Some("uid-payments".to_owned());
            tenant
        }

        fn provisioned(name: &str) -> EnvironmentRequest {
            let mut r = request("preview");
            r.metadata.name = Some(name.to_owned());
            r.status = Some(EnvironmentRequestStatus {
                phase: Some(crate::api::environment_request::Phase::Ready),
                gitops: Some(GitOpsStatus { commit: Some("abc".to_owned()), ..GitOpsStatus::default() }),
                ..EnvironmentRequestStatus::default()
            });
            r
        }

        /// The namespace, three roles and three bindings, each applied and echoed.
        async fn set_up(server: &mut ScriptedApiServer) {
            server.echo("PATCH", NAMESPACE).await;
            for role in ["berth-requester", "berth-manager", "berth-viewer"] {
                let call = server.echo("PATCH", &format!("{ROLES}/{role}")).await;
                assert_eq!(call.body["metadata"]["ownerReferences"][0]["uid"], json!("uid-payments"));
            }
            for binding in ["berth-members", "berth-owners", "berth-viewers"] {
                server.echo("PATCH", &format!("{BINDINGS}/{binding}")).await;
            }
        }

        #[tokio::test]
        async fn a_new_tenant_gets_its_namespace_and_rbac_then_one_status_write_with_its_usage() {
            let tenant = tenant();
            let index = Index::with_objects([tenant.clone()], [class("preview")], [provisioned("a"), provisioned("b")]);
            let (ctx, mut server, _remote) = context(index).await;
            let script = async {
                set_up(&mut server).await;
                let call = server.status(STATUS, &tenant).await;
                server.assert_done();
                call
            };
            let (action, status_call) = tokio::join!(reconcile(Arc::new(tenant.clone()), ctx), script);
            assert_eq!(action.expect("reconciled"), Action::requeue(crate::controller::RESYNC));
            let status = &status_call.body["status"];
            assert_eq!(status["environments"], json!(2));
            assert_eq!(status["requestNamespace"], json!("payments"));
            let preview_cost = class("preview").spec.estimated_monthly_cost_usd;
            assert_eq!(status["usage"]["monthlyCostUSD"], json!(2 * preview_cost));
        }

        #[tokio::test]
        async fn an_unchanged_tenant_applies_its_objects_and_writes_no_status() {
            let mut tenant = tenant();
            let index = Index::with_objects([tenant.clone()], [class("preview")], [provisioned("a")]);
            let classes = [class("preview")];
            let terms = budget::class_terms(classes.iter());
            let usage = budget::usage("payments", [&provisioned("a")], &terms);
            tenant.status = Some(next_status(&tenant, "payments", None, &usage, &Time(Timestamp::now())));
            let (ctx, mut server, _remote) = context(index).await;
            // A status write would wait forever for an answer: bounded, so the test fails.
            let reconciled = tokio::time::timeout(std::time::Duration::from_secs(5), reconcile(Arc::new(tenant), ctx));
            let (action, ()) = tokio::join!(reconciled, set_up(&mut server));
            assert!(action.is_ok_and(|a| a.is_ok()), "the reconcile made a call nobody answered, or failed");
            server.assert_done();
        }

        #[tokio::test]
        async fn a_reconcile_on_a_copy_from_before_its_status_write_still_puts_that_status_right() {
            // The copy reconciled: Ready, as computed from what the tenant has.
            let mut tenant = tenant();
            tenant.metadata.resource_version = Some("1".to_owned());
            let index = Index::with_objects([tenant.clone()], [class("preview")], []);
            let usage = budget::usage("payments", std::iter::empty(), &budget::class_terms([class("preview")].iter()));
            tenant.status = Some(next_status(&tenant, "payments", None, &usage, &Time(Timestamp::now())));
            let (ctx, mut server, _remote) = context(index).await;
            let mut answered = tenant.clone();
            answered.metadata.resource_version = Some("2".to_owned());
            // A refused namespace: Ready False is written (resource version 2), with a Warning.
            let denied = ScriptedApiServer::refusal(403, "Forbidden", "denied by policy deny-ns");
            let refused = async {
                server.expect("PATCH", NAMESPACE, 403, denied).await;
                let status = server.status(STATUS, &answered).await;
                server.echo("POST", "/apis/events.k8s.io/v1/namespaces/default/events").await;
                status
            };
            let (result, status) = tokio::join!(reconcile(Arc::new(tenant.clone()), ctx.clone()), refused);
            assert!(result.is_err());
            assert_eq!(status.body["status"]["conditions"][0]["status"], json!("False"));
            // The retry runs before the index shows that write: on the copy that says
            // Ready. The namespace is accepted now, and the status it computes equals
            // that copy's; the apiserver holds Ready False, so it is written, and the
            // recovery told.
            let accepted = async {
                set_up(&mut server).await;
                let status = server.status(STATUS, &answered).await;
                let event = server.echo("POST", "/apis/events.k8s.io/v1/namespaces/default/events").await;
                server.assert_done();
                (status, event)
            };
            let both = async { tokio::join!(reconcile(Arc::new(tenant), ctx), accepted) };
            let (result, (status, event)) =
                tokio::time::timeout(std::time::Duration::from_secs(5), both).await.expect("the write and the event");
            assert!(result.is_ok(), "reconciled");
            assert_eq!(status.body["status"]["conditions"][0]["status"], json!("True"));
            assert_eq!((&event.body["type"], &event.body["reason"]), (&json!("Normal"), &json!("NamespaceReady")));
        }

        #[tokio::test]
        async fn a_refused_namespace_is_reported_in_status_with_a_warning_event_and_retried() {
            let tenant = tenant();
            let index = Index::with_objects([tenant.clone()], [class("preview")], []);
            let (ctx, mut server, _remote) = context(index).await;
            let denied = "namespaces \"payments\" is forbidden: denied by policy deny-ns";
            let script = async {
                server.expect("PATCH", NAMESPACE, 403, ScriptedApiServer::refusal(403, "Forbidden", denied)).await;
                let status = server.status(STATUS, &tenant).await;
                // Ready was never True: the first False is worth a Warning.
                let event = server.echo("POST", "/apis/events.k8s.io/v1/namespaces/default/events").await;
                server.assert_done();
                (status, event)
            };
            let (result, (status, event)) = tokio::join!(reconcile(Arc::new(tenant.clone()), ctx), script);
            assert!(
                matches!(result, Err(Error::Apply { .. })),
                "the refusal is returned, so the controller retries: {result:?}"
            );
            let ready = status.body["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == json!("Ready")).cloned())
                .expect("Ready");
            assert_eq!(ready["status"], json!("False"));
            assert_eq!(ready["reason"], json!("NamespaceFailed"));
            assert!(ready["message"].as_str().is_some_and(|m| m.contains("denied by policy deny-ns")), "{ready}");
            assert_eq!(event.body["type"], json!("Warning"));
            assert_eq!(event.body["reason"], json!("NamespaceFailed"));
        }
    }
}
