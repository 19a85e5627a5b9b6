//! Exclusive batches: a rollout batch lands as exactly one commit of its own, all or
//! nothing, found again by its trailers, and its rollback is its exact inverse.

use berth::gitops::{BatchChange, BatchCommit, CommitId};

use super::*;

const ROLLOUT: &str = "payments/checkout-v2";

/// An environment's folder at `revision`; v2 adds a file, so rolling back removes one.
fn at_revision(request: &str, revision: &str) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::from([
        ("namespace.yaml".to_owned(), format!("kind: Namespace\nname: {request}\n").into_bytes()),
        ("application.yaml".to_owned(), format!("kind: Application\ntargetRevision: {revision}\n").into_bytes()),
    ]);
    if revision == "v2" {
        files.insert("hpa.yaml".to_owned(), b"kind: HorizontalPodAutoscaler\n".to_vec());
    }
    files
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// The batch moving `requests` of `tenant` to `revision` as rollout step `step`.
fn batch(tenant: &str, requests: &[String], revision: &str, step: &str) -> BatchCommit {
    BatchCommit {
        changes: requests
            .iter()
            .map(|request| BatchChange {
                path: env(tenant, request),
                files: at_revision(request, revision),
                reason: ChangeReason::new(format!("{tenant}/{request}"), Some(2), format!("promote to {revision}")),
            })
            .collect(),
        subject: format!("berth: promote checkout {revision} to {} environments ({step})", requests.len()),
        trailers: [("Berth-Rollout", ROLLOUT), ("Berth-Rollout-Step", step), ("Berth-Revision", revision)]
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .to_vec(),
    }
}

fn trailer(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}

