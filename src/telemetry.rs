//! Telemetry: the process's tracing subscriber. Log lines go to stderr, filtered by `RUST_LOG`.
//! [`RequestIdLayer`] keeps the request id of agora's spans, whatever `RUST_LOG` says, so that
//! calls to other nodes carry it. With `--otlp-endpoint` the spans of agora (the `request` span
//! of every HTTP request, with its request id, method and route) also go to an OpenTelemetry
//! collector, over OTLP/HTTP in protobuf, whatever `RUST_LOG` says.
//!
//! `main` calls [`init`] once, before the node starts, and [`Telemetry::shutdown`] last, which
//! sends the spans still queued. The batch exporter runs on a thread of its own; the HTTP
//! requests it makes run on the node's tokio runtime ([`OnRuntime`]).

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_subscriber::filter::{filter_fn, EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::cluster::trace::RequestIdLayer;

/// The log filter when `RUST_LOG` is not set.
const DEFAULT_LOG: &str = "info,librdkafka=warn,rdkafka=warn";

/// How long one export may take before it is given up.
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`init`] set up; shut it down before the process ends.
pub struct Telemetry {
    /// Present when spans are exported.
    provider: Option<SdkTracerProvider>,
}

/// Installs the process's subscriber: logs, request ids, and span export to `otlp_endpoint`
/// (the collector's base URL, e.g. `http://localhost:4318`; spans go to its `/v1/traces`) if
/// given.
/// `node` names this node in the exported resource. Call it inside the tokio runtime.
pub fn init(otlp_endpoint: Option<&str>, node: &str) -> anyhow::Result<Telemetry> {
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_LOG.into());
    let logs = tracing_subscriber::fmt::layer().with_filter(log_filter);
    // agora's spans are at INFO. The hint keeps the process's max level at what some layer
    // wants: without it, every `debug!` and every debug span of openraft, and every `log`
    // record of sled, is built and filtered at run time (a fifth of a replicated order's CPU).
    let request_ids = RequestIdLayer.with_filter(
        filter_fn(|meta| meta.is_span() && meta.target().starts_with("agora"))
            .with_max_level_hint(Level::INFO),
    );
    let provider = otlp_endpoint
        .map(|endpoint| tracer_provider(endpoint, node))
        .transpose()?;
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("agora"))
            .with_filter(Targets::new().with_target("agora", Level::INFO))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(request_ids)
        .with(spans)
        .try_init()
        .context("a tracing subscriber is already installed")?;
    Ok(Telemetry { provider })
}

impl Telemetry {
    /// Sends the spans still queued and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("could not send the last spans to the OTLP collector: {e}");
            }
        }
    }
}

fn tracer_provider(endpoint: &str, node: &str) -> anyhow::Result<SdkTracerProvider> {
    let client = OnRuntime {
        client: HyperClient::with_default_connector(EXPORT_TIMEOUT, None),
        runtime: tokio::runtime::Handle::try_current()
            .context("span export needs the tokio runtime")?,
    };
    let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(&traces)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .with_context(|| format!("cannot export spans to {traces}"))?;
    let resource = Resource::builder()
        .with_service_name("agora")
        .with_attribute(KeyValue::new("service.instance.id", node.to_owned()))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The exporter's HTTP client, sending on the node's runtime: hyper needs a tokio reactor, and
/// the batch exporter calls it from a thread that has none.
#[derive(Debug)]
struct OnRuntime {
    client: HyperClient,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self
            .runtime
            .spawn(async move { client.send_bytes(request).await });
        sent.await?
    }
}
