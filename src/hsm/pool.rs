//! The session pool: logged-in PKCS#11 sessions shared by blocking worker threads.
//!
//! Login state belongs to the application and the token, not to a session, and it vanishes when
//! the last session closes. The pool therefore keeps one *anchor* session open for the life of
//! the process and hands out up to `size` working sessions. When the token drops sessions
//! (`CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED`, `CKR_USER_NOT_LOGGED_IN`, device removed)
//! the pool opens a new anchor, logs in again, forgets the dead sessions and the caller retries
//! once. Sessions are opened "no drop": a handle the token already closed is never closed again
//! (a real HSM may have reused the number).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::error::{is_rv, login_error, recovery_for, Recovery};
use super::metrics::HsmMetrics;
use super::HsmError;

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
    idle: Vec<Session>,
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
    metrics: &'static HsmMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SessionPool {
    /// Open the anchor session and log in.
    pub(crate) fn new(
        pkcs11: Pkcs11,
        slot: Slot,
        token: String,
        pin: AuthPin,
        size: usize,
        metrics: &'static HsmMetrics,
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
            metrics,
        };
        pool.login_anchor()?;
        metrics.pool_size.set(pool.size as i64);
        Ok(pool)
    }

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
        let old = lock(&self.anchor).replace(session);
        // Close the previous anchor only if the token still knows it.
        if let Some(old) = old {
            if old.get_session_info().is_ok() {
                let _ = old.close();
            }
        }
        Ok(())
    }

    /// Take a session, opening one if the pool is not full, else waiting for one.
    fn checkout(&self) -> Result<(u64, Session), HsmError> {
        let mut st = lock(&self.state);
        loop {
            if let Some(s) = st.idle.pop() {
                self.metrics.pool_idle.set(st.idle.len() as i64);
                return Ok((self.generation.load(Ordering::SeqCst), s));
            }
            if st.open < self.size {
                st.open += 1;
                self.metrics.pool_open.set(st.open as i64);
                let generation = self.generation.load(Ordering::SeqCst);
                drop(st);
                return match self.pkcs11.open_rw_session_no_drop(self.slot) {
                    Ok(s) => Ok((generation, s)),
                    Err(e) => {
                        self.release_slot();
                        Err(HsmError::from_ck("open session", e))
                    }
                };
            }
            st.waiters += 1;
            self.metrics.pool_waiters.set(st.waiters as i64);
            st = self
                .available
                .wait(st)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            st.waiters -= 1;
            self.metrics.pool_waiters.set(st.waiters as i64);
        }
    }

    fn checkin(&self, session: Session) {
        let mut st = lock(&self.state);
        st.idle.push(session);
        self.metrics.pool_idle.set(st.idle.len() as i64);
        drop(st);
        self.available.notify_one();
    }

    /// A session is gone for good: free its place without closing the handle.
    fn release_slot(&self) {
        let mut st = lock(&self.state);
        st.open = st.open.saturating_sub(1);
        self.metrics.pool_open.set(st.open as i64);
        drop(st);
        self.available.notify_one();
    }

    /// Put a session back if it is still alive, forget it otherwise.
    fn return_or_forget(&self, session: Session) {
        if session.get_session_info().is_ok() {
            self.checkin(session);
        } else {
            self.release_slot();
        }
    }

    /// Reopen the anchor and log in again, unless another thread already did since `seen`.
    fn recover(&self, seen: u64) -> Result<(), HsmError> {
        let _one_at_a_time = lock(&self.recovering);
        if self.generation.load(Ordering::SeqCst) != seen {
            return Ok(());
        }
        self.metrics.recoveries.inc();
        tracing::warn!(token = %self.token, "PKCS#11 session lost; reopening and logging in again");
        // Forget idle sessions the token no longer knows.
        let idle: Vec<Session> = std::mem::take(&mut lock(&self.state).idle);
        for s in idle {
            self.return_or_forget(s);
        }
        self.login_anchor()?;
        self.generation.fetch_add(1, Ordering::SeqCst);
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
        let result = self.run_inner(&mut f, &on_relookup);
        self.metrics.observe(op, started.elapsed(), result.is_ok());
        result
    }

    fn run_inner<T>(
        &self,
        f: &mut impl FnMut(&Session) -> Result<T, OpError>,
        on_relookup: &impl Fn(),
    ) -> Result<T, HsmError> {
        let (generation, session) = self.checkout()?;
        let first = f(&session);
        let (what, err) = match first {
            Ok(v) => {
                self.checkin(session);
                return Ok(v);
            }
            Err(OpError::Final(e)) => {
                self.checkin(session);
                return Err(e);
            }
            Err(OpError::Ck(what, err)) => (what, err),
        };
        match recovery_for(&err) {
            Recovery::None => {
                self.checkin(session);
                Err(HsmError::from_ck(what, err))
            }
            Recovery::Relookup => {
                on_relookup();
                let retry = f(&session);
                self.checkin(session);
                retry.map_err(|e| match e {
                    OpError::Ck(w, e) => HsmError::from_ck(w, e),
                    OpError::Final(e) => e,
                })
            }
            Recovery::Reopen => {
                self.return_or_forget(session);
                on_relookup();
                self.recover(generation)?;
                let (_, session) = self.checkout()?;
                match f(&session) {
                    Ok(v) => {
                        self.checkin(session);
                        Ok(v)
                    }
                    Err(OpError::Final(e)) => {
                        self.checkin(session);
                        Err(e)
                    }
                    Err(OpError::Ck(w, e)) => {
                        let lost = recovery_for(&e) == Recovery::Reopen;
                        self.return_or_forget(session);
                        if lost {
                            Err(HsmError::SessionLost(HsmError::from_ck(w, e).to_string()))
                        } else {
                            Err(HsmError::from_ck(w, e))
                        }
                    }
                }
            }
        }
    }

    /// Close every idle session and the anchor (at shutdown).
    pub(crate) fn close(&self) {
        let idle: Vec<Session> = std::mem::take(&mut lock(&self.state).idle);
        for s in idle {
            let _ = s.close();
        }
        if let Some(anchor) = lock(&self.anchor).take() {
            let _ = anchor.logout();
            let _ = anchor.close();
        }
    }
}