/// The files `commit` changed against its first parent.
fn changed_files(fx: &Fixture, commit: &str) -> BTreeSet<String> {
    git(&fx.remote, &["diff-tree", "-r", "--root", "--no-commit-id", "--name-only", commit])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The folders `commit` changed against its first parent.
fn changed_folders(fx: &Fixture, commit: &str) -> BTreeSet<String> {
    changed_files(fx, commit).iter().filter_map(|f| f.rsplit_once('/').map(|(dir, _)| dir.to_owned())).collect()
}

fn folders_of(tenant: &str, requests: &[String]) -> BTreeSet<String> {
    requests.iter().map(|r| env(tenant, r).as_str().to_owned()).collect()
}

async fn put_at(writer: &WriterHandle, tenant: &str, request: &str, revision: &str) -> CommitOutcome {
    let reason = ChangeReason::new(format!("{tenant}/{request}"), Some(1), "provision");
    writer.put(env(tenant, request), at_revision(request, revision), reason).await.expect("put")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_commit_of_its_own_while_shared_changes_keep_arriving() {
    let fx = Fixture::new();
    fx.seed();
    let mut config = fx.config("w");
    config.batch_window = Duration::from_millis(300);
    let (writer, registry) = start(config).await;

    // Shared changes sent just before and alongside the batch: the batch comes while
    // their window is open.
    let mut shared = spawn_puts(&writer, "team-s", 20);
    let requests = names("canary", 3);
    let outcome = writer.commit_batch(batch("team-s", &requests, "v2", "production/3")).await.expect("batch");
    let mut shared_commits = BTreeSet::new();
    while let Some(done) = shared.join_next().await {
        shared_commits.insert(done.expect("task").commit.as_str().to_owned());
    }
    writer.shutdown().await.expect("shutdown");

    assert!(outcome.created);
    assert_eq!(outcome.branch, "main");
    let commit = outcome.commit.as_str();
    assert!(!shared_commits.contains(commit), "no shared change rode in the batch's commit");
    assert_eq!(changed_folders(&fx, commit), folders_of("team-s", &requests), "exactly the batch's folders");
    assert_eq!(changed_files(&fx, commit).len(), 9, "three files per folder");
    let body = git(&fx.remote, &["log", "-1", "--format=%B", commit]);
    assert!(body.starts_with("berth: promote checkout v2 to 3 environments (production/3)\n\n"), "{body}");
    assert_eq!(body.lines().filter(|l| l.starts_with("- update ")).count(), 3, "{body}");
    let trailers = git(&fx.remote, &["log", "-1", "--format=%(trailers:only,unfold)", commit]);
    let mut expected = vec![
        format!("Berth-Rollout: {ROLLOUT}"),
        "Berth-Rollout-Step: production/3".to_owned(),
        "Berth-Revision: v2".to_owned(),
    ];
    for request in &requests {
        expected.push(format!("Berth-Request: team-s/{request}"));
        expected.push("Berth-Generation: 2".to_owned());
    }
    assert_eq!(trailers, expected.join("\n"));

    let head = fx.head("main").expect("main");
    for shared in shared_commits.iter().chain([&commit.to_owned()]) {
        assert!(fx.is_ancestor(shared, &head), "{shared} lost");
    }
    let folders: BTreeSet<_> = fx.files("main").iter().filter_map(|f| f.split('/').nth(4).map(str::to_owned)).collect();
    assert_eq!(folders.len(), 23, "every shared change and the batch landed: {folders:?}");
    assert_eq!(metric(&registry, "berth_gitops_exclusive_batches_total{outcome=\"committed\"}"), 1.0);
    assert_eq!(metric(&registry, "berth_gitops_batch_size_sum"), 20.0, "the batch is not a shared batch");
    fx.fsck_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_1200_folders_is_one_commit() {
    let fx = Fixture::new();
    let seed = fx.seed();
    let (writer, _) = start(fx.config("w")).await;
    let requests = names("env", 1200);
    let outcome = writer.commit_batch(batch("team-big", &requests, "v2", "production/1")).await.expect("batch");
    writer.shutdown().await.expect("shutdown");

    assert!(outcome.created);
    assert_eq!(fx.head("main").as_deref(), Some(outcome.commit.as_str()));
    assert_eq!(git(&fx.remote, &["rev-parse", &format!("{}^", outcome.commit)]), seed, "one commit on the seed");
    assert_eq!(changed_folders(&fx, outcome.commit.as_str()), folders_of("team-big", &requests));
    let requests_named =
        git(&fx.remote, &["log", "-1", "--format=%(trailers:key=Berth-Request,valueonly)", outcome.commit.as_str()]);
    assert_eq!(requests_named.lines().count(), 1200);
    fx.fsck_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_sending_a_batch_that_landed_commits_nothing() {
    let fx = Fixture::new();
    fx.seed();
    let (writer, registry) = start(fx.config("w")).await;
    let requests = names("web", 3);
    let first = writer.commit_batch(batch("team-re", &requests, "v2", "production/1")).await.expect("batch");
    let again = writer.commit_batch(batch("team-re", &requests, "v2", "production/1")).await.expect("again");
    assert!(first.created);
    assert_eq!(again, CommitOutcome { created: false, ..first.clone() });

    // Others moved the branch since: still no commit, and the answer is the current head.
    let other = put(&writer, "team-other", "api", 1).await;
    writer.shutdown().await.expect("shutdown");
    let (writer, _) = start(fx.config("w-new-leader")).await;
    let later = writer.commit_batch(batch("team-re", &requests, "v2", "production/1")).await.expect("later");
    writer.shutdown().await.expect("shutdown");
    assert_eq!(later, CommitOutcome { created: false, ..other });
    assert_eq!(fx.commit_count("main"), 3, "seed, the batch, the other change");
    assert_eq!(metric(&registry, "berth_gitops_exclusive_batches_total{outcome=\"unchanged\"}"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_batch_restores_the_exact_tree_and_is_the_inverse_of_the_batch() {
    let fx = Fixture::new();
    fx.seed();
    let (writer, _) = start(fx.config("w")).await;
    let requests = names("web", 4);
    for request in &requests {
        put_at(&writer, "team-rb", request, "v1").await;
    }
    put_at(&writer, "team-rb", "untouched", "v1").await;
    let before = fx.head("main").expect("main");
    let before_tree = git(&fx.remote, &["rev-parse", &format!("{before}^{{tree}}")]);

    let promoted = writer.commit_batch(batch("team-rb", &requests, "v2", "production/1")).await.expect("batch");
    let mut rollback = batch("team-rb", &requests, "v1", "production/1");
    rollback.subject = "berth: roll back checkout to v1 in 4 environments (production/1)".to_owned();
    rollback.trailers.push(trailer("Berth-Rollback-Of", promoted.commit.as_str()));
    let rolled_back = writer.commit_batch(rollback).await.expect("rollback");
    writer.shutdown().await.expect("shutdown");

    let (b, r) = (promoted.commit.as_str(), rolled_back.commit.as_str());
    assert!(promoted.created && rolled_back.created);
    assert_eq!(git(&fx.remote, &["rev-parse", &format!("{b}^")]), before);
    assert_eq!(git(&fx.remote, &["rev-parse", &format!("{r}^")]), b, "a forward commit on the batch");
    assert_eq!(git(&fx.remote, &["rev-parse", &format!("{r}^{{tree}}")]), before_tree, "byte for byte");
    let forward = git(&fx.remote, &["diff", "--binary", "--full-index", "--no-prefix", &format!("{b}^"), b]);
    let inverse = git(&fx.remote, &["diff", "--binary", "--full-index", "--no-prefix", "-R", &format!("{r}^"), r]);
    assert!(forward.contains("hpa.yaml") && forward.contains("targetRevision: v2"), "{forward}");
    assert_eq!(inverse, forward, "the rollback's diff is the batch's, reversed");
    let undoes = git(&fx.remote, &["log", "-1", "--format=%(trailers:key=Berth-Rollback-Of,valueonly)", r]);
    assert_eq!(undoes, b);
    fx.fsck_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_commit_is_found_by_its_trailers_and_is_on_the_branch() {
    let fx = Fixture::new();
    fx.seed();
    let (writer, _) = start(fx.config("w")).await;
    let step1 = writer.commit_batch(batch("team-f", &names("a", 2), "v2", "production/1")).await.expect("batch");
    let step2 = writer.commit_batch(batch("team-f", &names("b", 2), "v2", "production/2")).await.expect("batch");
    put(&writer, "team-other", "api", 1).await;

    let find = |pairs: &[(&str, &str)], depth| {
        let writer = writer.clone();
        let pairs = pairs.iter().map(|(k, v)| trailer(k, v)).collect();
        async move { writer.find_commit(pairs, depth).await.expect("search") }
    };
    let rollout = ("Berth-Rollout", ROLLOUT);
    assert_eq!(find(&[rollout, ("Berth-Rollout-Step", "production/1")], 50).await, Some(step1.commit.clone()));
    assert_eq!(find(&[rollout, ("berth-rollout-step", "production/2")], 50).await, Some(step2.commit.clone()));
    assert_eq!(find(&[rollout], 50).await, Some(step2.commit.clone()), "the newest");
    assert_eq!(find(&[rollout, ("Berth-Rollout-Step", "production/3")], 50).await, None, "another step");
    assert_eq!(find(&[("Berth-Rollout", "payments/other")], 50).await, None, "another rollout");
    assert_eq!(find(&[rollout], 1).await, None, "beyond the depth searched");
    let refused = writer.find_commit(Vec::new(), 50).await.expect_err("no trailers");
    assert!(matches!(refused, Error::InvalidBatch { .. }), "{refused}");

    assert!(writer.is_merged(step1.commit.clone()).await.expect("merged"));
    let elsewhere: CommitId = "0123456789abcdef0123456789abcdef01234567".parse().expect("commit id");
    assert!(!writer.is_merged(elsewhere).await.expect("not merged"));
    writer.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_pull_request_mode_a_batch_waits_on_its_promotion_branch_until_merged() {
    let fx = Fixture::new();
    let seed = fx.seed();
    let mut config = fx.config("w");
    config.mode = PushMode::PullRequest { branch_prefix: "berth/".to_owned() };
    let (writer, _) = start(config).await;
    let requests = names("web", 2);
    let step = [trailer("Berth-Rollout", ROLLOUT), trailer("Berth-Rollout-Step", "production/1")];

    let promoted = writer.commit_batch(batch("team-pr", &requests, "v2", "production/1")).await.expect("batch");
    assert!(promoted.created);
    assert!(promoted.branch.starts_with("berth/"), "{}", promoted.branch);
    assert_eq!(fx.head(&promoted.branch).as_deref(), Some(promoted.commit.as_str()));
    assert_eq!(fx.head("main").as_deref(), Some(seed.as_str()), "main untouched");
    assert!(!writer.is_merged(promoted.commit.clone()).await.expect("is_merged"));
    assert_eq!(writer.find_commit(step.to_vec(), 50).await.expect("find"), None);
    let again = writer.commit_batch(batch("team-pr", &requests, "v2", "production/1")).await.expect("again");
    assert_eq!(again, CommitOutcome { created: false, ..promoted.clone() }, "a re-sent batch finds its branch");

    // Someone merges the pull request (here: main fast-forwarded by hand).
    git(&fx.remote, &["update-ref", "refs/heads/main", promoted.commit.as_str(), &seed]);
    assert!(writer.is_merged(promoted.commit.clone()).await.expect("is_merged"));
    assert_eq!(writer.find_commit(step.to_vec(), 50).await.expect("find"), Some(promoted.commit.clone()));

    // Its rollback restores older bytes on a branch of its own, merged too.
    let mut rollback = batch("team-pr", &requests, "v1", "production/1");
    rollback.trailers.push(trailer("Berth-Rollback-Of", promoted.commit.as_str()));
    let rolled_back = writer.commit_batch(rollback).await.expect("rollback");
    assert!(rolled_back.created);
    assert_ne!(rolled_back.branch, promoted.branch);
    assert!(!writer.is_merged(rolled_back.commit.clone()).await.expect("is_merged"));
    git(&fx.remote, &["update-ref", "refs/heads/main", rolled_back.commit.as_str(), promoted.commit.as_str()]);

    // The same step promoted again: its old, merged branch does not count as "already there".
    let retried = writer.commit_batch(batch("team-pr", &requests, "v2", "production/1")).await.expect("retry");
    writer.shutdown().await.expect("shutdown");
    assert!(retried.created, "main holds the rollback, so the promotion needs a new commit");
    assert_eq!(retried.branch, promoted.branch);
    assert_eq!(git(&fx.remote, &["rev-parse", &format!("{}^", retried.commit)]), rolled_back.commit.as_str());
    assert!(fx.is_ancestor(promoted.commit.as_str(), retried.commit.as_str()), "the branch moved forward, unforced");
    fx.fsck_clean();
}

/// Refuses every push whose new commit carries a `Berth-Rollout` trailer.
const REFUSE_ROLLOUTS: &str = r#"#!/bin/sh
while read old new ref; do
  if git log -1 --format=%B "$new" | grep -q '^Berth-Rollout:'; then
    echo "rollouts need a change ticket" >&2
    exit 1
  fi
done
exit 0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_server_refuses_is_not_owed_and_never_rides_along() {
    let fx = Fixture::new();
    fx.seed();
    let daemon = hooked_remote(&fx, REFUSE_ROLLOUTS);
    let mut config = fx.config("w");
    config.remote_url = daemon.url.clone();
    let (writer, registry) = start(config).await;
    let requests = names("web", 3);

    let refused = writer.commit_batch(batch("team-no", &requests, "v2", "production/1")).await.expect_err("refused");
    assert_eq!(refused.failure_kind(), Some(FailureKind::Rejected), "{refused}");
    assert!(!refused.is_transient());
    assert_eq!(metric(&registry, "berth_gitops_pending_changes"), 0.0);
    assert_eq!(metric(&registry, "berth_gitops_exclusive_batches_total{outcome=\"failed\"}"), 1.0);

    let shared = put(&writer, "team-no", "api", 1).await;
    writer.shutdown().await.expect("shutdown");
    drop(daemon);
    assert!(shared.created);
    assert_eq!(changed_folders(&fx, shared.commit.as_str()), folders_of("team-no", &["api".to_owned()]));
    let files = fx.files("main");
    assert!(!files.iter().any(|f| f.contains("/web-")), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owed_changes_go_first_in_their_own_commit_and_a_batch_that_cannot_be_pushed_is_not_owed() {
    let fx = Fixture::new();
    fx.seed();
    let mut config = fx.config("w");
    // Owed changes wait for the next caller, so the test decides when they go.
    config.retry.pending_retry_interval = Duration::from_secs(3600);
    let (writer, registry) = start(config).await;

    let away = fx.dir.path().join("remote-away.git");
    std::fs::rename(&fx.remote, &away).expect("take remote away");
    let lost = names("lost", 2);
    let err = writer.commit_batch(batch("team-o", &lost, "v2", "production/1")).await.expect_err("remote is down");
    assert!(matches!(err, Error::PushGaveUp { .. }) && err.is_transient(), "{err}");
    assert_eq!(metric(&registry, "berth_gitops_pending_changes"), 0.0, "a failed batch is not owed");
    writer.put(env("team-o", "owed"), manifests("owed", 1), reason("owed", 1)).await.expect_err("remote is down");
    assert_eq!(metric(&registry, "berth_gitops_pending_changes"), 1.0, "a failed shared change is");
    // Owed changes go first; while they cannot, a batch fails unapplied.
    let blocked = names("blocked", 2);
    writer.commit_batch(batch("team-o", &blocked, "v2", "production/1")).await.expect_err("owed change fails first");
    std::fs::rename(&away, &fx.remote).expect("bring remote back");

    let requests = names("web", 2);
    let outcome = writer.commit_batch(batch("team-o", &requests, "v2", "production/2")).await.expect("batch");
    writer.shutdown().await.expect("shutdown");
    let commit = outcome.commit.as_str();
    assert_eq!(changed_folders(&fx, commit), folders_of("team-o", &requests));
    let parent = git(&fx.remote, &["rev-parse", &format!("{commit}^")]);
    assert_eq!(changed_folders(&fx, &parent), folders_of("team-o", &["owed".to_owned()]), "owed went first");
    assert_eq!(fx.commit_count("main"), 3, "seed, owed, batch");
    let files = fx.files("main");
    assert!(
        !files.iter().any(|f| f.contains("/lost-") || f.contains("/blocked-")),
        "failed batches are not owed: {files:?}"
    );
    fx.fsck_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_loses_a_race_lands_on_top_as_one_commit_without_force() {
    let fx = Fixture::new();
    let seed = fx.seed();
    let daemon = racing_remote(&fx, 1);
    let mut config = fx.config("w");
    config.remote_url = daemon.url.clone();
    let (writer, registry) = start(config).await;
    let requests = names("web", 3);
    let outcome = writer.commit_batch(batch("team-race", &requests, "v2", "production/1")).await.expect("batch");
    writer.shutdown().await.expect("shutdown");
    drop(daemon);

    assert!(outcome.created);
    let racers = racers(&fx);
    assert_eq!(racers.len(), 1, "the hook raced");
    let head = fx.head("main").expect("main");
    assert_eq!(head, outcome.commit.as_str());
    assert_eq!(git(&fx.remote, &["rev-parse", &format!("{head}^")]), racers[0], "rebuilt on the racer");
    assert!(fx.is_ancestor(&seed, &head));
    assert_eq!(fx.commit_count("main"), 3, "seed, racer, one batch commit");
    assert_eq!(changed_folders(&fx, &head), folders_of("team-race", &requests));
    assert!(metric(&registry, "berth_gitops_push_failures_total{reason=\"non_fast_forward\"}") >= 1.0);
    fx.fsck_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_changes_sent_before_a_batch_land_before_it_in_their_own_commit() {
    let fx = Fixture::new();
    fx.seed();
    let (writer, _) = start(fx.config("w")).await;
    // Each put is polled once: its change is then in the writer's queue, ahead of the
    // batch, and its window is still open when the batch arrives.
    let mut before = Vec::new();
    for name in ["early-1", "early-2"] {
        let mut pending = Box::pin(put(&writer, "team-order", name, 1));
        assert!(futures::poll!(&mut pending).is_pending(), "answered before the writer saw it");
        before.push(pending);
    }
    let requests = names("web", 2);
    let outcome = writer.commit_batch(batch("team-order", &requests, "v2", "production/1")).await.expect("batch");
    let before = futures::future::join_all(before).await;
    writer.shutdown().await.expect("shutdown");

    let parent = git(&fx.remote, &["rev-parse", &format!("{}^", outcome.commit)]);
    assert_eq!(changed_folders(&fx, outcome.commit.as_str()), folders_of("team-order", &requests));
    for shared in &before {
        assert_ne!(shared.commit, outcome.commit);
        assert!(fx.is_ancestor(shared.commit.as_str(), &parent), "the open shared batch went first");
    }
}
