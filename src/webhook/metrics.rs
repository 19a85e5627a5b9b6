//! Admission metrics: reviews by resource, operation and verdict, and how long a
//! decision took (the apiserver waits on it, so the buckets start at 100 µs).

use std::time::Duration;

use kube::core::admission::Operation;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

const BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1];

/// Counters and a latency histogram for admission reviews.
#[derive(Clone)]
pub struct WebhookMetrics {
    reviews: IntCounterVec,
    duration: HistogramVec,
}

impl WebhookMetrics {
    /// Registers the metrics in `registry` (the one `/metrics` serves).
    pub fn register(registry: &Registry) -> Result<WebhookMetrics, prometheus::Error> {
        let reviews = IntCounterVec::new(
            Opts::new("berth_admission_reviews_total", "Admission reviews decided, by resource, operation and verdict"),
            &["resource", "operation", "allowed"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("berth_admission_duration_seconds", "Time to decide an admission review")
                .buckets(BUCKETS.to_vec()),
            &["resource"],
        )?;
        registry.register(Box::new(reviews.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(WebhookMetrics { reviews, duration })
    }

    /// Records one decision. Labels come from closed sets (Berth's resources and
    /// the four operations), never from object names.
    pub fn observe(&self, resource: &str, operation: &Operation, allowed: bool, took: Duration) {
        let operation = match operation {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        };
        self.reviews.with_label_values(&[resource, operation, if allowed { "true" } else { "false" }]).inc();
        self.duration.with_label_values(&[resource]).observe(took.as_secs_f64());
    }
}
