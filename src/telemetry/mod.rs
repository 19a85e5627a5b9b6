//! Telemetry: logs, traces, Prometheus metrics and the health/metrics HTTP server.
//!
//! Everything an operator needs to see what Berth does lives here, so controllers only
//! hold a [`Metrics`] handle and a [`ReadinessCheck`] and never know how they are exported.
//!
//! - [`init_tracing`] installs the process-wide subscriber: JSON logs to stderr (text with
//!   `BERTH_LOG_FORMAT=text`), the `RUST_LOG` filter, and OTLP trace export when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`Metrics`] owns the Prometheus registry; labels are closed enums, never object names,
//!   so the number of series stays fixed however many objects exist.
//! - [`Watches`] tracks whether each watch works; a watch failing for too long makes
//!   the replica unready and shows in `berth_watch_healthy{kind}`.
//! - [`server`] serves `/metrics`, `/healthz` and `/readyz` (see [`Readiness`]).

mod metrics;
mod readiness;
pub mod server;
mod tracing;
mod watches;

use std::{io, net::SocketAddr};

pub use metrics::{Controller, Metrics, Outcome, ReconcileTimer};
pub use readiness::{Readiness, ReadinessCheck};
pub use server::{ServerState, serve};
pub use tracing::{DEFAULT_FILTER, LogFormat, TracingConfig, TracingGuard, current_trace_id, init_tracing};
pub use watches::{RETRY_WINDOW as WATCH_RETRY_WINDOW, WatchReport, Watches};

/// Errors of the telemetry module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `BERTH_LOG_FORMAT` holds something other than `json` or `text`.
    #[error("unknown log format {value:?} (expected json or text)")]
    InvalidLogFormat { value: String },

    /// `RUST_LOG` (or the configured filter) does not parse.
    #[error("invalid log filter {filter:?}")]
    InvalidFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },

    /// `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` asks for a transport other than gRPC.
    #[error("unsupported otlp protocol {protocol:?} (only grpc is built in)")]
    UnsupportedOtlpProtocol { protocol: String },

    /// OTLP export was asked for outside a Tokio runtime (the gRPC channel needs one).
    #[error("otlp trace export must be initialised inside a tokio runtime")]
    OtlpWithoutRuntime,

    /// The OTLP span exporter could not be built from the endpoint and `OTEL_*` settings.
    #[error("cannot build the otlp span exporter for {endpoint}")]
    OtlpExporter {
        /// The endpoint with any user information redacted.
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },

    /// A global tracing subscriber (or `log` logger) is already installed in this process.
    #[error("tracing is already initialised in this process")]
    AlreadyInitialised {
        #[source]
        source: tracing_subscriber::util::TryInitError,
    },

    /// A metric could not be created or registered (bad name, or registered twice).
    #[error("cannot register metric {name}")]
    RegisterMetric {
        name: &'static str,
        #[source]
        source: prometheus::Error,
    },

    /// The telemetry server could not listen on its address.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },

    /// The telemetry server stopped with an I/O error.
    #[error("telemetry server stopped unexpectedly")]
    Serve {
        #[source]
        source: io::Error,
    },
}
