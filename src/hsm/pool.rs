//! The session pool: logged-in PKCS#11 sessions shared by blocking worker threads.
//!
//! Login state belongs to the application and the token, not to a session, and it vanishes when
//! the last session closes. The pool therefore keeps one *anchor* session open for the life of
//! the process and hands out up to `size` working sessions.
//!
//! When the token drops sessions (`CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED`,
//! `CKR_USER_NOT_LOGGED_IN`, device removed) the pool starts a new *generation*: it opens a new
//! anchor, logs in again, and from then on forgets every session of the older generations; the
//! caller retries once. A session of an old generation is never probed or closed: its handle
//! number may already belong to a new session (SoftHSM hands out the lowest free number), and
//! closing it would close the new one and log the token out. Sessions are opened "no drop" for
//! the same reason. The cost is a few leaked handles per recovery, which is rare.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::error::{is_rv, login_error, recovery_for, Recovery};
use super::HsmError;

/// How long an operation waits for a free session before giving up.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

/// This thread's CPU time so far (user and system).
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Error of one attempt inside the pool: a token error to classify, or a final error.
pub(crate) enum OpError {
    Ck(&'static str, CkError),
    Final(HsmError),
}

impl From<HsmError> for OpError {
    fn from(e: HsmError) -> Self {
        OpError::Final(e)
    }
}

struct PoolState {
    /// Idle sessions with the generation they were opened in.
    idle: Vec<(u64, Session)>,
    open: usize,
    waiters: usize,
}

pub(crate) struct SessionPool {
    pkcs11: Pkcs11,
    slot: Slot,
    token: String,
    pin: AuthPin,
    size: usize,
    state: Mutex<PoolState>,
    available: Condvar,
    anchor: Mutex<Option<Session>>,
    recovering: Mutex<()>,
    generation: AtomicU64,
}

/// Update the pool's metrics, when there are metrics.
fn with_metrics(f: impl FnOnce(&crate::telemetry::Metrics)) {
    if let Some(m) = crate::telemetry::metrics() {
        f(m);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A checked-out session; gives its place back if dropped without being returned (a panic in
/// an operation must not shrink the pool).
struct Lease<'a> {
    pool: &'a SessionPool,
    generation: u64,
    session: Option<Session>,
}

impl Lease<'_> {
    fn session(&self) -> &Session {
        // Present from checkout until `give_back` or `forget` consumes the lease.
        self.session
            .as_ref()
            .unwrap_or_else(|| unreachable!("lease used after release"))
    }

    /// Return the session to the pool (or forget it when its generation is over).
    fn give_back(mut self) {
        if let Some(s) = self.session.take() {
            self.pool.checkin(self.generation, s);
        }
    }

    /// The session is dead or suspect: forget it, never close it.
    fn forget(mut self) {
        if self.session.take().is_some() {
            self.pool.release_slot();
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.session.take().is_some() {
            self.pool.release_slot();
        }
    }
}

impl SessionPool {
    /// Open the anchor session and log in.
    pub(crate) fn new(
        pkcs11: Pkcs11,
        slot: Slot,
        token: String,
        pin: AuthPin,
        size: usize,
    ) -> Result<Self, HsmError> {
        let pool = SessionPool {
            pkcs11,
            slot,
            token,
            pin,
            size: size.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
                waiters: 0,
            }),
            available: Condvar::new(),
            anchor: Mutex::new(None),
            recovering: Mutex::new(()),
            generation: AtomicU64::new(0),
        };
        pool.login_anchor()?;
        with_metrics(|m| m.hsm_pool_size.set(pool.size as i64));
        Ok(pool)
    }

    /// Open a new anchor and log in; the previous anchor is forgotten, not closed.
    fn login_anchor(&self) -> Result<(), HsmError> {
        let session = self
            .pkcs11
            .open_rw_session_no_drop(self.slot)
            .map_err(|e| HsmError::from_ck("open session", e))?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) => {}
            Err(e) if is_rv(&e, RvError::UserAlreadyLoggedIn) => {}
            Err(e) => {
                let _ = session.close();
                return Err(login_error(&self.token, e));
            }
        }
        *lock(&self.anchor) = Some(session);
        Ok(())
    }

    fn current(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Take a session, opening one if the pool is not full, else waiting for one.
    fn checkout(&self) -> Result<Lease<'_>, HsmError> {
        let deadline = Instant::now() + CHECKOUT_TIMEOUT;
        let mut st = lock(&self.state);
        loop {
            let current = self.current();
            while let Some((generation, s)) = st.idle.pop() {
                if generation == current {
                    with_metrics(|m| m.hsm_pool_idle.set(st.idle.len() as i64));
                    return Ok(Lease {
                        pool: self,
                        generation,
                        session: Some(s),
                    });
                }
                // From before a recovery: forget it.
                drop(s);
                st.open = st.open.saturating_sub(1);
            }
            with_metrics(|m| m.hsm_pool_idle.set(0));
            if st.open < self.size {
                st.open += 1;
                with_metrics(|m| m.hsm_pool_open.set(st.open as i64));
                drop(st);
                return match self.pkcs11.open_rw_session_no_drop(self.slot) {
                    Ok(s) => Ok(Lease {
                        pool: self,
                        generation: current,
                        session: Some(s),
                    }),
                    Err(e) => {
                        self.release_slot();
                        Err(HsmError::from_ck("open session", e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HsmError::Busy(CHECKOUT_TIMEOUT.as_secs()));
            }
            st.waiters += 1;
            with_metrics(|m| m.hsm_pool_waiters.set(st.waiters as i64));
            st = self
                .available
                .wait_timeout(st, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            st.waiters -= 1;
            with_metrics(|m| m.hsm_pool_waiters.set(st.waiters as i64));
        }
    }

    fn checkin(&self, generation: u64, session: Session) {
        if generation != self.current() {
            drop(session);
            self.release_slot();
            return;
        }
        let mut st = lock(&self.state);
        st.idle.push((generation, session));
        with_metrics(|m| m.hsm_pool_idle.set(st.idle.len() as i64));
        drop(st);
        self.available.notify_one();
    }

    /// A session is gone for good: free its place without closing the handle.
    fn release_slot(&self) {
        let mut st = lock(&self.state);
        st.open = st.open.saturating_sub(1);
        with_metrics(|m| m.hsm_pool_open.set(st.open as i64));
        drop(st);
        self.available.notify_one();
    }

    /// Start a new generation: log in on a new anchor, forget every older session. Does
    /// nothing if another thread already recovered since `seen`.
    fn recover(&self, seen: u64) -> Result<(), HsmError> {
        let _one_at_a_time = lock(&self.recovering);
        if self.current() != seen {
            return Ok(());
        }
        with_metrics(|m| m.hsm_recoveries.inc());
        tracing::warn!(token = %self.token, "PKCS#11 sessions lost; logging in again");
        self.login_anchor()?;
        self.generation.fetch_add(1, Ordering::SeqCst);
        let stale: Vec<(u64, Session)> = std::mem::take(&mut lock(&self.state).idle);
        for (_, s) in stale {
            drop(s);
            self.release_slot();
        }
        Ok(())
    }

    /// Run `f` on a logged-in session; on a lost session, recover and retry once.
    pub(crate) fn run<T>(
        &self,
        op: &'static str,
        mut f: impl FnMut(&Session) -> Result<T, OpError>,
        on_relookup: impl Fn(),
    ) -> Result<T, HsmError> {
        let started = Instant::now();
        // The token's own CPU: this thread's CPU clock around each call of `f` (not the wait
        // for a session), so a benchmark can split the server's CPU into the token's and the
        // host's in one run.
        let mut cpu = Duration::ZERO;
        let mut timed = |s: &Session| {
            let before = thread_cpu();
            let r = f(s);
            cpu += thread_cpu().saturating_sub(before);
            r
        };
        let result = self.run_inner(&mut timed, &on_relookup);
        with_metrics(|m| m.hsm_observe(op, started.elapsed(), cpu, result.is_ok()));
        result
    }

    fn run_inner<T>(
        &self,
        f: &mut impl FnMut(&Session) -> Result<T, OpError>,
        on_relookup: &impl Fn(),
    ) -> Result<T, HsmError> {
        let lease = self.checkout()?;
        let (what, err) = match f(lease.session()) {
            Ok(v) => {
                lease.give_back();
                return Ok(v);
            }
            Err(OpError::Final(e)) => {
                lease.give_back();
                return Err(e);
            }
            Err(OpError::Ck(what, err)) => (what, err),
        };
        match recovery_for(&err) {
            Recovery::None => {
                lease.give_back();
                Err(HsmError::from_ck(what, err))
            }
            Recovery::Relookup => {
                on_relookup();
                let retry = f(lease.session());
                lease.give_back();
                retry.map_err(|e| match e {
                    OpError::Ck(w, e) => HsmError::from_ck(w, e),
                    OpError::Final(e) => e,
                })
            }
            Recovery::Reopen => {
                let seen = lease.generation;
                lease.forget();
                on_relookup();
                self.recover(seen)?;
                let lease = self.checkout()?;
                match f(lease.session()) {
                    Ok(v) => {
                        lease.give_back();
                        Ok(v)
                    }
                    Err(OpError::Final(e)) => {
                        lease.give_back();
                        Err(e)
                    }
                    Err(OpError::Ck(w, e)) if recovery_for(&e) == Recovery::Reopen => {
                        lease.forget();
                        Err(HsmError::SessionLost(Box::new(HsmError::from_ck(w, e))))
                    }
                    Err(OpError::Ck(w, e)) => {
                        lease.give_back();
                        Err(HsmError::from_ck(w, e))
                    }
                }
            }
        }
    }

    /// Close the idle sessions of the current generation and the anchor (at shutdown). Later
    /// operations open new sessions and log in again.
    pub(crate) fn close(&self) {
        let current = self.current();
        let idle: Vec<(u64, Session)> = std::mem::take(&mut lock(&self.state).idle);
        for (generation, s) in idle {
            if generation == current {
                let _ = s.close();
            }
            self.release_slot();
        }
        if let Some(anchor) = lock(&self.anchor).take() {
            let _ = anchor.logout();
            let _ = anchor.close();
        }
    }
}
