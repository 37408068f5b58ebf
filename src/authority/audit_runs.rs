//! Verification runs of the audit log, for the console: the latest result is kept, at most one
//! run is under way at a time, and a visit waits for a run only when the latest one is older
//! than it accepts.
//!
//! A run reads the whole chain (at a million records, about a second and a half on this
//! project's test machine): run on every visit of the audit page, a few people looking at it
//! would keep a core busy. The page says when its result was checked and offers a run on
//! demand; `sigil audit verify` stays the assessor's full check from the command line.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::audit_seal::AuditCheck;
use super::Authority;

/// One verification run and what it found.
#[derive(Debug, Clone)]
pub struct AuditRun {
    /// When it started (Unix seconds).
    pub at: i64,
    /// How long it took.
    pub took: Duration,
    /// What it found.
    pub check: AuditCheck,
    started: Instant,
    /// The log was read to its end (a run that could not read it is shown, but never reused).
    read_whole: bool,
}

/// The latest run, and the lock that lets one run at a time.
#[derive(Default)]
pub(crate) struct AuditRuns {
    latest: Mutex<Option<AuditRun>>,
    running: tokio::sync::Mutex<()>,
}

impl AuditRuns {
    fn latest(&self) -> Option<AuditRun> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn keep(&self, run: &AuditRun) {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(run.clone());
    }
}

impl Authority {
    /// The latest verification run if it started less than `max_age` ago, else a new one. A
    /// log that cannot be read to its end is a run whose check names the problem.
    /// Callers that ask while a run is under way wait for it and share its result (when it
    /// started after they asked); `Duration::ZERO` always gets a run that started after the
    /// call.
    pub async fn audit_verification(&self, max_age: Duration) -> AuditRun {
        let runs = &self.inner.audit_runs;
        let asked = Instant::now();
        if let Some(run) = runs.latest() {
            if run.read_whole && !max_age.is_zero() && asked.duration_since(run.started) < max_age {
                return run;
            }
        }
        let _one_at_a_time = runs.running.lock().await;
        // A run that started after the call, or one young enough (finished while this call
        // waited for the lock), answers it too.
        if let Some(run) = runs.latest() {
            let young = run.read_whole && !max_age.is_zero() && run.started.elapsed() < max_age;
            if run.started >= asked || young {
                return run;
            }
        }
        let (started, at) = (Instant::now(), crate::clock::now());
        // A log that cannot be read to its end does not verify: the run says so, and it
        // replaces an older "intact" rather than leaving it on show.
        let (check, read_whole) = match self.verify_audit().await {
            Ok(check) => (check, true),
            Err(e) => {
                tracing::warn!(error = %e, "the audit log could not be read to verify it");
                let check = AuditCheck {
                    problem: Some(format!("the log could not be read to its end: {e}")),
                    ..AuditCheck::default()
                };
                (check, false)
            }
        };
        let run = AuditRun {
            at,
            took: started.elapsed(),
            check,
            started,
            read_whole,
        };
        runs.keep(&run);
        run
    }
}
