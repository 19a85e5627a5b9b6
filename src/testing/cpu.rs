//! The calling thread's CPU clock, for benchmarks that report CPU per operation
//! (wall time on these shared machines says more about the neighbours).

use std::{path::Path, time::Duration};

/// CPU time the calling thread has used: `/proc/thread-self/schedstat` (ns), else the
/// utime+stime ticks of `/proc/thread-self/stat`; `None` off Linux.
pub fn thread_cpu() -> Option<Duration> {
    if let Some(cpu) = schedstat_cpu(Path::new("/proc/thread-self/schedstat")) {
        return Some(cpu);
    }
    let text = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time the threads of this process whose name starts with `prefix` have used,
/// together (the kernel keeps 15 bytes of a thread's name); `None` if none is running.
pub fn named_threads_cpu(prefix: &str) -> Option<Duration> {
    let mut found = None;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.starts_with(prefix)
            && let Some(cpu) = schedstat_cpu(&task.path().join("schedstat"))
        {
            found = Some(found.unwrap_or(Duration::ZERO) + cpu);
        }
    }
    found
}

/// The first field of a task's `schedstat`: nanoseconds on a CPU.
fn schedstat_cpu(path: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    text.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
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
