//! Turning owed changes into a pushed commit: fetch, apply, commit, push, and on a
//! race fetch again and re-apply on top of what others pushed.
//!
//! Runs on the writer thread only; every call here may block on disk or network.
//!
//! A little over the project's ~400 lines: one publish attempt is a sequence of
//! fallible steps (fetch, load, apply, commit, push, the race retry) over one
//! `Engine`, and reading it top to bottom in one place is the point.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use git2::{Oid, Repository};

use super::batch::Exclusive;
use super::change::{Change, ChangeSet};
use super::config::{PushMode, WriterConfig};
use super::deadlines::RemoteActivity;
use super::error::{Error, ErrorContext, FailureKind, GitFailure, GitOp};
use super::history;
use super::inventory::{EnvironmentFolder, environment_folders};
use super::layout::RepoPath;
use super::message::commit_message;
use super::metrics::{BatchOutcome, GitOpsMetrics};
use super::outcome::CommitOutcome;
use super::remote::{RemoteAccess, tracking_ref};
use super::{repo, tree};

/// The writer's git state: the clone, the changes owed to the remote, the config.
pub(crate) struct Engine {
    config: WriterConfig,
    ctx: ErrorContext,
    metrics: GitOpsMetrics,
    /// The fetch or push in progress, for the stall check.
    activity: RemoteActivity,
    /// `None` after the clone was found damaged; re-created before the next attempt.
    repo: Option<Repository>,
    /// Changes accepted but not yet on the remote; kept across failed batches.
    pending: ChangeSet,
    /// Pushes lost in a row to other writers (non-fast-forward) since the last publish
    /// that was not contended.
    lost_races: u32,
}

/// What one publish pushes: the owed shared changes, or an exclusive batch.
#[derive(Clone, Copy)]
enum Load<'a> {
    Owed,
    Batch(&'a Exclusive),
}

/// Lost races one publish retries at once before the writer loop takes over to add
/// the changes that arrived meanwhile (see [`Engine::publish_load`]).
const RACES_PER_PUBLISH: u32 = 4;

/// A short random pause before pushing again after losing a race: a few milliseconds
/// rather than a growing backoff, so two writers that keep colliding drift apart while
/// Berth still tries again before a busy branch moves on.
pub(crate) fn race_jitter() -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // Every `RandomState` is keyed differently: randomness without another dependency.
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    Duration::from_millis(2 + random % 24)
}

impl Engine {
    /// Opens (or creates) the local clone. Does not touch the network.
    pub(crate) fn open(config: WriterConfig, metrics: GitOpsMetrics, activity: RemoteActivity) -> Result<Self, Error> {
        let ctx = ErrorContext {
            remote: config.remote_display(),
            branch: config.branch.clone(),
            redactor: config.credentials.redactor(),
            clone_dir: repo::clone_path(&config.workdir).to_string_lossy().into_owned(),
        };
        let (repo, _fresh) = repo::open_or_create(&config.workdir, &ctx.remote, &config.branch, &ctx)?;
        Ok(Self { config, ctx, metrics, activity, repo: Some(repo), pending: ChangeSet::default(), lost_races: 0 })
    }

    /// Whether changes are waiting for a retry.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Fetches the watched branch: proves the remote is reachable with these
    /// credentials and warms the clone.
    pub(crate) fn check_remote(&mut self) -> Result<(), Error> {
        let result = self.ensure_repo().and_then(|()| {
            let repo = self.repo.as_ref().ok_or_else(missing_clone)?;
            self.access().fetch(repo, &[self.config.branch.as_str()]).map(drop)
        });
        result.map_err(|failure| {
            if failure.kind == FailureKind::Local {
                self.discard_clone();
            }
            self.ctx.error(failure)
        })
    }

    /// Fetches the watched branch and lists the environment folders at its head, each
    /// with the content of its `marker` file (see [`super::inventory`]).
    pub(crate) fn folders(&mut self, marker: &str) -> Result<Vec<EnvironmentFolder>, Error> {
        self.read_remote_head(GitOp::ReadTree, |repo, head| {
            let Some(head) = head else { return Ok(Vec::new()) };
            environment_folders(repo, repo.find_commit(head)?.tree_id(), marker)
        })
    }

