//! Prometheus metrics of the token: operation counts and latency by operation, pool gauges.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge};

/// The HSM metrics, registered once per process in [`crate::telemetry::registry`].
pub struct HsmMetrics {
    pub(crate) ops: IntCounterVec,
    pub(crate) latency: HistogramVec,
    pub(crate) pool_size: IntGauge,
    pub(crate) pool_open: IntGauge,
    pub(crate) pool_idle: IntGauge,
    pub(crate) pool_waiters: IntGauge,
    pub(crate) recoveries: IntCounter,
}

impl HsmMetrics {
    /// The process-wide instance.
    pub fn global() -> &'static HsmMetrics {
        static M: OnceLock<HsmMetrics> = OnceLock::new();
        M.get_or_init(|| {
            let reg = crate::telemetry::registry();
            let ops = IntCounterVec::new(
                prometheus::Opts::new(
                    "sigil_hsm_operations_total",
                    "PKCS#11 operations by operation and outcome",
                ),
                &["op", "outcome"],
            )
            .unwrap_or_else(|e| panic!("metric definition: {e}"));
            let latency = HistogramVec::new(
                prometheus::HistogramOpts::new(
                    "sigil_hsm_operation_seconds",
                    "PKCS#11 operation latency, including waiting for a session",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
                &["op"],
            )
            .unwrap_or_else(|e| panic!("metric definition: {e}"));
            let gauge = |name: &str, help: &str| {
                IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric definition: {e}"))
            };
            let m = HsmMetrics {
                ops,
                latency,
                pool_size: gauge(
                    "sigil_hsm_pool_size",
                    "configured PKCS#11 session pool size",
                ),
                pool_open: gauge("sigil_hsm_pool_open", "PKCS#11 working sessions open"),
                pool_idle: gauge("sigil_hsm_pool_idle", "PKCS#11 sessions idle in the pool"),
                pool_waiters: gauge(
                    "sigil_hsm_pool_waiters",
                    "operations waiting for a free PKCS#11 session",
                ),
                recoveries: IntCounter::new(
                    "sigil_hsm_session_recoveries_total",
                    "times the pool reopened sessions and logged in again",
                )
                .unwrap_or_else(|e| panic!("metric definition: {e}")),
            };
            for c in [
                Box::new(m.ops.clone()) as Box<dyn prometheus::core::Collector>,
                Box::new(m.latency.clone()),
                Box::new(m.pool_size.clone()),
                Box::new(m.pool_open.clone()),
                Box::new(m.pool_idle.clone()),
                Box::new(m.pool_waiters.clone()),
                Box::new(m.recoveries.clone()),
            ] {
                // Registering twice only happens if two registries are mixed up; ignore.
                let _ = reg.register(c);
            }
            m
        })
    }

    pub(crate) fn observe(&self, op: &str, took: Duration, ok: bool) {
        self.ops
            .with_label_values(&[op, if ok { "ok" } else { "error" }])
            .inc();
        self.latency
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
    }
}
