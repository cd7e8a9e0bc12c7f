//! Logs and traces: the process's tracing subscriber (logs to stderr,
//! pretty or JSON, level from `CREDITGATE_LOG`) and, when
//! `telemetry.otlp_endpoint` is set, an OpenTelemetry layer that exports
//! every span (the request span of each HTTP request included) to an OTLP
//! collector over HTTP/protobuf. Without an endpoint no exporter is built,
//! so nothing is ever sent.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat, TelemetryConfig};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("configuration key `telemetry.otlp_endpoint`: cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot install the log subscriber: {0}")]
    Init(#[from] tracing_subscriber::util::TryInitError),
}

/// The span exporter, when configured. Flushes what is left on drop.
#[derive(Debug)]
pub struct TraceExport {
    provider: Option<SdkTracerProvider>,
}

impl TraceExport {
    /// Sends the spans finished so far now (tests; shutdown).
    pub fn flush(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!(error = %e, "flushing spans failed");
        }
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "stopping the span exporter failed");
        }
    }
}

/// The OpenTelemetry layer for a subscriber, and its exporter's handle:
/// `None` (and no exporter at all) without `telemetry.otlp_endpoint`.
pub fn otel_layer<S>(config: &TelemetryConfig) -> Result<(Option<impl Layer<S> + use<S>>, TraceExport), TelemetryError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok((None, TraceExport { provider: None }));
    };
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("creditgate");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok((
        Some(layer),
        TraceExport {
            provider: Some(provider),
        },
    ))
}

/// Installs the process's subscriber: logs, and traces when configured.
/// Keep the returned value for the life of the process.
pub fn init(config: &Config) -> Result<TraceExport, TelemetryError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CREDITGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match config.log_format {
        LogFormat::Json => logs.json().boxed(),
        LogFormat::Pretty => logs.boxed(),
    };
    let (otel, export) = otel_layer(&config.telemetry)?;
    tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .with(filter)
        .try_init()?;
    if export.exporting() {
        tracing::info!("exporting traces over OTLP");
    }
    Ok(export)
}