    /// Fetches the watched branch and returns the newest of the first `depth` commits
    /// of its history whose trailers include all of `wanted` (see [`history`]).
    pub(crate) fn find_commit(&mut self, wanted: &[(String, String)], depth: usize) -> Result<Option<Oid>, Error> {
        self.read_remote_head(GitOp::ReadHistory, |repo, head| match head {
            Some(head) => history::find_with_trailers(repo, head, wanted, depth),
            None => Ok(None),
        })
    }

    /// Fetches the watched branch and says whether `commit` is on it.
    pub(crate) fn is_merged(&mut self, commit: Oid) -> Result<bool, Error> {
        self.read_remote_head(GitOp::ReadHistory, |repo, head| match head {
            Some(head) => history::reachable(repo, head, commit),
            None => Ok(false),
        })
    }

    /// Fetches the watched branch and reads its remote head (`None`: the branch does
    /// not exist yet) with `read`; a read failure is reported as `op`.
    fn read_remote_head<T>(
        &mut self,
        op: GitOp,
        read: impl FnOnce(&Repository, Option<Oid>) -> Result<T, git2::Error>,
    ) -> Result<T, Error> {
        let result = self.ensure_repo().and_then(|()| {
            let repo = self.repo.as_ref().ok_or_else(missing_clone)?;
            let head = self.access().fetch(repo, &[self.config.branch.as_str()])?.first().copied().flatten();
            read(repo, head).map_err(|e| self.ctx.failure(op, &e))
        });
        result.map_err(|failure| {
            if failure.kind == FailureKind::Local {
                self.discard_clone();
            }
            self.ctx.error(failure)
        })
    }

    /// Adds `incoming` to the owed changes and publishes all of them in one commit,
    /// retrying within the configured bounds. On failure the changes stay owed.
    pub(crate) fn publish(&mut self, incoming: Vec<Change>) -> Result<CommitOutcome, Error> {
        let received = incoming.len();
        self.pending.extend(incoming);
        self.metrics.pending(self.pending.len());
        let started = Instant::now();
        let lost_before = self.lost_races;
        let result = self.publish_load(Load::Owed);
        self.metrics.batch(outcome_of(&result), received, started.elapsed().as_secs_f64());
        match &result {
            Ok(o) => {
                tracing::info!(
                    commit = %o.commit, branch = %o.branch, created = o.created,
                    changes = self.pending.len(), lost_races = self.lost_races, "gitops batch published"
                );
                self.pending.clear();
            }
            Err(Error::Contended { rejections, waiting, .. }) if lost_before == 0 => {
                tracing::info!(rejections, waiting, "gitops branch busy: others pushed first; pushing again at once")
            }
            Err(Error::Contended { rejections, waiting, .. }) => {
                tracing::debug!(rejections, waiting, "gitops branch still busy; pushing again at once")
            }
            Err(e) if e.failure_kind() == Some(FailureKind::Rejected) => {
                // The server refused this content (hook, protected path): keeping it
                // would poison every later batch. Callers got the error and requeue.
                tracing::warn!(error = %e, dropped = self.pending.len(), "gitops batch rejected by the remote");
                self.pending.clear();
            }
            Err(e) => tracing::warn!(
                error = %e, owed = self.pending.len(),
                "gitops batch not published; changes kept for retry"
            ),
        }
        let contended = result.as_ref().is_err_and(Error::is_contended);
        if !contended {
            self.lost_races = 0;
        }
        self.metrics.contended(if contended { self.pending.len() } else { 0 });
        self.metrics.pending(self.pending.len());
        result
    }

    /// Publishes `batch` as one commit of its own, after whatever shared changes are
    /// still owed (their own commit; if that fails, so does the batch, unapplied). All or
    /// nothing: when the batch cannot be pushed nothing of it stays owed, the caller
    /// retries. Races are retried at once for up to
    /// [`RetryPolicy::contended_patience`](super::RetryPolicy): nothing can ride along.
    pub(crate) fn publish_batch(&mut self, batch: &Exclusive) -> Result<CommitOutcome, Error> {
        if self.has_pending() {
            self.publish(Vec::new())?;
        }
        let started = Instant::now();
        let result = self.publish_load(Load::Batch(batch));
        self.metrics.exclusive_batch(outcome_of(&result));
        match &result {
            Ok(o) => tracing::info!(
                commit = %o.commit, branch = %o.branch, created = o.created, changes = batch.set.len(),
                seconds = started.elapsed().as_secs_f64(), "gitops exclusive batch published"
            ),
            Err(e) => tracing::warn!(error = %e, changes = batch.set.len(), "gitops exclusive batch not published"),
        }
        result
    }

