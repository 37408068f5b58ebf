//! Every Prometheus metric of Sigil, defined in one place and registered once.
//!
//! [`Metrics::define`] builds them all; a unit test checks that it succeeds, so a bad name or
//! label is caught by the suite, not by a panic in production. At run time [`metrics`]
//! returns `None` (and logs once) if the definition failed anyway: the program goes on
//! without metrics rather than stopping.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge};
use prometheus::{IntGaugeVec, Opts};

/// The metrics.
pub struct Metrics {
    /// HTTP requests received by this node.
    pub http_requests: IntCounter,
    /// SCEP answers by message type, status and failInfo.
    pub scep_answers: IntCounterVec,
    /// SCEP requests answered from the replay cache.
    pub scep_replays: IntCounter,
    /// Certificates the CA key signed for requests (each should be recorded: a higher count
    /// than the store's means signatures were thrown away).
    pub certificates_signed: IntCounter,
    /// OCSP answers by outcome.
    pub ocsp_answers: IntCounterVec,
    /// Its `prepared` child, resolved once: counted on the hottest path there is.
    pub ocsp_prepared: IntCounter,
    /// Valid certificates ending soon, per profile and window.
    pub certificates_expiring: IntGaugeVec,
    /// Seconds the published CRL of a CA has lacked a committed revocation (0: current).
    pub crl_stale_seconds: IntGaugeVec,
    /// PKCS#11 operations by operation and outcome.
    pub hsm_ops: IntCounterVec,
    /// PKCS#11 operation latency.
    pub hsm_latency: HistogramVec,
    /// CPU time spent inside PKCS#11 calls, by operation: the token's share of this
    /// process's CPU (on a hardware HSM, the host side of the calls only).
    pub hsm_cpu: CounterVec,
    /// Configured session pool size.
    pub hsm_pool_size: IntGauge,
    /// Working sessions open.
    pub hsm_pool_open: IntGauge,
    /// Sessions idle.
    pub hsm_pool_idle: IntGauge,
    /// Operations waiting for a session.
    pub hsm_pool_waiters: IntGauge,
    /// Session recoveries.
    pub hsm_recoveries: IntCounter,
    /// Token work waiting for its class's budget, by class.
    pub hsm_budget_waiting: IntGaugeVec,
    /// Token work refused because its class's queue was full, by class.
    pub hsm_budget_shed: IntCounterVec,
}

