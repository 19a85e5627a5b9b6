//! Process-wide logging and tracing: JSON (or text) logs to stderr, the `RUST_LOG` filter, and
//! OTLP trace export over gRPC when an endpoint is configured.
//!
//! Settings are read once into a [`TracingConfig`] so that tests build one by hand instead of
//! changing the process environment, and so a bad setting fails at start-up with a clear error
//! rather than silently logging nothing.

use std::{
    fmt,
    io::{self, IsTerminal},
    time::Duration,
};

use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer, Registry, fmt::MakeWriter, layer::SubscriberExt, registry::LookupSpan, util::SubscriberInitExt,
};

use super::Error;

/// Filter used when `RUST_LOG` is unset: Berth at info, kube's chatty watch logs at warn.
pub const DEFAULT_FILTER: &str = "info,kube=warn";

/// `service.name` of exported traces.
const SERVICE_NAME: &str = "berth";

/// How long dropping the guard may block to flush spans that are still queued.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors (the default).
    #[default]
    Json,
    /// Human-readable lines, for a terminal (`BERTH_LOG_FORMAT=text`).
    Text,
}

impl std::str::FromStr for LogFormat {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self, Error> {
        match value.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            _ => Err(Error::InvalidLogFormat { value: value.to_owned() }),
        }
    }
}

/// Settings of [`init_tracing`].
#[derive(Clone, PartialEq, Eq)]
pub struct TracingConfig {
    /// Format of log lines on stderr.
    pub format: LogFormat,
    /// An `EnvFilter` directive string such as `info,kube=warn`.
    pub filter: String,
    /// OTLP gRPC endpoint (for example `http://otel-collector:4317`); no export when `None`.
    /// Further `OTEL_EXPORTER_OTLP_*` settings (headers, timeout, compression) are read by
    /// the exporter itself.
    pub otlp_endpoint: Option<String>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self { format: LogFormat::default(), filter: DEFAULT_FILTER.to_owned(), otlp_endpoint: None }
    }
}

// Manual so an endpoint carrying credentials never reaches a log line.
impl fmt::Debug for TracingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingConfig")
            .field("format", &self.format)
            .field("filter", &self.filter)
            .field("otlp_endpoint", &self.otlp_endpoint.as_deref().map(redact_endpoint))
            .finish()
    }
}

impl TracingConfig {
    /// Reads `BERTH_LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (or else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`) and checks `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`.
    /// Empty variables count as unset, as the OpenTelemetry specification asks.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        // Only the gRPC transport is built in; sending gRPC to an HTTP receiver would fail
        // on every export, so refuse at start-up instead.
        if let Some(protocol) = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            && protocol.trim() != "grpc"
        {
            return Err(Error::UnsupportedOtlpProtocol { protocol });
        }
        Ok(Self {
            format: var("BERTH_LOG_FORMAT").map(|v| v.parse()).transpose()?.unwrap_or_default(),
            filter: var("RUST_LOG").unwrap_or_else(|| DEFAULT_FILTER.to_owned()),
            otlp_endpoint: var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT")),
        })
    }
}

/// Installs the global subscriber (and, with an OTLP endpoint, the global tracer provider and
/// W3C trace-context propagator). Call once, early in `main`; a second call fails with
/// [`Error::AlreadyInitialised`]. With OTLP export it must run inside a Tokio runtime, since
/// the gRPC channel spawns its connection task there.
pub fn init_tracing(config: TracingConfig) -> Result<TracingGuard, Error> {
    let filter = EnvFilter::try_new(&config.filter)
        .map_err(|source| Error::InvalidFilter { filter: config.filter.clone(), source })?;
    let provider = config.otlp_endpoint.as_deref().map(tracer_provider).transpose()?;
    let otel_layer =
        provider.as_ref().map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer(SERVICE_NAME)));
    let ansi = config.format == LogFormat::Text && io::stderr().is_terminal();

    Registry::default()
        .with(filter)
        .with(fmt_layer(config.format, ansi, io::stderr))
        .with(otel_layer)
        .try_init()
        .map_err(|source| Error::AlreadyInitialised { source })?;

    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    Ok(TracingGuard { provider })
}

fn tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, Error> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::OtlpWithoutRuntime);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| Error::OtlpExporter { endpoint: redact_endpoint(endpoint), source })?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .build())
}

/// The stderr layer in `format`, generic over the writer so tests can capture lines.
fn fmt_layer<S, W>(format: LogFormat, ansi: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        // Flattened events and the current span's fields (object key, trace id) on each line
        // keep log queries simple; the full span list would repeat the same keys.
        LogFormat::Json => layer.json().flatten_event(true).with_current_span(true).with_span_list(false).boxed(),
        LogFormat::Text => layer.with_ansi(ansi).fmt_fields(escaped_fields()).boxed(),
    }
}

/// Text-format fields with control characters escaped (`\n` as `\\n`): a value a
/// caller chose (a request name with a newline, a rejection message quoting it) cannot
/// start a line of its own that reads as another log record, an audit line say. Every
/// field goes through it, `%` (Display) ones too, and a value with whitespace or `=`
/// is quoted, so it cannot pass for another `key=value` either; the message stays
/// plain text (caller-chosen names belong in fields). JSON lines are safe already: serde_json escapes control characters.
fn escaped_fields() -> EscapedFields {
    EscapedFields
}

