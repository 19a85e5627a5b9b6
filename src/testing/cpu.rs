//! The calling thread's CPU clock, for benchmarks that report CPU per operation
//! (wall time on these shared machines says more about the neighbours).

use std::{path::Path, time::Duration};

/// CPU time the calling thread has used, to the nanosecond (`CLOCK_THREAD_CPUTIME_ID`).
/// Not `/proc/thread-self/schedstat`: a running thread's count there moves only at the
/// scheduler's tick (4 ms here), so a batch of fast calls mostly read as zero, and
/// the budget benchmark's median said 0.0000 ms for every case whatever they cost.
pub fn thread_cpu() -> Option<Duration> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let (seconds, nanos) = (u64::try_from(now.tv_sec).ok()?, u32::try_from(now.tv_nsec).ok()?);
    Some(Duration::new(seconds, nanos))
}

/// CPU time the threads of this process whose name starts with `prefix` have used,
/// together (the kernel keeps 15 bytes of a thread's name); `None` if none is running.
/// Read from their `schedstat`, which moves at the tick: fit for windows of hundreds of
/// milliseconds, as the writer's share of a burst, not for single calls.
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
/// each (a sample times a batch and divides, so reading the clock costs next to nothing).
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
