//! Logs and metrics: `tracing` set up as human-readable or JSON lines, and the Prometheus
//! registry every module registers its metrics in.

use std::sync::OnceLock;

use prometheus::{Encoder, Registry, TextEncoder};

mod metrics;
pub use metrics::{metrics, Metrics};
use tracing_subscriber::EnvFilter;

/// The process-wide metrics registry.
pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::new)
}

/// The registry in Prometheus text exposition format.
pub fn render_metrics() -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metrics.
    let _ = TextEncoder::new().encode(&registry().gather(), &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Human,
    /// One JSON object a line.
    Json,
}

/// Install the global subscriber. `level` is an `EnvFilter` directive (`info`,
/// `sigil=debug,actix_web=info`); `RUST_LOG` wins when set.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}

/// Count a SCEP answer by message type, status (`success`, `pending`, `failure`) and failInfo.
pub fn scep_outcome(message_type: &str, status: &str, fail_info: &str) {
    if let Some(m) = metrics() {
        m.scep_answers
            .with_label_values(&[message_type, status, fail_info])
            .inc();
    }
}

/// Count a SCEP request answered from the replay cache.
pub fn scep_replay() {
    if let Some(m) = metrics() {
        m.scep_replays.inc();
    }
}

/// Count an OCSP answer by outcome (`prepared`, `signed`, `cached`, `malformed`,
/// `try_later`, `unauthorized`).
pub fn ocsp_outcome(outcome: &str) {
    if let Some(m) = metrics() {
        if outcome == "prepared" {
            m.ocsp_prepared.inc();
        } else {
            m.ocsp_answers.with_label_values(&[outcome]).inc();
        }
    }
}

/// Count an HTTP request received.
pub fn http_request() {
    if let Some(m) = metrics() {
        m.http_requests.inc();
    }
}
