//! EnvironmentRequest controller: approval gate → budget guard → render → commit
//! → status, TTL expiry, and a finalizer that removes the folder from git first.

mod git_record;
pub(crate) mod live;
mod status;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{self, finalizer},
    },
};

pub use status::{Committed, Finding, next_status};

use super::{
    Context, Error,
    context::FINALIZER,
    events::{Event, EventType},
};
use crate::{
    api::{
        EnvironmentClass, EnvironmentRequest, Tenant,
        environment_request::{EnvironmentRequestStatus, Phase},
    },
    approval::Rejection,
    gitops::{ChangeReason, RepoPath, environment_path},
    policy::{
        self,
        budget::{self, is_provisioned},
        request::Denial,
    },
    render,
};

/// How often a settled request is looked at again when nothing changes.
const RESYNC: Duration = Duration::from_secs(300);

/// `namespace/name`, as trailers and messages name a request.
pub(super) fn key(request: &EnvironmentRequest) -> String {
    format!("{}/{}", request.namespace().unwrap_or_default(), request.name_any())
}

/// Reconciles one request (entry point for the kube-runtime Controller).
pub async fn reconcile(request: Arc<EnvironmentRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = request.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<EnvironmentRequest> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, request, |event| async {
        match event {
            finalizer::Event::Apply(request) => apply(&request, &ctx).await,
            finalizer::Event::Cleanup(request) => cleanup(&request, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The folder Berth committed for this request, as recorded in its status.
fn committed_path(request: &EnvironmentRequest) -> Option<String> {
    request.status.as_ref()?.gitops.as_ref()?.path.clone()
}

/// The request's folder in the GitOps repository.
fn folder(request: &EnvironmentRequest) -> Result<RepoPath, String> {
    environment_path(&request.spec.cluster, &request.spec.tenant, &request.name_any()).map_err(|e| e.to_string())
}

async fn apply(request: &EnvironmentRequest, ctx: &Context) -> Result<Action, Error> {
    if is_provisioned(request) && class_change_pending(request, ctx).await? {
        // The class controller re-renders all of the class's environments in one batch;
        // this request catches up once the class status says that is done.
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let finding = match assess(request, ctx).await {
        // Others keep pushing first: say so in status, and try again soon (the change
        // stays queued in the writer meanwhile).
        Err(Error::Commit { path, source }) if source.is_contended() => {
            let waiting = Finding::Waiting { message: format!("waiting to commit {path}: {source}") };
            write_status(request, ctx, &waiting).await?;
            return Err(Error::Commit { path, source });
        }
        other => other?,
    };
    if matches!(finding, Finding::Denied(_) | Finding::Expired { .. }) {
        // Refused after the budget admitted it, or gone: its place is free again.
        ctx.budget.forget(request);
    }
    let requeue = match &finding {
        Finding::Committed(Committed { expires_at: Some(at), .. }) => until(at).min(RESYNC),
        Finding::Expired { .. } => Duration::from_secs(3600),
        _ => RESYNC,
    };
    // Both are tried, so a refused status write does not keep a refused request's folder
    // deployed, and an unreachable remote does not keep its refusal out of status.
    let removed = match finding {
        Finding::Denied(_) if !git_record::has_recorded_commit(request) => {
            git_record::remove_unrecorded_folder(request, ctx, "refused").await
        }
        _ => Ok(()),
    };
    write_status(request, ctx, &finding).await?;
    removed?;
    Ok(Action::requeue(requeue))
}

/// Time from now until `at` (zero when past), for requeueing at expiry.
fn until(at: &Time) -> Duration {
    let left = at.0.duration_since(Timestamp::now());
    Duration::try_from(left).unwrap_or(Duration::ZERO) + Duration::from_millis(200)
}

/// Gathers what the request depends on and acts on it: the steps of the lifecycle.
async fn assess(request: &EnvironmentRequest, ctx: &Context) -> Result<Finding, Error> {
    let spec = &request.spec;
    // Expiry comes first and uses what was recorded at commit time, so neither a
    // missing class nor an edited TTL keeps an environment alive past its end.
    let status = request.status.clone().unwrap_or_default();
    if status.phase == Some(Phase::Expired) {
        return Ok(Finding::Expired { path: committed_path(request).unwrap_or_default() });
    }
    if let Some(at) = &status.expires_at
        && at.0 <= Timestamp::now()
    {
        let path = committed_path(request).unwrap_or_default();
        if let Ok(folder) = RepoPath::parse(&path) {
            remove(ctx, &folder, request, "expired").await?;
        }
        return Ok(Finding::Expired { path });
    }
    let class = class_of(request, ctx).await?;
    let tenant = cached_or_read(
        ctx.index().await.tenants.store(),
        Api::<Tenant>::all(ctx.client.clone()),
        &spec.tenant,
        "Tenant",
    )
    .await?;
    // The same rules admission applies, so a request that slipped past the webhook
    // (installed later, or down with failurePolicy changed) is still held to them.
    let tenants = ctx.index().await.tenants.state();
    let claimants =
        policy::request::claimants(&request.namespace().unwrap_or_default(), tenants.iter().map(AsRef::as_ref));
    let (tenant, class) = match policy::request::check(request, tenant.as_deref(), class.as_deref(), &claimants) {
        Ok(found) => found,
        Err(denial) => return Ok(Finding::Denied(denial)),
    };
    if let Err(message) = folder(request) {
        return Ok(Finding::Denied(Denial::Invalid(message)));
    }
    let verifier = ctx.approvals.as_deref();
    let approval = match policy::request::check_approval(request, class, verifier, Timestamp::now()) {
        // A provisioned environment keeps running when its token later expires: the
        // approval was for creating it. Every other check still holds: the token is
        // judged again as of just before it expired (this request, this spec, …).
        Err(Denial::ApprovalRejected { rejection: Rejection::Expired { expired_at }, .. })
            if is_provisioned(request) =>
        {
            let before = expired_at - SignedDuration::from_secs(1);
            match policy::request::check_approval(request, class, verifier, before) {
                Ok(approval) => approval,
                Err(denial) => return Ok(Finding::Denied(denial)),
            }
        }
        Err(denial) => return Ok(Finding::Denied(denial)),
        Ok(approval) => approval,
    };
    // A provisioned environment already holds its budget (the guard admits it first),
    // so only new ones of a tenant that has a budget are decided.
    let budget = &tenant.spec.budget;
    let has_budget = budget.max_environments.is_some() || budget.monthly_cost_usd.is_some() || !budget.quota.is_empty();
    if has_budget
        && !is_provisioned(request)
        && let Err(exceeded) = budget_decision(request, tenant, ctx).await?
    {
        return Ok(Finding::Denied(Denial::OverBudget(exceeded)));
    }
    let (environment, Folder { commit, path, digest }) = match commit_environment(request, class, tenant, ctx).await? {
        Ok(done) => done,
        Err(e) => return Ok(Finding::Denied(Denial::Invalid(e.to_string()))),
    };
    Ok(Finding::Committed(Committed {
        namespace: environment.namespace.clone(),
        commit,
        path,
        digest,
        monthly_cost_usd: environment.estimated_monthly_cost_usd,
        expires_at: expired_at(request, class).map(Time),
        approved_by: approval.map(|a| a.approver),
        sync: live::sync_status(&environment.namespace, ctx).await?,
        drift: Some(
            live::drift(
                &request.spec.cluster,
                &environment.files,
                request.status.as_ref().and_then(|s| s.drift.as_ref()),
                ctx,
            )
            .await?,
        ),
    }))
}

/// Whether the request's class changed and the class controller has not yet
/// re-rendered its environments (its status lags its generation).
async fn class_change_pending(request: &EnvironmentRequest, ctx: &Context) -> Result<bool, Error> {
    let class = class_of(request, ctx).await?;
    Ok(class.is_some_and(|c| c.status.as_ref().and_then(|s| s.observed_generation) != c.metadata.generation))
}

/// Where an environment's files were committed.
pub(crate) struct Folder {
    /// A commit holding the folder exactly as rendered.
    pub commit: String,
    pub path: String,
    /// SHA-256 (hex) of the rendered files.
    pub digest: String,
}

/// The commit the request's status records for `path` if it was made for the same
/// rendering (`digest`): it holds exactly these files, so it stays the answer. Without
/// this, every pass through the writer (after a restart, or once the remembered commit
/// ages out) reported the new head and rewrote the status.
fn recorded_commit(request: &EnvironmentRequest, path: &str, digest: &str) -> Option<String> {
    let gitops = request.status.as_ref()?.gitops.as_ref()?;
    (gitops.path.as_deref() == Some(path) && gitops.rendered_digest.as_deref() == Some(digest))
        .then(|| gitops.commit.clone())
        .flatten()
}

/// Renders and commits one environment. `Ok(Err(_))` when rendering refuses it.
pub(crate) async fn commit_environment(
    request: &EnvironmentRequest,
    class: &EnvironmentClass,
    tenant: &Tenant,
    ctx: &Context,
) -> Result<Result<(render::Environment, Folder), render::RenderError>, Error> {
    let environment = match render::render(class, tenant, request, &ctx.render) {
        Ok(environment) => environment,
        Err(e) => return Ok(Err(e)),
    };
    let path = folder(request).map_err(|_| Error::Incomplete("valid GitOps path"))?;
    let digest = files_digest(&environment.files);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let recorded = recorded_commit(request, path.as_str(), &hex);
    let done = |commit: String| Folder {
        commit: recorded.clone().unwrap_or(commit),
        path: path.to_string(),
        digest: hex.clone(),
    };
    if let Some(commit) = ctx.committed.current(path.as_str(), &digest) {
        return Ok(Ok((environment, done(commit))));
    }
    // Recorded before the push: a change the writer owes after a failed push may still
    // land, and a refusal or deletion meanwhile must know to remove it.
    ctx.inventory.put(path.as_str(), &key(request));
    let files = environment.files.iter().map(|(name, yaml)| (name.clone(), yaml.clone().into_bytes())).collect();
    let summary = format!(
        "render {} ({} generation {})",
        key(request),
        class.name_any(),
        class.metadata.generation.unwrap_or_default()
    );
    let reason = ChangeReason::new(key(request), request.metadata.generation, summary);
    let outcome = ctx
        .writer
        .put(path.clone(), files, reason)
        .await
        .map_err(|source| Error::Commit { path: path.to_string(), source })?;
    // A commit that holds the folder as rendered: the new one, or the current head
    // when the tree did not change. Remembered, so the next unchanged rendering
    // reports the same commit without touching git.
    let commit = outcome.commit.as_str().to_owned();
    ctx.committed.remember(path.as_str(), digest, commit.clone());
    Ok(Ok((environment, done(commit))))
}

/// SHA-256 over the rendered files (names and contents), to recognise a rendering
/// that was already committed.
fn files_digest(files: &BTreeMap<String, String>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (name, yaml) in files {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((yaml.len() as u64).to_le_bytes());
        hasher.update(yaml.as_bytes());
    }
    hasher.finalize().into()
}

/// When the request's environment expires: creation plus its TTL (or the class default).
fn expired_at(request: &EnvironmentRequest, class: &EnvironmentClass) -> Option<Timestamp> {
    let ttl = match (&request.spec.ttl, &class.spec.ttl) {
        (Some(ttl), _) => ttl.parse().ok()?,
        (None, Some(policy)) => policy.default.parse().ok()?,
        (None, None) => return None,
    };
    let created = request.metadata.creation_timestamp.as_ref()?.0;
    created.checked_add(SignedDuration::try_from(ttl).ok()?).ok()
}

/// The budget guard's decision for a request that is not yet provisioned, over the
/// requests and classes in memory (see [`super::budget`]).
async fn budget_decision(
    request: &EnvironmentRequest,
    tenant: &Tenant,
    ctx: &Context,
) -> Result<Result<(), budget::BudgetExceeded>, Error> {
    let index = ctx.index().await;
    // Folders a crashed process committed hold budget too; git must be listed first.
    ctx.inventory.wait_loaded(git_record::INVENTORY_WAIT).await?;
    let in_git = |r: &EnvironmentRequest| ctx.inventory.folder_of(&key(r)).is_ok_and(|folder| folder.is_some());
    let namespace = request.namespace().unwrap_or_default();
    Ok(ctx.budget.decide(request, tenant, || index.requests_in(&namespace), &index.classes.state(), in_git))
}

pub(super) async fn remove(
    ctx: &Context,
    path: &RepoPath,
    request: &EnvironmentRequest,
    why: &str,
) -> Result<(), Error> {
    let reason =
        ChangeReason::new(key(request), request.metadata.generation, format!("remove {} ({why})", key(request)));
    ctx.writer.remove(path.clone(), reason).await.map_err(|source| Error::Remove { path: path.to_string(), source })?;
    ctx.committed.forget(path.as_str());
    ctx.inventory.removed(path.as_str());
    Ok(())
}

/// Deletion: the folder leaves git before the finalizer goes. An unreachable remote
/// fails the cleanup, which keeps the finalizer and retries.
async fn cleanup(request: &EnvironmentRequest, ctx: &Context) -> Result<Action, Error> {
    // Only the folder Berth recorded committing for this request: never a path
    // recomputed from a spec that may name another tenant.
    let recorded = committed_path(request).and_then(|p| RepoPath::parse(&p).ok());
    if let Some(path) = &recorded {
        remove(ctx, path, request, "deleted").await?;
        publish(ctx, request, EventType::Normal, "Removed", format!("removed {path} from git")).await;
    }
    // And a folder git holds for it that its status never recorded (a crash between
    // commit and status write). Not listed yet (remote down at start): deletion does not
    // wait for git, the orphan sweeper removes it once the request is gone.
    if let Ok(Some(path)) = git_record::folder_in_git(request, ctx)
        && Some(&path) != recorded.as_ref()
    {
        remove(ctx, &path, request, "deleted").await?;
        publish(ctx, request, EventType::Normal, "Removed", format!("removed {path} from git")).await;
    }
    ctx.budget.forget(request);
    Ok(Action::await_change())
}

/// The request's class, from the store (or the API, see [`cached_or_read`]).
async fn class_of(request: &EnvironmentRequest, ctx: &Context) -> Result<Option<Arc<EnvironmentClass>>, Error> {
    let api = Api::<EnvironmentClass>::all(ctx.client.clone());
    cached_or_read(ctx.index().await.classes.store(), api, &request.spec.class, "EnvironmentClass").await
}

/// A cluster-scoped object from the store; on a miss, from the API, since a store
/// can lag an object created a moment ago and "missing" would fail the request.
async fn cached_or_read<K>(
    store: &crate::index::Store<K>,
    api: Api<K>,
    name: &str,
    kind: &str,
) -> Result<Option<Arc<K>>, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if let Some(found) = store.get(&kube::runtime::reflector::ObjectRef::new(name)) {
        return Ok(Some(found));
    }
    Ok(get_opt(api, name, kind).await?.map(Arc::new))
}

async fn get_opt<K>(api: Api<K>, name: &str, kind: &str) -> Result<Option<K>, Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.map_err(|source| Error::Read { what: format!("{kind} {name}"), source })
}

async fn write_status(request: &EnvironmentRequest, ctx: &Context, finding: &Finding) -> Result<(), Error> {
    let old = request.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    let new = next_status(&old, request.metadata.generation, finding, &now);
    if new == old {
        return Ok(());
    }
    // Status first: it is what people and tools read; the event only narrates it.
    patch_status(request, ctx, &new).await?;
    if new.phase != old.phase {
        let (type_, reason) = match new.phase {
            Some(Phase::Failed) => (EventType::Warning, "Failed"),
            Some(Phase::AwaitingApproval) => (EventType::Warning, "AwaitingApproval"),
            Some(Phase::Provisioning) => (EventType::Normal, "Provisioning"),
            Some(Phase::Ready) => (EventType::Normal, "Ready"),
            Some(Phase::Expired) => (EventType::Normal, "Expired"),
            None => (EventType::Normal, "Updated"),
        };
        let message = crate::api::conditions::find(&new.conditions, crate::api::conditions::types::READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        publish(ctx, request, type_, reason, message).await;
    }
    Ok(())
}

async fn patch_status(
    request: &EnvironmentRequest,
    ctx: &Context,
    status: &EnvironmentRequestStatus,
) -> Result<(), Error> {
    let api: Api<EnvironmentRequest> = Api::namespaced(ctx.client.clone(), &request.namespace().unwrap_or_default());
    super::apply_status(&api, request, status).await
}

/// Events are best effort: a failed event never fails a reconcile.
pub(super) async fn publish(ctx: &Context, request: &EnvironmentRequest, type_: EventType, reason: &str, note: String) {
    let event =
        Event { type_, reason: reason.to_owned(), note: Some(note), action: "Reconcile".to_owned(), secondary: None };
    if let Err(e) = ctx.events.publish(&event, &request.object_ref(&())).await {
        tracing::warn!(error = %e, request = %key(request), "cannot publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::environment_request::GitOpsStatus;

    fn with_gitops(commit: &str, path: &str, digest: Option<&str>) -> EnvironmentRequest {
        let mut request = crate::test_support::request("preview");
        request.status = Some(EnvironmentRequestStatus {
            gitops: Some(GitOpsStatus {
                commit: Some(commit.into()),
                path: Some(path.into()),
                rendered_digest: digest.map(Into::into),
            }),
            ..Default::default()
        });
        request
    }

    #[test]
    fn the_recorded_commit_stays_while_the_rendering_is_the_same() {
        let request = with_gitops("c1", "clusters/a/tenants/t/r", Some("d1"));
        assert_eq!(recorded_commit(&request, "clusters/a/tenants/t/r", "d1").as_deref(), Some("c1"));
        // Another rendering (class or spec changed): the writer's commit is the answer.
        assert_eq!(recorded_commit(&request, "clusters/a/tenants/t/r", "d2"), None);
        // Another folder, or a status from before digests were recorded: likewise.
        assert_eq!(recorded_commit(&request, "clusters/b/tenants/t/r", "d1"), None);
        let old = with_gitops("c1", "clusters/a/tenants/t/r", None);
        assert_eq!(recorded_commit(&old, "clusters/a/tenants/t/r", "d1"), None);
        // Nothing committed yet.
        let fresh = crate::test_support::request("preview");
        assert_eq!(recorded_commit(&fresh, "clusters/a/tenants/t/r", "d1"), None);
    }
}