/// See [`escaped_fields`].
struct EscapedFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for EscapedFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = EscapingVisitor { writer, result: Ok(()), written: false };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    result: std::fmt::Result,
    /// Whether a field was written (the next one needs a separator).
    written: bool,
}

impl EscapingVisitor<'_> {
    /// Writes `field=value`; `quoted`: `value` is a string's Debug form already.
    fn write(&mut self, field: &tracing::field::Field, value: &str, quoted: bool) {
        let name = field.name();
        // What tracing-log adds to records of the `log` crate, skipped as by default.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let separator = if self.written { " " } else { "" };
        self.result = if name == "message" {
            write!(self.writer, "{separator}{}", escape_controls(value))
        } else if !quoted && value.contains(|c: char| c.is_whitespace() || c == '=') {
            // Quoted as a string's Debug form, which escapes control characters too.
            write!(self.writer, "{separator}{name}={value:?}")
        } else {
            write!(self.writer, "{separator}{name}={}", escape_controls(value))
        };
        self.written = true;
    }
}

impl tracing::field::Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.write(field, value, false);
        } else {
            // Quoted, as the default formatter writes strings.
            self.write(field, &format!("{value:?}"), true);
        }
    }

    fn record_error(&mut self, field: &tracing::field::Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.write(field, &text, false);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.write(field, &format!("{value:?}"), false);
    }
}

/// `text` with each control character written as its escape (`\n`, `\u{1b}`).
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// The OpenTelemetry trace id of the current span, to record on the reconcile span and in
/// status messages; `None` when OTLP export is off or the span is not traced.
pub fn current_trace_id() -> Option<TraceId> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| span_context.trace_id())
}

/// `scheme://user:pass@host/...` → `scheme://[redacted]@host/...`; anything else unchanged.
fn redact_endpoint(endpoint: &str) -> String {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("", endpoint));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if scheme.is_empty() => format!("[redacted]{}", &rest[at..]),
        Some(at) => format!("{scheme}://[redacted]{}", &rest[at..]),
        None => endpoint.to_owned(),
    }
}

/// Keeps trace export alive; flushes and shuts down the tracer provider when dropped.
///
/// Dropping blocks for up to five seconds while queued spans are sent. Inside an async
/// context prefer [`TracingGuard::shutdown`], which does that on a blocking thread so the
/// runtime can still drive the gRPC connection.
#[derive(Debug)]
#[must_use = "dropping the guard stops trace export"]
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Whether spans are exported over OTLP.
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes queued spans and shuts the exporter down without blocking a runtime thread.
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = tokio::task::spawn_blocking(move || shutdown_provider(&provider)).await
        {
            tracing::warn!(%error, "trace export shutdown task failed");
        }
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            shutdown_provider(&provider);
        }
    }
}