impl Metrics {
    /// Define every metric (not yet registered).
    pub fn define() -> Result<Metrics, prometheus::Error> {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels)
        };
        let ocsp_answers = counter_vec(
            "sigil_ocsp_answers_total",
            "OCSP answers by outcome (pre-produced, signed fresh, reused from the cache, refused)",
            &["outcome"],
        )?;
        let ocsp_prepared = ocsp_answers.get_metric_with_label_values(&["prepared"])?;
        Ok(Metrics {
            ocsp_answers,
            ocsp_prepared,
            http_requests: IntCounter::new(
                "sigil_http_requests_total",
                "HTTP requests received by this node",
            )?,
            scep_answers: counter_vec(
                "sigil_scep_answers_total",
                "SCEP PKIOperation answers by message type, status and failInfo",
                &["message_type", "status", "fail_info"],
            )?,
            scep_replays: IntCounter::new(
                "sigil_scep_replays_total",
                "SCEP requests whose exact bytes were answered a moment ago, answered again from memory",
            )?,
            certificates_signed: IntCounter::new(
                "sigil_certificates_signed_total",
                "certificates the CA key signed for requests on this node",
            )?,
            certificates_expiring: gauge_vec(
                "sigil_certificates_expiring",
                "Valid certificates ending within 7 or 30 days, per profile",
                &["profile", "within"],
            )?,
            crl_stale_seconds: gauge_vec(
                "sigil_crl_stale_seconds",
                "Seconds since the first revocation the published CRL of a CA lacks (0: the CRL is current)",
                &["ca"],
            )?,
            hsm_ops: counter_vec(
                "sigil_hsm_operations_total",
                "PKCS#11 operations by operation and outcome",
                &["op", "outcome"],
            )?,
            hsm_latency: HistogramVec::new(
                HistogramOpts::new(
                    "sigil_hsm_operation_seconds",
                    "PKCS#11 operation latency, including waiting for a session",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
                &["op"],
            )?,
            hsm_cpu: CounterVec::new(
                Opts::new(
                    "sigil_hsm_cpu_seconds_total",
                    "CPU time of this process spent inside PKCS#11 calls (the calling thread's clock), by operation",
                ),
                &["op"],
            )?,
            hsm_pool_size: IntGauge::new(
                "sigil_hsm_pool_size",
                "configured PKCS#11 session pool size",
            )?,
            hsm_pool_open: IntGauge::new("sigil_hsm_pool_open", "PKCS#11 working sessions open")?,
            hsm_pool_idle: IntGauge::new(
                "sigil_hsm_pool_idle",
                "PKCS#11 sessions idle in the pool",
            )?,
            hsm_pool_waiters: IntGauge::new(
                "sigil_hsm_pool_waiters",
                "operations waiting for a free PKCS#11 session",
            )?,
            hsm_recoveries: IntCounter::new(
                "sigil_hsm_session_recoveries_total",
                "times the pool reopened sessions and logged in again",
            )?,
            hsm_budget_waiting: gauge_vec(
                "sigil_hsm_budget_waiting",
                "token operations waiting for their class's share of the session pool",
                &["class"],
            )?,
            hsm_budget_shed: counter_vec(
                "sigil_hsm_budget_shed_total",
                "token operations refused at once because their class's queue was full",
                &["class"],
            )?,
        })
    }

    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.http_requests.clone()),
            Box::new(self.scep_answers.clone()),
            Box::new(self.scep_replays.clone()),
            Box::new(self.certificates_signed.clone()),
            Box::new(self.ocsp_answers.clone()),
            Box::new(self.certificates_expiring.clone()),
            Box::new(self.crl_stale_seconds.clone()),
            Box::new(self.hsm_ops.clone()),
            Box::new(self.hsm_latency.clone()),
            Box::new(self.hsm_cpu.clone()),
            Box::new(self.hsm_pool_size.clone()),
            Box::new(self.hsm_pool_open.clone()),
            Box::new(self.hsm_pool_idle.clone()),
            Box::new(self.hsm_pool_waiters.clone()),
            Box::new(self.hsm_recoveries.clone()),
            Box::new(self.hsm_budget_waiting.clone()),
            Box::new(self.hsm_budget_shed.clone()),
        ]
    }

    /// Count one PKCS#11 operation: its time on the clock and the CPU time of its calls.
    pub fn hsm_observe(&self, op: &str, took: Duration, cpu: Duration, ok: bool) {
        self.hsm_ops
            .with_label_values(&[op, if ok { "ok" } else { "error" }])
            .inc();
        self.hsm_latency
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
        self.hsm_cpu
            .with_label_values(&[op])
            .inc_by(cpu.as_secs_f64());
    }
}

/// The process's metrics, registered in [`super::registry`] on first use; `None` if they
/// could not be defined (logged once).
pub fn metrics() -> Option<&'static Metrics> {
    static M: OnceLock<Option<Metrics>> = OnceLock::new();
    M.get_or_init(|| match Metrics::define() {
        Ok(m) => {
            for c in m.collectors() {
                // Registering twice only happens if two registries are mixed up; ignore.
                let _ = super::registry().register(c);
            }
            Some(m)
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics could not be defined; running without them");
            None
        }
    })
    .as_ref()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_is_well_defined_and_registered_once() {
        let m = super::Metrics::define().expect("metric definitions");
        let r = prometheus::Registry::new();
        for c in m.collectors() {
            r.register(c).expect("unique names");
        }
        assert!(super::metrics().is_some());
    }
}