    /// Attempts until `load` is pushed. A lost race (someone else pushed first) is
    /// tried again at once after [`race_jitter`]: the next attempt fetches their head
    /// and rebuilds the tree on it, which costs milliseconds, while a growing sleep
    /// would let a busy branch move again and again. Races do not use up
    /// [`RetryPolicy::max_push_attempts`](super::RetryPolicy); after
    /// [`RACES_PER_PUBLISH`] of them the writer loop takes over owed changes, adds the
    /// changes that arrived meanwhile and calls again, while an exclusive batch keeps
    /// going for up to the contended patience. Outages (network, local damage) back off.
    fn publish_load(&mut self, load: Load<'_>) -> Result<CommitOutcome, Error> {
        let policy = self.config.retry.clone();
        let started = Instant::now();
        let mut failures = 0;
        let mut races = 0;
        loop {
            self.metrics.attempt();
            let failure = match self.attempt(load) {
                Ok(outcome) => return Ok(outcome),
                Err(failure) => failure,
            };
            self.metrics.failure(failure.kind);
            tracing::debug!(failures, races, error = %failure, "gitops publish attempt failed");
            if failure.kind == FailureKind::Local {
                self.discard_clone();
                if let Load::Batch(batch) = load {
                    batch.set.forget_written();
                }
            }
            if !failure.kind.is_retryable() {
                return Err(self.ctx.error(failure));
            }
            // A lost race only when the branch really moved: a stale lock or a branch the
            // server will not move answers the same way, and retrying that at once would
            // never end. It is an outage: back off, and give up in the end.
            if failure.kind == FailureKind::NonFastForward && self.branch_moved() {
                races += 1;
                let (rejections, waiting, give_way) = match load {
                    Load::Owed => {
                        self.lost_races = self.lost_races.saturating_add(1);
                        (self.lost_races, self.pending.len(), races >= RACES_PER_PUBLISH)
                    }
                    Load::Batch(batch) => (races, batch.set.len(), started.elapsed() >= policy.contended_patience),
                };
                if give_way {
                    return Err(Error::Contended {
                        remote: self.ctx.remote.clone(),
                        branch: self.ctx.branch.clone(),
                        rejections,
                        waiting,
                    });
                }
                std::thread::sleep(race_jitter());
                continue;
            }
            failures += 1;
            if failures >= policy.max_push_attempts {
                return Err(Error::PushGaveUp {
                    remote: self.ctx.remote.clone(),
                    branch: self.ctx.branch.clone(),
                    attempts: failures,
                    last: failure,
                });
            }
            std::thread::sleep(policy.backoff(failures + 1));
        }
    }

    /// After a rejected push: whether the watched branch moved away from the head the
    /// push expected (the remote-tracking ref, which the attempt fetched just before
    /// pushing). When it cannot tell (promotion branches, a failed fetch), it says yes.
    fn branch_moved(&self) -> bool {
        let (PushMode::Direct, Some(repo)) = (&self.config.mode, self.repo.as_ref()) else {
            return true;
        };
        let branch = self.config.branch.as_str();
        let expected = repo.refname_to_id(&tracking_ref(branch)).ok();
        match self.access().fetch(repo, &[branch]) {
            Ok(heads) => heads.first().copied().flatten() != expected,
            Err(_) => true,
        }
    }

