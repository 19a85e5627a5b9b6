//! GitOps writer against real repositories: a bare remote made with `git init --bare`
//! (file:// or a loopback `git daemon`), inspected with the git CLI.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::gitops::{
    ChangeReason, CommitOutcome, Credentials, Error, FailureKind, GitOpsMetrics, PushMode, RepoPath, RetryPolicy,
    Secret, Writer, WriterConfig, WriterHandle, environment_path,
};
use berth::testing::BusyPusher;
use futures::StreamExt;
use prometheus::{Registry, TextEncoder};
use tempfile::TempDir;

// ---------------------------------------------------------------- helpers

/// Runs git in `dir`; panics with stderr on failure.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir, args).output().expect("run git");
    assert!(out.status.success(), "git {args:?} in {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn git_ok(dir: &Path, args: &[&str]) -> bool {
    git_cmd(dir, args).output().expect("run git").status.success()
}

fn git_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["-c", "user.name=External", "-c", "user.email=external@example.com"])
        .args(args);
    cmd
}

struct Fixture {
    dir: TempDir,
    remote: PathBuf,
    url: String,
}

impl Fixture {
    /// An empty bare remote whose default branch is `main`.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let remote = dir.path().join("remote.git");
        git(dir.path(), &["init", "--quiet", "--bare", "--initial-branch=main", "remote.git"]);
        let url = format!("file://{}", remote.display());
        Self { dir, remote, url }
    }

    /// Gives the remote's `main` a first commit, as a team would.
    fn seed(&self) -> String {
        let work = self.dir.path().join("seed");
        git(self.dir.path(), &["clone", "--quiet", &self.url, "seed"]);
        std::fs::write(work.join("README.md"), "gitops repo\n").expect("write");
        git(&work, &["add", "README.md"]);
        git(&work, &["commit", "--quiet", "-m", "seed"]);
        git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
        self.head("main").expect("seeded")
    }

    fn workdir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, workdir: &str) -> WriterConfig {
        let mut config = WriterConfig::new(self.workdir(workdir), &self.url, "main");
        config.batch_window = Duration::from_millis(50);
        config.retry = RetryPolicy {
            max_push_attempts: 4,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            pending_retry_interval: Duration::from_millis(200),
            ..RetryPolicy::default()
        };
        config
    }

    fn head(&self, branch: &str) -> Option<String> {
        let reference = format!("refs/heads/{branch}");
        git_ok(&self.remote, &["rev-parse", "--verify", "--quiet", &reference])
            .then(|| git(&self.remote, &["rev-parse", &reference]))
    }

    fn files(&self, rev: &str) -> BTreeSet<String> {
        git(&self.remote, &["ls-tree", "-r", "--name-only", rev]).lines().map(str::to_owned).collect()
    }

    fn show(&self, rev: &str, path: &str) -> String {
        git(&self.remote, &["show", &format!("{rev}:{path}")])
    }

    fn commit_count(&self, rev: &str) -> usize {
        git(&self.remote, &["rev-list", "--count", rev]).parse().expect("count")
    }

    fn is_ancestor(&self, ancestor: &str, rev: &str) -> bool {
        git_ok(&self.remote, &["merge-base", "--is-ancestor", ancestor, rev])
    }

    fn fsck_clean(&self) {
        let out = git_cmd(&self.remote, &["fsck", "--strict", "--no-dangling"]).output().expect("fsck");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.trim().is_empty(), "git fsck: {text}");
    }
}

async fn start(config: WriterConfig) -> (WriterHandle, Registry) {
    let registry = Registry::new();
    let metrics = GitOpsMetrics::register(&registry).expect("metrics");
    let handle = Writer::spawn(config, metrics).await.expect("spawn writer");
    (handle, registry)
}

/// The value of one sample in the text exposition, e.g. `name{reason="network"}`.
fn metric(registry: &Registry, sample: &str) -> f64 {
    let text = TextEncoder::new().encode_to_string(&registry.gather()).expect("encode");
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}

fn env(tenant: &str, request: &str) -> RepoPath {
    environment_path("dev", tenant, request).expect("valid path")
}

fn manifests(request: &str, version: u32) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("namespace.yaml".to_owned(), format!("kind: Namespace\nname: {request}\n").into_bytes()),
        ("resourcequota.yaml".to_owned(), format!("kind: ResourceQuota\nversion: {version}\n").into_bytes()),
    ])
}

fn reason(request: &str, generation: i64) -> ChangeReason {
    ChangeReason::new(format!("team/{request}"), Some(generation), "provision")
}

