//! GitOps writer benchmark: how long committing and pushing one environment takes
//! as the repository grows (100 / 1,000 / 10,000 environments already in it), and
//! a batch of 100 environments at once. Writes a Markdown report.
//!
//! `just bench-gitops` (or `cargo bench --bench gitops -- <report path>`).

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use berth::{
    gitops::{ChangeReason, GitOpsMetrics, Writer, WriterConfig, WriterHandle, environment_path},
    render::{RenderOptions, render},
};

/// One environment's files, as the renderer produces them for the preview example.
fn environment_files() -> BTreeMap<String, Vec<u8>> {
    let read = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let class = serde_yaml::from_str(&read("environmentclass-preview.yaml")).expect("class");
    let tenant = serde_yaml::from_str(&read("tenant-payments.yaml")).expect("tenant");
    let request = serde_yaml::from_str(&read("environmentrequest-preview.yaml")).expect("request");
    let env = render(&class, &tenant, &request, &RenderOptions::default()).expect("renders");
    env.files.into_iter().map(|(name, yaml)| (name, yaml.into_bytes())).collect()
}

async fn writer(dir: &Path, remote: &Path, batch_window: Duration) -> WriterHandle {
    let mut config = WriterConfig::new(dir.join("work"), format!("file://{}", remote.display()), "main");
    config.batch_window = batch_window;
    let metrics = GitOpsMetrics::register(&prometheus::Registry::new()).expect("metrics");
    Writer::spawn(config, metrics).await.expect("writer starts")
}

/// Puts `count` environments named `env-<start>..` concurrently; returns how many commits they took.
async fn put_many(
    writer: &WriterHandle,
    files: &BTreeMap<String, Vec<u8>>,
    start: usize,
    count: usize,
    tenants: usize,
) -> usize {
    let puts = (start..start + count).map(|i| {
        let writer = writer.clone();
        let files = files.clone();
        async move {
            let tenant = format!("tenant-{:03}", i % tenants);
            let path = environment_path("in-cluster", &tenant, &format!("env-{i:05}")).expect("path");
            writer
                .put(path, files, ChangeReason::new(format!("bench/env-{i:05}"), Some(1), "bench"))
                .await
                .expect("put")
        }
    });
    let outcomes = futures::future::join_all(puts).await;
    let mut commits: Vec<String> = outcomes.iter().map(|o| o.commit.as_str().to_owned()).collect();
    commits.sort();
    commits.dedup();
    commits.len()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let report_path =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_else(|| "target/bench/gitops.md".to_owned());
    let files = environment_files();
    let mut report = String::from("# GitOps writer benchmark\n\n");
    report.push_str(&format!(
        "One environment = {} files ({} bytes), pushed to a bare `file://` remote. \
         Single commits use a 0 ms batch window (the window is a deliberate wait, not commit cost).\n\n",
        files.len(),
        files.values().map(Vec::len).sum::<usize>()
    ));
    report.push_str("| environments already in the repo | tenants they belong to | commit+push 1 environment p50 (ms) | p90 (ms) | max (ms) | samples |\n|---|---|---|---|---|---|\n");

    for (existing, tenants) in [(100usize, 1usize), (1_000, 1), (10_000, 1), (10_000, 100)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let remote = dir.path().join("remote.git");
        git2::Repository::init_bare(&remote).expect("bare remote");
        // Seed with a wide window so thousands of environments land in few commits.
        let seeder = writer(dir.path(), &remote, Duration::from_millis(500)).await;
        let mut seeded = 0;
        while seeded < existing {
            let chunk = (existing - seeded).min(1_000);
            put_many(&seeder, &files, seeded, chunk, tenants).await;
            seeded += chunk;
        }
        seeder.shutdown().await.expect("seeder stops");

        let single = writer(&dir.path().join("single"), &remote, Duration::ZERO).await;
        let mut samples = Vec::new();
        for i in 0..30 {
            let started = Instant::now();
            let commits = put_many(&single, &files, existing + i, 1, tenants).await;
            samples.push(started.elapsed());
            assert_eq!(commits, 1);
        }
        single.shutdown().await.expect("writer stops");
        samples.sort();
        let line = format!(
            "| {existing} | {tenants} | {} | {} | {} | {} |\n",
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.9)),
            ms(percentile(&samples, 1.0)),
            samples.len()
        );
        eprint!("{line}");
        report.push_str(&line);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let remote = dir.path().join("remote.git");
    git2::Repository::init_bare(&remote).expect("bare remote");
    let batch = writer(dir.path(), &remote, Duration::from_millis(200)).await;
    put_many(&batch, &files, 0, 1_000, 10).await;
    let started = Instant::now();
    let commits = put_many(&batch, &files, 1_000, 100, 10).await;
    let elapsed = started.elapsed();
    batch.shutdown().await.expect("writer stops");
    let line = format!(
        "\n100 environments submitted at once into a repo of 1,000: {} ms until every caller had its commit \
         (includes the 200 ms batch window), {commits} commit(s).\n",
        ms(elapsed)
    );
    eprint!("{line}");
    report.push_str(&line);

    if let Some(parent) = Path::new(&report_path).parent() {
        std::fs::create_dir_all(parent).expect("report dir");
    }
    std::fs::write(&report_path, &report).expect("write report");
    eprintln!("report written to {report_path}");
}