    /// One try: fetch, apply `load` on the remote head, commit if the tree changed,
    /// push fast-forward only.
    fn attempt(&mut self, load: Load<'_>) -> Result<CommitOutcome, GitFailure> {
        self.ensure_repo()?;
        let repo = self.repo.as_ref().ok_or_else(missing_clone)?;
        let access = self.access();
        let target = self.config.branch.as_str();
        let set = match load {
            Load::Owed => &self.pending,
            Load::Batch(batch) => &batch.set,
        };
        let changes = set.changes();
        let author = (&self.config.author_name, &self.config.author_email);
        let ctx = &self.ctx;
        let local_fail = |op: GitOp| move |e: git2::Error| ctx.failure(op, &e);

        let promotion = match &self.config.mode {
            PushMode::Direct => None,
            PushMode::PullRequest { branch_prefix } => {
                let digest = match load {
                    Load::Owed => set.short_digest(),
                    Load::Batch(batch) => batch.short_digest(),
                };
                Some(format!("{branch_prefix}{digest}"))
            }
        };
        let mut branches = vec![target];
        branches.extend(promotion.as_deref());
        let heads = access.fetch(repo, &branches)?;
        let target_head = heads.first().copied().flatten();

        let written = set.written();
        let (applied, base_tree) =
            apply_on(repo, target_head, changes, written).map_err(local_fail(GitOp::BuildTree))?;
        let tree = applied.tree;
        if let Some(head) = target_head
            && base_tree == Some(tree)
        {
            return Ok(unchanged(head, target));
        }
        // `expected` is the remote value the push replaces (compare-and-swap).
        let (branch, parent, expected, tree, changed) = match promotion.as_deref() {
            None => (target, target_head, target_head, tree, applied.changed),
            Some(promo) => match heads.get(1).copied().flatten() {
                // Merged (or left behind) and the watched branch no longer holds these
                // changes: the branch starts again from the watched head, a fast-forward.
                Some(promo_head) if merged(repo, target_head, promo_head) => {
                    (promo, target_head, Some(promo_head), tree, applied.changed)
                }
                Some(promo_head) => {
                    let (promo_applied, promo_base) =
                        apply_on(repo, Some(promo_head), changes, written).map_err(local_fail(GitOp::BuildTree))?;
                    if promo_base == Some(promo_applied.tree) {
                        return Ok(unchanged(promo_head, promo));
                    }
                    (promo, Some(promo_head), Some(promo_head), promo_applied.tree, promo_applied.changed)
                }
                None => (promo, target_head, None, tree, applied.changed),
            },
        };
        let message = match load {
            Load::Owed => commit_message(&named_in_message(changes, &changed)),
            Load::Batch(batch) => batch.message(),
        };
        let commit = write_commit(repo, author, tree, parent, &message).map_err(local_fail(GitOp::Commit))?;
        let local = format!("refs/heads/{branch}");
        repo.reference(&local, commit, true, "berth: commit").map_err(local_fail(GitOp::UpdateRef))?;
        access.push(repo, &local, commit, expected)?;
        if promotion.is_some() {
            // Promotion branches live on the remote; keep the clone small.
            for name in [local, tracking_ref(branch)] {
                if let Ok(mut reference) = repo.find_reference(&name) {
                    reference.delete().map_err(local_fail(GitOp::UpdateRef))?;
                }
            }
        } else {
            repo.reference(&tracking_ref(branch), commit, true, "berth: push").map_err(local_fail(GitOp::UpdateRef))?;
        }
        self.metrics.commit();
        Ok(CommitOutcome { commit: commit.into(), branch: branch.to_owned(), created: true })
    }

    fn access(&self) -> RemoteAccess<'_> {
        RemoteAccess {
            url: &self.config.remote_url,
            credentials: &self.config.credentials,
            ctx: &self.ctx,
            activity: &self.activity,
        }
    }

    /// Drops the damaged clone; the next attempt creates a fresh one.
    fn discard_clone(&mut self) {
        self.repo = None;
        self.pending.forget_written();
        let path = repo::clone_path(&self.config.workdir);
        if let Err(e) = repo::discard(&path) {
            tracing::warn!(error = %e, "cannot delete damaged gitops clone");
        }
    }

    fn ensure_repo(&mut self) -> Result<(), GitFailure> {
        if self.repo.is_some() {
            return Ok(());
        }
        match repo::open_or_create(&self.config.workdir, &self.ctx.remote, &self.config.branch, &self.ctx) {
            Ok((repo, _)) => {
                self.metrics.reclone();
                tracing::info!("gitops clone re-created");
                self.repo = Some(repo);
                Ok(())
            }
            Err(e) => Err(GitFailure {
                op: GitOp::Init,
                kind: FailureKind::Local,
                message: self.ctx.redactor.redact(&error_chain(&e)),
            }),
        }
    }
}