async fn put(handle: &WriterHandle, tenant: &str, request: &str, version: u32) -> CommitOutcome {
    handle
        .put(env(tenant, request), manifests(request, version), reason(request, i64::from(version)))
        .await
        .expect("put")
}

/// Puts `env-00`, `env-01`, … of `tenant` from `count` concurrent tasks.
fn spawn_puts(writer: &WriterHandle, tenant: &'static str, count: usize) -> tokio::task::JoinSet<CommitOutcome> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let writer = writer.clone();
        tasks.spawn(async move { put(&writer, tenant, &format!("env-{i:02}"), 1).await });
    }
    tasks
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- tests

/// Exclusive batches (`WriterHandle::commit_batch`), on the helpers above.
#[path = "gitops_writer/batch.rs"]
mod batch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_lands_as_one_commit_with_files_and_trailers() {
    let fx = Fixture::new();
    let (writer, registry) = start(fx.config("w")).await;
    let outcome = writer
        .put(
            env("team-a", "web"),
            manifests("web", 1),
            ChangeReason::new("team-a/web", Some(3), "provision from class small"),
        )
        .await
        .expect("put");

    assert!(outcome.created);
    assert_eq!(outcome.branch, "main");
    let head = fx.head("main").expect("branch created on first push");
    assert_eq!(head, outcome.commit.as_str());
    assert_eq!(fx.commit_count("main"), 1);
    assert_eq!(
        fx.files("main"),
        BTreeSet::from([
            "clusters/dev/tenants/team-a/web/namespace.yaml".to_owned(),
            "clusters/dev/tenants/team-a/web/resourcequota.yaml".to_owned(),
        ])
    );
    assert_eq!(
        fx.show("main", "clusters/dev/tenants/team-a/web/resourcequota.yaml"),
        "kind: ResourceQuota\nversion: 1"
    );
    let trailers = git(&fx.remote, &["log", "-1", "--format=%(trailers:only,unfold)", "main"]);
    assert_eq!(trailers, "Berth-Request: team-a/web\nBerth-Generation: 3");
    let subject = git(&fx.remote, &["log", "-1", "--format=%s", "main"]);
    assert_eq!(subject, "berth: update clusters/dev/tenants/team-a/web");
    assert_eq!(git(&fx.remote, &["log", "-1", "--format=%an <%ae>", "main"]), "Berth <berth@berth.dev>");
    assert_eq!(metric(&registry, "berth_gitops_commits_total"), 1.0);
    writer.shutdown().await.expect("shutdown");
    fx.fsck_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_within_the_window_make_one_commit() {
    let fx = Fixture::new();
    let mut config = fx.config("w");
    config.batch_window = Duration::from_millis(400);
    let (writer, registry) = start(config).await;

    let mut tasks = spawn_puts(&writer, "team-b", 20);
    let mut commits = BTreeSet::new();
    while let Some(outcome) = tasks.join_next().await {
        let outcome = outcome.expect("task");
        assert!(outcome.created);
        commits.insert(outcome.commit.as_str().to_owned());
    }

    assert_eq!(commits.len(), 1, "every waiter gets the same commit: {commits:?}");
    assert_eq!(fx.commit_count("main"), 1);
    assert_eq!(fx.head("main").as_ref(), commits.first());
    let folders: BTreeSet<_> = fx.files("main").iter().filter_map(|f| f.split('/').nth(4).map(str::to_owned)).collect();
    assert_eq!(folders.len(), 20, "{folders:?}");
    let requests = git(&fx.remote, &["log", "-1", "--format=%(trailers:key=Berth-Request,valueonly)", "main"]);
    assert_eq!(requests.lines().count(), 20, "{requests}");
    let body = git(&fx.remote, &["log", "-1", "--format=%B", "main"]);
    assert!(body.starts_with("berth: update 20 environment folders"), "{body}");
    assert_eq!(metric(&registry, "berth_gitops_batch_size_count"), 1.0);
    assert_eq!(metric(&registry, "berth_gitops_batch_size_sum"), 20.0);
    writer.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_content_again_makes_no_commit_even_after_restart() {
    let fx = Fixture::new();
    let (writer, registry) = start(fx.config("w")).await;
    let first = put(&writer, "team-c", "web", 1).await;
    let again = put(&writer, "team-c", "web", 1).await;
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(again.commit, first.commit);
    assert_eq!(metric(&registry, "berth_gitops_batches_total{outcome=\"unchanged\"}"), 1.0);
    writer.shutdown().await.expect("shutdown");

    // Restart on the same working copy.
    let (writer, _) = start(fx.config("w")).await;
    let restarted = put(&writer, "team-c", "web", 1).await;
    assert!(!restarted.created);
    assert_eq!(restarted.commit, first.commit);
    writer.shutdown().await.expect("shutdown");

    // Restart with the working copy lost (new pod, empty volume).
    let (writer, _) = start(fx.config("w-fresh")).await;
    let fresh = put(&writer, "team-c", "web", 1).await;
    assert!(!fresh.created);
    assert_eq!(fresh.commit, first.commit);
    writer.shutdown().await.expect("shutdown");

    assert_eq!(fx.commit_count("main"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_deletes_the_folder_and_prunes_empty_parents() {
    let fx = Fixture::new();
    let (writer, _) = start(fx.config("w")).await;
    put(&writer, "team-d", "web", 1).await;
    put(&writer, "team-d", "api", 1).await;
    let other = environment_path("prod", "team-e", "db").expect("valid");
    writer.put(other.clone(), manifests("db", 1), reason("db", 1)).await.expect("put");
    let api_before = fx.show("main", "clusters/dev/tenants/team-d/api/namespace.yaml");

    let removed = writer.remove(other, reason("db", 2)).await.expect("remove");
    assert!(removed.created);
    let files = fx.files("main");
    // The cluster's last environment went: its folder keeps only Berth's note (the path
    // Argo CD's root app syncs must not vanish); the tenant's folders are pruned.
    let prod: Vec<&String> = files.iter().filter(|f| f.starts_with("clusters/prod")).collect();
    assert_eq!(prod, ["clusters/prod/README.md"], "{files:?}");
    let top = git(&fx.remote, &["ls-tree", "--name-only", "main", "clusters/"]);
    assert_eq!(top, "clusters/dev\nclusters/prod", "both cluster folders stay");
    let subject = git(&fx.remote, &["log", "-1", "--format=%s", "main"]);
    assert_eq!(subject, "berth: remove clusters/prod/tenants/team-e/db");

    writer.remove(env("team-d", "web"), reason("web", 2)).await.expect("remove");
    let files = fx.files("main");
    assert_eq!(
        files,
        BTreeSet::from([
            "clusters/dev/tenants/team-d/api/namespace.yaml".to_owned(),
            "clusters/dev/tenants/team-d/api/resourcequota.yaml".to_owned(),
            "clusters/prod/README.md".to_owned(),
        ])
    );
    assert_eq!(fx.show("main", "clusters/dev/tenants/team-d/api/namespace.yaml"), api_before);

    let count = fx.commit_count("main");
    let noop = writer.remove(env("team-d", "gone"), reason("gone", 1)).await.expect("remove");
    assert!(!noop.created, "removing a missing folder commits nothing");
    assert_eq!(fx.commit_count("main"), count);
    writer.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_replaces_the_whole_folder() {
    let fx = Fixture::new();
    let (writer, _) = start(fx.config("w")).await;
    put(&writer, "team-f", "web", 1).await;
    let files = BTreeMap::from([("application.yaml".to_owned(), b"kind: Application\n".to_vec())]);
    writer.put(env("team-f", "web"), files, reason("web", 2)).await.expect("put");
    assert_eq!(fx.files("main"), BTreeSet::from(["clusters/dev/tenants/team-f/web/application.yaml".to_owned()]));
    let bad = BTreeMap::from([("../escape.yaml".to_owned(), Vec::new())]);
    let err = writer.put(env("team-f", "web"), bad, reason("web", 3)).await.expect_err("invalid name");
    assert!(matches!(err, Error::InvalidFile { .. }), "{err:?}");
    writer.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_pusher_and_writer_both_survive() {
    let fx = Fixture::new();
    fx.seed();
    let (writer, _) = start(fx.config("w")).await;

    let clone = fx.workdir("external");
    git(fx.dir.path(), &["clone", "--quiet", &fx.url, "external"]);
    let pusher = std::thread::spawn(move || {
        let mut pushed = Vec::new();
        for i in 0..12 {
            let path = clone.join("external");
            std::fs::create_dir_all(&path).expect("mkdir");
            std::fs::write(path.join(format!("{i}.txt")), format!("{i}\n")).expect("write");
            git(&clone, &["add", "-A"]);
            git(&clone, &["commit", "--quiet", "-m", &format!("external {i}")]);
            let mut tries = 0;
            while !git_ok(&clone, &["push", "--quiet", "origin", "HEAD:main"]) {
                tries += 1;
                assert!(tries < 50, "external pusher could not push");
                git(&clone, &["pull", "--quiet", "--rebase", "origin", "main"]);
            }
            pushed.push(git(&clone, &["rev-parse", "HEAD"]));
        }
        pushed
    });

    let mut ours = Vec::new();
    for i in 0..12 {
        let outcome = put(&writer, "team-g", &format!("env-{i}"), 1).await;
        assert!(outcome.created);
        ours.push(outcome.commit.as_str().to_owned());
    }
    let theirs = pusher.join().expect("pusher");
    writer.shutdown().await.expect("shutdown");

    let head = fx.head("main").expect("main");
    for commit in theirs.iter().chain(&ours) {
        assert!(fx.is_ancestor(commit, &head), "{commit} lost from main");
    }
    let files = fx.files("main");
    for i in 0..12 {
        assert!(files.contains(&format!("external/{i}.txt")), "{files:?}");
        assert!(files.contains(&format!("clusters/dev/tenants/team-g/env-{i}/namespace.yaml")), "{files:?}");
    }
    assert!(files.contains("README.md"));
    fx.fsck_clean();
}

/// A `git daemon` on loopback serving the fixture's remote, so server-side hooks run.
struct Daemon {
    child: Child,
    url: String,
}

impl Daemon {
    fn start(fx: &Fixture) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let base = fx.dir.path().to_str().expect("utf-8 path");
        // Run git-daemon itself, not `git daemon`: killing the `git` wrapper would
        // leave the daemon running.
        let exec_path = git(fx.dir.path(), &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={base}"),
                base,
            ])
            // Its receive-pack says "the remote end hung up" when libgit2 disconnects.
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, url: format!("git://127.0.0.1:{port}/remote.git") }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pre-receive hook under which, on the first `times` pushes, someone else's commit
/// lands on main between the writer's fetch and its ref update, so the server answers
/// "failed to update ref". Each racing commit is appended to `$GIT_DIR/racers`.
fn racing_pre_receive(times: u32) -> String {
    format!(
        r#"#!/bin/sh
raced=$(cat "$GIT_DIR/racers" 2>/dev/null | wc -l)
[ "$raced" -ge {times} ] && exit 0
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
parent=$(git rev-parse refs/heads/main)
blob=$(echo "racing $raced" | git hash-object -w --stdin)
export GIT_INDEX_FILE="$GIT_DIR/race-index"
git read-tree "$parent"
git update-index --add --cacheinfo "100644,$blob,external/race-$raced.txt"
tree=$(git write-tree)
commit=$(echo "racing external commit $raced" | git -c user.name=Racer -c user.email=r@example.com commit-tree "$tree" -p "$parent")
git update-ref refs/heads/main "$commit" "$parent"
echo "$commit" >> "$GIT_DIR/racers"
exit 0
"#
    )
}

/// The fixture's remote behind a `git daemon` whose hook races the first `times` pushes.
fn racing_remote(fx: &Fixture, times: u32) -> Daemon {
    hooked_remote(fx, &racing_pre_receive(times))
}

/// The fixture's remote behind a `git daemon` running `pre_receive` (a shell script) on
/// every push, and refusing non-fast-forwards.
fn hooked_remote(fx: &Fixture, pre_receive: &str) -> Daemon {
    let hook = fx.remote.join("hooks/pre-receive");
    std::fs::write(&hook, pre_receive).expect("hook");
    git(&fx.remote, &["config", "receive.denyNonFastForwards", "true"]);
    std::process::Command::new("chmod").args(["+x", hook.to_str().expect("utf-8")]).status().expect("chmod");
    Daemon::start(fx)
}

/// The commits the racing hook pushed so far.
fn racers(fx: &Fixture) -> Vec<String> {
    std::fs::read_to_string(fx.remote.join("racers")).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_race_is_fetched_and_reapplied_without_force() {
    let fx = Fixture::new();
    let seed = fx.seed();
    let daemon = racing_remote(&fx, 1);
    let mut config = fx.config("w");
    config.remote_url = daemon.url.clone();
    let (writer, registry) = start(config).await;

    let outcome = put(&writer, "team-h", "web", 1).await;
    assert!(outcome.created);
    let racers = racers(&fx);
    assert_eq!(racers.len(), 1, "the hook raced");
    let racer = racers[0].as_str();
    let head = fx.head("main").expect("main");
    assert_eq!(head, outcome.commit.as_str());
    assert!(fx.is_ancestor(racer, &head), "the racing commit survives");
    assert!(fx.is_ancestor(&seed, &head));
    assert_eq!(fx.commit_count("main"), 3, "seed, racer, one berth commit");
    let files = fx.files("main");
    assert!(files.contains("external/race-0.txt"), "{files:?}");
    assert!(files.contains("clusters/dev/tenants/team-h/web/namespace.yaml"), "{files:?}");
    assert!(metric(&registry, "berth_gitops_push_failures_total{reason=\"non_fast_forward\"}") >= 1.0);
    writer.shutdown().await.expect("shutdown");
    drop(daemon);
    fx.fsck_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_lost_again_and_again_are_retried_at_once_and_changes_arriving_meanwhile_ride_along() {
    let fx = Fixture::new();
    let seed = fx.seed();
    // More races in a row than the policy allows failed attempts (4): a lost race is not an outage.
    let races = 12;
    let daemon = racing_remote(&fx, races);
    let mut config = fx.config("w");
    config.remote_url = daemon.url.clone();
    // Callers wait out every race here: twelve hook races take longer than the default
    // patience on a loaded machine, and the test is about retrying, not about giving up.
    config.retry.contended_patience = Duration::from_secs(300);
    let (writer, registry) = start(config).await;

    let first = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.put(env("team-r", "one"), manifests("one", 1), reason("one", 1)).await })
    };
    // Sent while the writer is still losing (each try takes 4 races at most), so it rides along.
    wait_until("the writer to lose a race", Duration::from_secs(30), || !racers(&fx).is_empty()).await;
    let second = put(&writer, "team-r", "two", 1).await;
    let first = first.await.expect("task").expect("a busy branch is no error for the caller");

    assert!(first.created && second.created);
    assert_eq!(first.commit, second.commit, "the change that came meanwhile rode in the same push");
    let racers = racers(&fx);
    assert_eq!(racers.len(), races as usize);
    let head = fx.head("main").expect("main");
    assert_eq!(head, first.commit.as_str());
    for commit in racers.iter().chain([&seed]) {
        assert!(fx.is_ancestor(commit, &head), "{commit} lost from main: forced?");
    }
    assert_eq!(fx.commit_count("main"), 2 + races as usize, "seed, racers, one berth commit");
    let files = fx.files("main");
    for folder in ["one", "two"] {
        assert!(files.contains(&format!("clusters/dev/tenants/team-r/{folder}/namespace.yaml")), "{files:?}");
    }
    assert_eq!(metric(&registry, "berth_gitops_push_failures_total{reason=\"non_fast_forward\"}"), f64::from(races));
    assert!(metric(&registry, "berth_gitops_batches_total{outcome=\"contended\"}") >= 1.0);
    assert_eq!(metric(&registry, "berth_gitops_batches_total{outcome=\"failed\"}"), 0.0);
    assert_eq!(metric(&registry, "berth_gitops_contended_changes"), 0.0, "nothing waits any more");
    writer.shutdown().await.expect("shutdown");
    drop(daemon);
    fx.fsck_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_others_push_to_in_a_tight_loop_takes_every_change_without_force() {
    let fx = Fixture::new();
    fx.seed();
    let pusher = BusyPusher::start(fx.remote.clone(), BUSY_PUSH_PAUSE);
    let (writer, registry) = start(fx.config("w")).await;

    // Rounds of changes until the other client has won at least one race, so the test
    // always contends (a round may slip between its pushes).
    let lost_races = || metric(&registry, "berth_gitops_push_failures_total{reason=\"non_fast_forward\"}");
    let mut outcomes = Vec::new();
    while outcomes.len() < 120 || (lost_races() == 0.0 && outcomes.len() < 2_000) {
        let puts = futures::stream::iter(outcomes.len()..outcomes.len() + 40)
            .map(|i| {
                let writer = writer.clone();
                let name = format!("env-{i:04}");
                async move {
                    // As the controller does: a caller told the branch is busy sends again.
                    loop {
                        match writer.put(env("team-busy", &name), manifests(&name, 1), reason(&name, 1)).await {
                            Err(e) if e.is_contended() => tokio::time::sleep(Duration::from_secs(1)).await,
                            outcome => break outcome,
                        }
                    }
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>();
        // A guard against a writer starved for good, not a speed check (benches/gitops.rs measures that).
        match tokio::time::timeout(Duration::from_secs(300), puts).await {
            Ok(round) => outcomes.extend(round),
            Err(_) => {
                pusher.stop();
                panic!("the writer was starved by the busy branch");
            }
        }
    }
    let theirs = pusher.stop();
    writer.shutdown().await.expect("shutdown");
    let changes = outcomes.len();

    let head = fx.head("main").expect("main");
    for outcome in outcomes {
        let outcome = outcome.expect("a busy branch is never a lasting error");
        assert!(fx.is_ancestor(outcome.commit.as_str(), &head));
    }
    for commit in &theirs {
        assert!(fx.is_ancestor(commit, &head), "{commit} of the other client lost: forced?");
    }
    let files = fx.files("main");
    let folders = files.iter().filter(|f| f.starts_with("clusters/") && f.ends_with("/namespace.yaml")).count();
    assert_eq!(folders, changes, "every change landed");
    assert_eq!(files.iter().filter(|f| f.starts_with("ci/")).count(), theirs.len());
    assert!(
        metric(&registry, "berth_gitops_push_failures_total{reason=\"non_fast_forward\"}") >= 1.0,
        "the other client never won a race: the test did not contend"
    );
    fx.fsck_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_the_remote_will_not_move_is_an_outage_not_a_race() {
    let fx = Fixture::new();
    fx.seed();
    let (writer, registry) = start(fx.config("w")).await;
    // A stale lock left by a crashed git process on the server: every push is refused
    // as "cannot lock ref", which reads like a lost race, but the branch never moves.
    let lock = fx.remote.join("refs/heads/main.lock");
    std::fs::write(&lock, "stale\n").expect("lock");
    let answer = tokio::time::timeout(
        Duration::from_secs(120),
        writer.put(env("team-l", "web"), manifests("web", 1), reason("web", 1)),
    )
    .await
    .expect("an answer, not races retried forever");
    let error = answer.expect_err("the branch cannot move");
    assert!(!error.is_contended(), "a branch that does not move is not busy: {error}");
    assert!(matches!(error, Error::PushGaveUp { .. }), "{error}");
    assert_eq!(metric(&registry, "berth_gitops_contended_changes"), 0.0);

    // Lock gone: the owed change lands with the next one.
    std::fs::remove_file(&lock).expect("unlock");
    put(&writer, "team-l", "api", 1).await;
    let files = fx.files("main");
    for folder in ["web", "api"] {
        assert!(files.contains(&format!("clusters/dev/tenants/team-l/{folder}/namespace.yaml")), "{files:?}");
    }
    writer.shutdown().await.expect("shutdown");
    fx.fsck_clean();
}

/// The busy client's pause between its pushes: about five pushes a second, the busy
/// monorepo of issue 11. Much faster and a debug build on a loaded CI machine may not win
/// a race for a long while (its fetch-apply-push takes longer than the gap between their
/// pushes); the benchmark measures harder cases in a release build.
const BUSY_PUSH_PAUSE: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_down_then_back_loses_nothing() {
    let fx = Fixture::new();
    let (writer, registry) = start(fx.config("w")).await;
    put(&writer, "team-i", "one", 1).await;

    let away = fx.dir.path().join("remote-away.git");
    std::fs::rename(&fx.remote, &away).expect("take remote away");
    let err =
        writer.put(env("team-i", "two"), manifests("two", 1), reason("two", 1)).await.expect_err("remote is down");
    let text = err.to_string();
    assert!(matches!(err, Error::PushGaveUp { attempts: 4, .. }), "{err:?}");
    assert!(text.contains(&fx.url), "names the remote: {text}");
    assert!(text.contains("gave up after 4 attempts"), "{text}");
    assert!(err.is_transient());
    assert_eq!(err.failure_kind(), Some(FailureKind::Network), "{err:?}");
    assert!(metric(&registry, "berth_gitops_push_failures_total{reason=\"network\"}") >= 4.0);
    assert_eq!(metric(&registry, "berth_gitops_pending_changes"), 1.0);
    assert_eq!(metric(&registry, "berth_gitops_batches_total{outcome=\"failed\"}"), 1.0);

    std::fs::rename(&away, &fx.remote).expect("bring remote back");
    // Nobody asks again: the owed change is retried on its own.
    // The push lands before the writer updates its gauge, so wait for both.
    wait_until("the owed change to land", Duration::from_secs(20), || {
        fx.files("main").contains("clusters/dev/tenants/team-i/two/namespace.yaml")
            && metric(&registry, "berth_gitops_pending_changes") == 0.0
    })
    .await;
    put(&writer, "team-i", "three", 1).await;
    let folders: BTreeSet<_> = fx.files("main").iter().filter_map(|f| f.split('/').nth(4).map(str::to_owned)).collect();
    assert_eq!(folders, BTreeSet::from(["one", "two", "three"].map(String::from)));
    assert_eq!(fx.commit_count("main"), 3);
    writer.shutdown().await.expect("shutdown");
    fx.fsck_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_stream_neither_duplicates_nor_loses() {
    let fx = Fixture::new();
    let (writer, _) = start(fx.config("w")).await;
    let mut created = 0;
    for name in ["a", "b"] {
        created += usize::from(put(&writer, "team-j", name, 1).await.created);
    }
    // A change still waiting in the batch window when shutdown arrives is flushed.
    let pending = {
        let writer = writer.clone();
        tokio::spawn(async move { put(&writer, "team-j", "c", 1).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    writer.shutdown().await.expect("shutdown flushes");
    created += usize::from(pending.await.expect("task").created);
    assert!(fx.files("main").contains("clusters/dev/tenants/team-j/c/namespace.yaml"));

    let (writer, _) = start(fx.config("w")).await;
    let b_again = put(&writer, "team-j", "b", 1).await;
    assert!(!b_again.created, "re-sent state commits nothing");
    created += usize::from(put(&writer, "team-j", "d", 1).await.created);
    created += usize::from(writer.remove(env("team-j", "a"), reason("a", 2)).await.expect("remove").created);
    writer.shutdown().await.expect("shutdown");

    assert_eq!(fx.commit_count("main"), created, "one commit per change, no duplicates");
    let folders: BTreeSet<_> = fx.files("main").iter().filter_map(|f| f.split('/').nth(4).map(str::to_owned)).collect();
    assert_eq!(folders, BTreeSet::from(["b", "c", "d"].map(String::from)));
    fx.fsck_clean();
    let clone = fx.workdir("w").join("repo.git");
    assert!(git_ok(&clone, &["fsck", "--no-dangling"]), "the writer's clone is sound too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_missing_working_copy_is_recloned() {
    let fx = Fixture::new();
    let (writer, _) = start(fx.config("w")).await;
    put(&writer, "team-k", "a", 1).await;
    writer.shutdown().await.expect("shutdown");
    let clone = fx.workdir("w").join("repo.git");

    // Garbled HEAD.
    std::fs::write(clone.join("HEAD"), "\0\0garbage").expect("garble HEAD");
    let (writer, registry) = start(fx.config("w")).await;
    put(&writer, "team-k", "b", 1).await;
    writer.shutdown().await.expect("shutdown");
    assert_eq!(metric(&registry, "berth_gitops_reclones_total"), 0.0, "re-created at open, not mid-run");

    // A corrupted loose object: the commit the clone's refs point at.
    let head = fx.head("main").expect("main");
    let object = clone.join("objects").join(&head[..2]).join(&head[2..]);
    std::fs::remove_file(&object).expect("remove head object");
    std::fs::write(&object, b"not zlib").expect("corrupt object");
    let (writer, _) = start(fx.config("w")).await;
    put(&writer, "team-k", "c", 1).await;
    writer.shutdown().await.expect("shutdown");

    // Objects directory gone.
    std::fs::remove_dir_all(clone.join("objects")).expect("remove objects");
    let (writer, _) = start(fx.config("w")).await;
    put(&writer, "team-k", "d", 1).await;
    writer.shutdown().await.expect("shutdown");

    // Whole working copy gone.
    std::fs::remove_dir_all(fx.workdir("w")).expect("remove workdir");
    let (writer, _) = start(fx.config("w")).await;
    put(&writer, "team-k", "e", 1).await;
    let again = put(&writer, "team-k", "a", 1).await;
    assert!(!again.created);
    writer.shutdown().await.expect("shutdown");

    let folders: BTreeSet<_> = fx.files("main").iter().filter_map(|f| f.split('/').nth(4).map(str::to_owned)).collect();
    assert_eq!(folders, BTreeSet::from(["a", "b", "c", "d", "e"].map(String::from)));
    assert_eq!(fx.commit_count("main"), 5);
    fx.fsck_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_found_mid_run_triggers_a_reclone() {
    let fx = Fixture::new();
    let (writer, registry) = start(fx.config("w")).await;
    put(&writer, "team-l", "a", 1).await;
    let clone = fx.workdir("w").join("repo.git");
    // Break the clone under the running writer: its object database disappears.
    std::fs::remove_dir_all(clone.join("objects")).expect("remove objects");
    let outcome = put(&writer, "team-l", "b", 1).await;
    assert!(outcome.created);
    assert!(metric(&registry, "berth_gitops_reclones_total") >= 1.0);
    writer.shutdown().await.expect("shutdown");
    assert!(fx.files("main").contains("clusters/dev/tenants/team-l/b/namespace.yaml"));
    assert!(fx.files("main").contains("clusters/dev/tenants/team-l/a/namespace.yaml"));
}

const TOKEN: &str = "ghp_TOPSECRET_test_token_9f8e7d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_errors_or_debug_output() {
    let fx = Fixture::new();

    // A token inside the URL is refused, and the refusal does not repeat it.
    let mut config = fx.config("w-url");
    config.remote_url = format!("https://user:{TOKEN}@127.0.0.1:1/repo.git");
    assert!(!format!("{config:?}").contains(TOKEN));
    let registry = Registry::new();
    let err = Writer::spawn(config, GitOpsMetrics::register(&registry).expect("metrics"))
        .await
        .expect_err("credentials in url");
    assert!(!err.to_string().contains(TOKEN), "{err}");
    assert!(!format!("{err:?}").contains(TOKEN), "{err:?}");
    assert!(err.to_string().contains("https://[redacted]@127.0.0.1:1/repo.git"), "{err}");

    // A token from a file, against a remote that is not there.
    let token_file = fx.dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let credentials = Credentials::token_from_file("x-access-token", &token_file).expect("read token");
    let debug = format!("{credentials:?}");
    assert!(!debug.contains(TOKEN) && debug.contains("[redacted]"), "{debug}");
    assert_eq!(format!("{:?}", Secret::new(TOKEN)), "[redacted]");

    let mut config = fx.config("w-token");
    config.remote_url = "https://127.0.0.1:1/repo.git".to_owned();
    config.retry.max_push_attempts = 2;
    config.credentials = credentials;
    assert!(!format!("{config:?}").contains(TOKEN));
    let (writer, _) = start(config).await;
    let err = writer.check_remote().await.expect_err("nothing listens on port 1");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(TOKEN), "{text}");
        assert!(text.contains("https://127.0.0.1:1/repo.git"), "{text}");
    }
    let err = writer.put(env("team-m", "web"), manifests("web", 1), reason("web", 1)).await.expect_err("push fails");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(TOKEN), "{text}");
    }
    writer.shutdown().await.expect_err("owed change cannot be flushed");

    // Nothing on disk holds the token either (clone config, refs, logs).
    for entry in walk(&fx.workdir("w-token")) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(TOKEN), "{} holds the token", entry.display());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_mode_pushes_a_promotion_branch_only() {
    let fx = Fixture::new();
    let seed = fx.seed();
    let mut config = fx.config("w");
    config.mode = PushMode::PullRequest { branch_prefix: "berth/".to_owned() };
    let (writer, _) = start(config).await;

    let outcome = put(&writer, "team-n", "web", 1).await;
    assert!(outcome.created);
    assert!(outcome.branch.starts_with("berth/"), "{}", outcome.branch);
    assert_eq!(outcome.branch.len(), "berth/".len() + 12);
    assert_eq!(fx.head("main").as_deref(), Some(seed.as_str()), "main untouched");
    let promo = fx.head(&outcome.branch).expect("promotion branch pushed");
    assert_eq!(promo, outcome.commit.as_str());
    assert_eq!(git(&fx.remote, &["rev-parse", &format!("{promo}^")]), seed);
    assert!(fx.files(&promo).contains("clusters/dev/tenants/team-n/web/namespace.yaml"));
    let trailers = git(&fx.remote, &["log", "-1", "--format=%(trailers:key=Berth-Request,valueonly)", &promo]);
    assert_eq!(trailers, "team/web");

    // The same change again finds its branch and pushes nothing new.
    let again = put(&writer, "team-n", "web", 1).await;
    assert!(!again.created);
    assert_eq!(again, CommitOutcome { created: false, ..outcome.clone() });

    // A different change gets a different branch.
    let other = put(&writer, "team-n", "api", 1).await;
    assert!(other.created);
    assert_ne!(other.branch, outcome.branch);

    // Once the promotion is merged, the change is already on main: nothing to promote.
    git(&fx.remote, &["update-ref", "refs/heads/main", &promo, &seed]);
    let merged = put(&writer, "team-n", "web", 1).await;
    assert_eq!(merged.branch, "main");
    assert!(!merged.created);
    assert_eq!(merged.commit.as_str(), promo);
    writer.shutdown().await.expect("shutdown");
    assert_eq!(fx.head("main").as_deref(), Some(promo.as_str()));
    fx.fsck_clean();
}
