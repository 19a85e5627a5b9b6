//! The request pipeline's steps as the class and rollout controllers run them, so
//! that an environment is rendered one way whoever commits it: the class controller
//! re-renders its provisioned environments after a class change ([`rerender`],
//! [`commit_rerendered`]), a Rollout's batch renders the revision it promotes
//! ([`render_for_rollout`]) once the class is rendered ([`ensure_class_rendered`]).

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::{
    Context, Error,
    apply::{self, Folder},
    build, class_label,
    dereference::{Dereferenced, dereference},
    key, rollout_commit_in_flight, validate,
};
use crate::{
    api::{EnvironmentClass, EnvironmentRequest},
    gitops::RepoPath,
    policy::budget::is_provisioned,
};

/// A provisioned request's environment rendered with a changed class, ready to commit
/// (the class controller's batch after a class change).
pub(crate) struct Rerendered<'r> {
    request: &'r EnvironmentRequest,
    built: build::Built,
    class_label: String,
}

/// Renders a provisioned request's environment with `class` through the same validate →
/// build steps as the request's own reconcile. `None` when the request is no longer
/// valid (its own reconcile reports why) or a rollout's batch owns its folder (the batch
/// renders it with the new class; a commit from here could put the previous revision
/// back under the batch's commit).
pub(crate) async fn rerender<'r>(
    request: &'r EnvironmentRequest,
    class: Arc<EnvironmentClass>,
    ctx: &Context,
) -> Option<Rerendered<'r>> {
    if rollout_commit_in_flight(request, ctx).await {
        return None;
    }
    let index = ctx.index().await;
    let claimants = index.claimants(&request.namespace().unwrap_or_default());
    let refs = Dereferenced { tenant: index.tenant(&request.spec.tenant), class: Some(class), claimants };
    let validated = validate::validate(request, &refs, ctx.approvals.as_deref(), Timestamp::now()).ok()?;
    let mut built = build::build(&validated, &ctx.render).ok()?;
    // The class's environments are all held until their one commit; drift does not
    // read these (the request's own reconcile does), so only the files are kept.
    built.environment.objects = Vec::new();
    Some(Rerendered { request, class_label: class_label(&validated), built })
}

/// Commits a re-rendered environment (the apply step of the request's own reconcile);
/// `None` when a rollout's batch took its folder since it was rendered (checked on the
/// index's newest copy: the class's other environments rendered meanwhile).
pub(crate) async fn commit_rerendered(rerendered: Rerendered<'_>, ctx: &Context) -> Result<Option<Folder>, Error> {
    let request = rerendered.request;
    let newest = ctx.index().await.request(&request.namespace().unwrap_or_default(), &request.name_any());
    if rollout_commit_in_flight(newest.as_deref().unwrap_or(request), ctx).await {
        return Ok(None);
    }
    apply::commit(request, &rerendered.built, &rerendered.class_label, ctx).await.map(Some)
}

/// What a Rollout's batch commit writes for `request` (which carries the promotion
/// the batch applies): its folder, files and digest, through the same dereference →
/// validate → build steps as the request's own reconcile, so the request controller
/// later renders the very same bytes and makes no second commit. `Err` says why the
/// environment cannot be rendered now (its own reconcile reports it too).
pub(crate) async fn render_for_rollout(request: &EnvironmentRequest, ctx: &Context) -> Result<ForRollout, Error> {
    let refs = dereference(request, ctx).await?;
    let validated = match validate::validate(request, &refs, ctx.approvals.as_deref(), Timestamp::now()) {
        Ok(validated) => validated,
        Err(denial) => return Ok(ForRollout::Refused(denial.to_string())),
    };
    let built = match build::build(&validated, &ctx.render) {
        Ok(built) => built,
        Err(e) => return Ok(ForRollout::Refused(e.to_string())),
    };
    let digest = built.digest_hex();
    let files = built.environment.files.into_iter().map(|(name, yaml)| (name, yaml.into_bytes())).collect();
    Ok(ForRollout::Folder { path: built.folder, files, digest })
}

/// `Err` while the request's class changed and the class controller has not re-rendered
/// its environments yet: a Rollout batch rendering it now would ship the class's new
/// generation ahead of that re-render, and through a freeze that holds it. The batch
/// waits for the class instead (checked before anything is marked).
pub(crate) async fn ensure_class_rendered(request: &EnvironmentRequest, ctx: &Context) -> Result<(), Error> {
    let refs = dereference(request, ctx).await?;
    if !(is_provisioned(request) && refs.class_change_pending()) {
        return Ok(());
    }
    Err(Error::ClassChangeWaits(format!(
        "{}: its class {} changed and that change is not rendered yet ({}); the batch waits for it",
        key(request),
        request.spec.class,
        refs.class_rendered_message().unwrap_or("its environments are being re-rendered"),
    )))
}

/// An environment rendered for a Rollout's batch.
pub(crate) enum ForRollout {
    Folder {
        path: RepoPath,
        files: std::collections::BTreeMap<String, Vec<u8>>,
        /// SHA-256 (hex) of the files, as status records it.
        digest: String,
    },
    /// It cannot be rendered as it stands; why.
    Refused(String),
}
