//! The calling thread's CPU clock, for benchmarks that report CPU per operation
//! (wall time on these shared machines says more about the neighbours).

use std::time::Duration;

/// CPU time the calling thread has used: `/proc/thread-self/schedstat` (ns), else the
/// utime+stime ticks of `/proc/thread-self/stat`; `None` off Linux.
pub fn thread_cpu() -> Option<Duration> {
    if let Ok(text) = std::fs::read_to_string("/proc/thread-self/schedstat")
        && let Some(ns) = text.split_whitespace().next().and_then(|n| n.parse::<u64>().ok())
    {
        return Some(Duration::from_nanos(ns));
    }
    let text = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The median CPU time of one call of `f`, over `runs` samples of `per_sample` calls
/// each (the clock may tick in jiffies, so a sample times a batch and divides).
/// Panics off Linux: a benchmark that cannot measure must not report zeros.
pub fn median_cpu(runs: usize, per_sample: u32, mut f: impl FnMut()) -> Duration {
    let now = || thread_cpu().expect("a per-thread CPU clock (/proc/thread-self, Linux)");
    let mut samples: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let start = now();
            for _ in 0..per_sample.max(1) {
                f();
            }
            now().saturating_sub(start) / per_sample.max(1)
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}