fn shutdown_provider(provider: &SdkTracerProvider) {
    if let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
        tracing::warn!(%error, "cannot flush traces on shutdown");
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex, PoisonError},
    };

    use super::*;

    fn config_from(vars: &[(&str, &str)]) -> Result<TracingConfig, Error> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        TracingConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn config_defaults_and_overrides() -> Result<(), Error> {
        assert_eq!(config_from(&[])?, TracingConfig::default());
        assert_eq!(config_from(&[("RUST_LOG", ""), ("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])?, TracingConfig::default());

        let config = config_from(&[
            ("BERTH_LOG_FORMAT", "Text"),
            ("RUST_LOG", "debug"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])?;
        assert_eq!(config.format, LogFormat::Text);
        assert_eq!(config.filter, "debug");
        assert_eq!(config.otlp_endpoint.as_deref(), Some("http://collector:4317"));

        let config = config_from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
        ])?;
        assert_eq!(config.otlp_endpoint.as_deref(), Some("http://traces:4317"));
        Ok(())
    }

    #[test]
    fn config_rejects_unknown_format_and_http_protocol() {
        let error = config_from(&[("BERTH_LOG_FORMAT", "xml")]);
        assert!(matches!(&error, Err(Error::InvalidLogFormat { value }) if value == "xml"), "{error:?}");
        assert!(matches!(
            config_from(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]),
            Err(Error::UnsupportedOtlpProtocol { .. })
        ));
        assert!(matches!(
            config_from(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
            ]),
            Err(Error::UnsupportedOtlpProtocol { .. })
        ));
    }

    #[test]
    fn endpoint_credentials_are_redacted() {
        assert_eq!(redact_endpoint("https://user:secret@collector:4317/x"), "https://[redacted]@collector:4317/x");
        assert_eq!(redact_endpoint("user:secret@collector:4317"), "[redacted]@collector:4317");
        assert_eq!(redact_endpoint("http://collector:4317/a@b"), "http://collector:4317/a@b");
        let config =
            TracingConfig { otlp_endpoint: Some("https://token@collector".to_owned()), ..TracingConfig::default() };
        assert!(!format!("{config:?}").contains("token"));
    }

    /// A writer that keeps what the layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
        }
    }

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    fn log_one_event(format: LogFormat) -> String {
        let captured = Captured::default();
        let subscriber = Registry::default().with(fmt_layer(format, false, captured.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("reconcile", object = "team-a/env-1");
            let _entered = span.enter();
            tracing::info!(generation = 3, "applied");
        });
        captured.text()
    }

    #[test]
    fn json_lines_carry_event_and_span_fields() -> Result<(), serde_json::Error> {
        let text = log_one_event(LogFormat::Json);
        let line: serde_json::Value = serde_json::from_str(text.trim())?;
        assert_eq!(line["message"], "applied", "{text}");
        assert_eq!(line["level"], "INFO", "{text}");
        assert_eq!(line["generation"], 3, "{text}");
        assert_eq!(line["span"]["name"], "reconcile", "{text}");
        assert_eq!(line["span"]["object"], "team-a/env-1", "{text}");
        Ok(())
    }

    #[test]
    fn text_lines_are_plain() {
        let text = log_one_event(LogFormat::Text);
        assert!(text.contains("INFO"), "{text}");
        assert!(text.contains("reconcile{object=\"team-a/env-1\"}"), "{text}");
        assert!(text.contains("applied generation=3"), "{text}");
        assert!(!text.contains('\u{1b}'), "no colour codes: {text:?}");
    }

    #[test]
    fn a_newline_a_caller_chose_cannot_forge_a_text_log_line() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let captured = Captured::default();
            let subscriber = Registry::default().with(fmt_layer(format, false, captured.clone()));
            let forged = "x\n2026-12-02T00:00:00Z  INFO berth::audit: admission allowed user=\"admin\"";
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!("admit", object = forged);
                let _entered = span.enter();
                tracing::info!(
                    target: "berth::audit",
                    object = %format!("team-a/{forged}"),
                    reason = %format!("name {forged} is taken"),
                    user = forged,
                    "admission denied for {forged}\r"
                );
            });
            let text = captured.text();
            assert_eq!(text.lines().count(), 1, "{format:?}: one record, one line: {text}");
            assert!(!text.contains('\r'), "{format:?}: {text:?}");
            if format == LogFormat::Text {
                // Display values with spaces are quoted: no `user=admin` of their own.
                assert!(text.contains("object=\"team-a/x\\n2026-12-02T00:00:00Z  INFO"), "{text}");
                assert!(text.contains("user=\"x\\n2026"), "{text}");
                assert!(text.contains("admission denied for x\\n2026"), "{text}");
            }
        }
    }

    #[test]
    fn text_fields_keep_errors_sources_plain_words_and_no_trailing_separator() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot push")]
        struct Outer(#[source] std::io::Error);
        let captured = Captured::default();
        let subscriber = Registry::default().with(fmt_layer(LogFormat::Text, false, captured.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let error = Outer(std::io::Error::other("connection reset"));
            tracing::warn!(error = &error as &dyn std::error::Error, kind = %"network", r#type = 3, "push failed");
        });
        let text = captured.text();
        assert!(text.contains("push failed error=\"cannot push: connection reset\" kind=network type=3\n"), "{text:?}");
    }

    #[test]
    fn trace_id_is_shared_by_nested_spans() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = Registry::default().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            assert_eq!(current_trace_id(), None, "outside any span");
            let root = tracing::info_span!("reconcile");
            let _root = root.enter();
            let id = current_trace_id();
            assert!(id.is_some());
            let child = tracing::info_span!("apply");
            let _child = child.enter();
            assert_eq!(current_trace_id(), id);
        });
    }

    #[test]
    fn otlp_needs_a_runtime() {
        assert!(matches!(tracer_provider("http://127.0.0.1:4317"), Err(Error::OtlpWithoutRuntime)));
    }

    /// The only test that installs the global subscriber: it can happen once per process.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn init_exports_spans_and_refuses_a_second_call() -> Result<(), Box<dyn std::error::Error>> {
        let bad = TracingConfig { filter: "info,kube=loud".to_owned(), ..TracingConfig::default() };
        assert!(matches!(init_tracing(bad), Err(Error::InvalidFilter { .. })));

        // Not a collector: accepting a connection proves spans leave the process; dropping it
        // makes the export fail fast instead of waiting for a reply.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let accepted = tokio::spawn(async move { listener.accept().await.map(drop) });

        let guard = init_tracing(TracingConfig {
            format: LogFormat::Json,
            filter: "warn,berth::telemetry::tracing::tests=info".to_owned(),
            otlp_endpoint: Some(endpoint),
        })?;
        assert!(guard.exports_traces());
        {
            let span = tracing::info_span!("reconcile", object = "team-a/env-1");
            let _entered = span.enter();
            assert!(current_trace_id().is_some());
        }
        tokio::time::timeout(Duration::from_secs(10), guard.shutdown()).await?;
        tokio::time::timeout(Duration::from_secs(10), accepted).await???;

        assert!(matches!(init_tracing(TracingConfig::default()), Err(Error::AlreadyInitialised { .. })));
        Ok(())
    }
}