/// How a publish ended, for the metrics.
fn outcome_of(result: &Result<CommitOutcome, Error>) -> BatchOutcome {
    match result {
        Ok(o) if o.created => BatchOutcome::Committed,
        Ok(_) => BatchOutcome::Unchanged,
        Err(e) if e.is_contended() => BatchOutcome::Contended,
        Err(_) => BatchOutcome::Failed,
    }
}

/// Whether the promotion branch head `promo` is already in the watched branch's history.
fn merged(repo: &Repository, target: Option<Oid>, promo: Oid) -> bool {
    target.is_some_and(|target| history::reachable(repo, target, promo).unwrap_or(false))
}

fn unchanged(head: Oid, branch: &str) -> CommitOutcome {
    CommitOutcome { commit: head.into(), branch: branch.to_owned(), created: false }
}

/// Applies `changes` on the tree of `commit`; returns the new tree (with the folders
/// that really changed) and the old one.
fn apply_on(
    repo: &Repository,
    commit: Option<Oid>,
    changes: &[Change],
    written: &super::change::WrittenFolders,
) -> Result<(tree::Applied, Option<Oid>), git2::Error> {
    let base_tree = commit.map(|id| repo.find_commit(id).map(|c| c.tree_id())).transpose()?;
    let applied = tree::apply(repo, base_tree, changes, written)?;
    Ok((applied, base_tree))
}

/// The changes a commit names: those whose folder it really changes. A change that
/// puts what the folder already holds (a reconcile confirming a rollout's commit, say)
/// rides along in the same batch, but a commit saying it updated that folder would
/// mislead whoever reads the history, and trailer searches. All of them if none of
/// them changed anything on its own (the cluster's note file, say).
fn named_in_message<'c>(changes: &'c [Change], changed: &HashSet<RepoPath>) -> Vec<Change> {
    let named: Vec<&'c Change> = changes.iter().filter(|c| changed.contains(&c.path)).collect();
    if named.is_empty() { changes.to_vec() } else { named.into_iter().cloned().collect() }
}

fn write_commit(
    repo: &Repository,
    (name, email): (&String, &String),
    tree: Oid,
    parent: Option<Oid>,
    message: &str,
) -> Result<Oid, git2::Error> {
    let signature = git2::Signature::now(name, email)?;
    let tree = repo.find_tree(tree)?;
    let parent = parent.map(|id| repo.find_commit(id)).transpose()?;
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(None, &signature, &signature, message, &tree, &parents)
}

fn missing_clone() -> GitFailure {
    GitFailure { op: GitOp::Open, kind: FailureKind::Local, message: "no usable local clone".to_owned() }
}

/// An error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_names_only_the_changes_that_changed_their_folder() {
        use super::super::change::ChangeReason;
        use super::super::change::Operation;
        let change = |path: &str| Change {
            path: RepoPath::parse(path).expect("valid"),
            operation: Operation::Remove,
            reason: ChangeReason::new(path, None, ""),
        };
        let changes = [change("c/t/a"), change("c/t/b")];
        let changed: HashSet<RepoPath> = [RepoPath::parse("c/t/b").expect("valid")].into();
        let named = named_in_message(&changes, &changed);
        assert_eq!(named.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(), ["c/t/b"]);
        assert_eq!(named_in_message(&changes, &HashSet::new()).len(), 2, "none changed on its own: all named");
    }

    #[test]
    fn race_jitter_is_a_few_milliseconds_and_varies() {
        let draws: Vec<Duration> = (0..200).map(|_| race_jitter()).collect();
        assert!(draws.iter().all(|d| (Duration::from_millis(2)..=Duration::from_millis(25)).contains(d)), "{draws:?}");
        let distinct: std::collections::BTreeSet<_> = draws.iter().collect();
        assert!(distinct.len() > 10, "colliding writers must drift apart: {distinct:?}");
    }
}
