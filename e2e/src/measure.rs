//! What the operator-level benchmarks read and how they print it: the apiserver's
//! request counters, a process's memory, percentiles and counts.

use std::{collections::BTreeMap, time::Duration};

/// The apiserver's request counters (`apiserver_request_total`) summed by
/// verb, resource and subresource (`"APPLY environmentrequests/status"`), from its /metrics.
pub async fn apiserver_requests(client: &kube::Client) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    let Ok(request) = http::Request::get("/metrics").body(Vec::new()) else { return counts };
    let Ok(text) = client.request_text(request).await else { return counts };
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            line[start..].split('"').next().map(str::to_owned)
        };
        let (Some(verb), Some(resource)) = (label("verb"), label("resource")) else { continue };
        let subresource = label("subresource").filter(|s| !s.is_empty()).map(|s| format!("/{s}")).unwrap_or_default();
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        *counts.entry(format!("{verb} {resource}{subresource}")).or_default() += value;
    }
    counts
}

/// A memory figure of `/proc/<pid>/status` (`VmHWM`, `VmRSS`, `RssAnon`, …) in MiB.
pub fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The `p` quantile (0..=1) of `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// Milliseconds, as the reports print durations.
pub fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// `n` with thousands separated, as the reports write counts.
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The machine's load average over 1, 5 and 15 minutes, as /proc/loadavg says it.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Resolves once `count` requests in `api`'s namespace satisfy `done`. Watches rather
/// than lists: listing thousands of requests every few hundred milliseconds cost
/// the apiserver more CPU than a tenth of the work it was waiting for.
pub async fn all_requests(
    api: &kube::Api<berth::api::EnvironmentRequest>,
    count: usize,
    done: impl Fn(&berth::api::EnvironmentRequest) -> bool,
) {
    all_requests_labelled(api, None, count, done).await
}

/// [`all_requests`] among the requests `selector` (a label selector) picks: the watch's
/// first list then reads only those, not every request of the namespace. (Reading
/// 10,000 others once cost the apiserver seconds of CPU in the middle of a burst.)
pub async fn all_requests_labelled(
    api: &kube::Api<berth::api::EnvironmentRequest>,
    selector: Option<&str>,
    count: usize,
    done: impl Fn(&berth::api::EnvironmentRequest) -> bool,
) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let mut ready = std::collections::HashSet::new();
    let mut config = watcher::Config::default();
    if let Some(selector) = selector {
        config = config.labels(selector);
    }
    let mut events = std::pin::pin!(watcher(api.clone(), config).applied_objects());
    while ready.len() < count {
        let request = match events.next().await {
            Some(Ok(request)) => request,
            // The watcher retries on its own; an error is only news.
            Some(Err(error)) => {
                eprintln!("watch of requests: {error}");
                continue;
            }
            None => panic!("the watch of requests ended"),
        };
        let name = request.metadata.name.clone().unwrap_or_default();
        if done(&request) {
            ready.insert(name);
        } else {
            ready.remove(&name);
        }
    }
}
