//! Logging: `tracing` with a filter and a text or JSON format; and, for `eagerql serve`,
//! OpenTelemetry traces over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: a `request` span per HTTP request (joining
//! the caller's trace from its `traceparent` header), a `plan` span per root field, and an
//! `sql` span per statement with its name and row count. Without the setting no trace layer
//! is installed and the `plan` and `sql` spans are disabled at their call sites.

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

mod filter;
mod format;

pub use format::{InRequest, LogFormat, in_request};

/// Errors of setting up telemetry.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The trace pipeline, when traces are exported.
static TRACES: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are exported (so request spans carry the trace's attributes).
pub fn traces_on() -> bool {
    TRACES.get().is_some()
}

/// Installs the global subscriber, logs only. Safe to call more than once (later calls do
/// nothing).
pub fn init(filter: &str, format: LogFormat) {
    let _ = install(filter, format, None);
}

/// [`init`], and trace export when the OTLP environment asks for it (`eagerql serve`).
pub fn init_with_traces(filter: &str, format: LogFormat) -> Result<(), BoxError> {
    for name in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ] {
        if otlp_configured()
            && std::env::var(name)
                .is_ok_and(|v| v.trim().to_ascii_lowercase().starts_with("https://"))
        {
            return Err(format!(
                "{name}: OTLP over HTTPS is not built in; send to a collector or agent over \
                 plain HTTP (e.g. http://127.0.0.1:4318)"
            )
            .into());
        }
    }
    let provider = if otlp_configured() {
        Some(tracer_provider()?)
    } else {
        None
    };
    let installed = install(filter, format, provider.clone());
    if let (Some(provider), true) = (provider, installed) {
        let _ = TRACES.set(provider);
        tracing::info!("exporting traces over OTLP/HTTP");
    }
    Ok(())
}

/// Sends the spans still buffered (at shutdown).
pub fn flush_traces() {
    if let Some(provider) = TRACES.get()
        && let Err(e) = provider.force_flush()
    {
        tracing::warn!(error = %e, "flushing traces failed");
    }
}

/// Whether the standard OpenTelemetry variables ask for OTLP traces.
fn otlp_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim() == "none");
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The exporter (endpoint, headers, timeout and compression from the `OTEL_EXPORTER_OTLP_*`
/// variables) behind a batching processor on the server's runtime. The service is
/// `OTEL_SERVICE_NAME`, or `eagerql`.
fn tracer_provider() -> Result<SdkTracerProvider, BoxError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()?;
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "eagerql".to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

/// The log layer (its own filter), and the trace layer when given (the server's own spans,
/// `plan` and `sql` included, whatever the log filter).
fn install(filter: &str, format: LogFormat, traces: Option<SdkTracerProvider>) -> bool {
    // A plain `target=level` list is a `Targets` filter, decided once per call site; only a
    // directive that needs it (span or field filters) makes it an `EnvFilter`, which is
    // consulted again each time a span is entered and exited.
    let targets = plain_targets(filter).then(|| filter.parse::<Targets>());
    // Both filters are `Fresh`: see `telemetry::filter` for the lost spans and lines
    // without it.
    let filter: Box<dyn tracing_subscriber::layer::Filter<Registry> + Send + Sync> = match targets {
        Some(Ok(targets)) => Box::new(filter::Fresh(targets)),
        _ => Box::new(filter::Fresh(
            EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info")),
        )),
    };
    // Colours only for a person at a terminal, never in a file or a log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = log_layer(format, ansi, || LogWriter);
    let traces = traces.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("eagerql"))
            // The server's spans, and its warnings and errors as span events.
            .with_filter(filter::Fresh(tracing_subscriber::filter::filter_fn(
                |meta| {
                    meta.target().starts_with("eagerql")
                        && if meta.is_span() {
                            *meta.level() <= tracing::Level::DEBUG
                        } else {
                            *meta.level() <= tracing::Level::WARN
                        }
                },
            )))
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init()
        .is_ok()
}

/// The log layer: each event as one line of `format` (see [`format`]), written to `writer`;
/// colours (text only) when `ansi`.
pub fn log_layer<S, W>(format: LogFormat, ansi: bool, writer: W) -> impl Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .fmt_fields(format::NoSpanFields)
        .event_format(format::Line { format, ansi })
}

/// Whether `filter` is a plain list of `level` and `target=level` (what `Targets` and
/// `EnvFilter` read alike): no empty piece, span or field filter.
fn plain_targets(filter: &str) -> bool {
    let level = |l: &str| {
        ["trace", "debug", "info", "warn", "error", "off"]
            .iter()
            .any(|k| l.eq_ignore_ascii_case(k))
    };
    !filter.trim().is_empty()
        && filter.split(',').all(|piece| {
            let piece = piece.trim();
            match piece.split_once('=') {
                None => level(piece),
                Some((target, l)) => {
                    !target.is_empty()
                        && target
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
                        && level(l)
                }
            }
        })
}

/// The progress bar drawn on stderr now, if any: log lines are written with it cleared and
/// drawn again after, so neither overwrites the other.
static PROGRESS: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Shows `bar` until the guard is dropped, with log lines written above it.
pub fn show_progress(bar: &indicatif::ProgressBar) -> ProgressGuard {
    *PROGRESS.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    ProgressGuard(())
}

/// Keeps a progress bar registered with the log writer (see [`show_progress`]).
pub struct ProgressGuard(());

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        *PROGRESS.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Writes log lines to stderr, each in one piece, above the progress bar when one is shown.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let bar = PROGRESS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The caller's trace context, from its `traceparent` / `tracestate` headers.
pub fn remote_context(headers: &axum::http::HeaderMap) -> opentelemetry::Context {
    struct Headers<'a>(&'a axum::http::HeaderMap);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)))
}

#[cfg(test)]
mod tests {
    use super::plain_targets;

    #[test]
    fn only_plain_target_lists_skip_the_env_filter() {
        for plain in [
            "info",
            "warn",
            "off",
            "info,eagerql=debug",
            "eagerql::http=warn",
            "sqlx=off",
        ] {
            assert!(plain_targets(plain), "{plain}");
        }
        for other in [
            "",
            "info,",
            "[span]=debug",
            "eagerql[request]=debug",
            "a=b",
            "x{y}=info",
        ] {
            assert!(!plain_targets(other), "{other}");
        }
    }
}
