//! Telling the MDM what to push, and keeping count. An approved registration whose credential
//! has `[credentials.NAME.push]` gets a `deliver` push; a registration withdrawn or expired
//! after that, or whose certificate is revoked, gets a `withdraw`; an issued one whose
//! certificate enters the last `renew_within_days` gets a `renew:<serial>` (for MDMs that do not
//! renew by themselves). Each push is a store row, queued once (idempotent), sent by one node
//! at a time, retried with doubling waits (`retry_secs`, at most an hour) until the MDM takes it
//! or `max_attempts` run out, and audited at each step; its state (pending, delivered, failed
//! with the MDM's words) is shown on the registration.

use std::collections::HashMap;
use std::sync::Arc;

use crate::mdm::push::{Delivery, PushError, PushEvent, PushSettings, PushTarget};
use crate::reason::Reason;
use crate::store::{
    now, CertStatus, PushAction, PushRecord, PushState, RegistrationRecord, RegistrationState,
    StoreError,
};

use super::Authority;

/// Who pushes, in the audit log.
const ACTOR: &str = "sigil:push";

/// How long a node holds a push it is sending before another may take it. An attempt is cut
/// off a minute before (`ATTEMPT_SECS`), whatever the directory's timeouts and retries add up
/// to (up to 300 s × 11 tries per exchange), so no node is still talking to the MDM about a
/// push another node has taken; a node that still overruns records nothing (the claim is
/// checked).
const LEASE_SECS: i64 = 900;

/// The longest one attempt at a push may take: the claim, less a minute for the request in
/// flight when it is cut off to reach the MDM or fail.
const ATTEMPT_SECS: u64 = (LEASE_SECS - 60) as u64;

/// Pushes sent per round at most.
const BATCH: usize = 50;

/// The longest wait between two attempts.
const MAX_WAIT_SECS: i64 = 3600;

/// Writes the configuration profile a device installs from a registration's SCEP payload (its
/// one-time challenge, the CA's chain): Apple's format, which the authority does not know.
/// Whoever starts the authority installs it ([`Authority::write_profiles_with`]).
pub type ProfileWriter = Arc<
    dyn Fn(&Authority, &super::registration::ScepPayload) -> Result<Vec<u8>, Reason> + Send + Sync,
>;

impl Authority {
    /// Install the writer of the per-device configuration profiles that pushes to MDMs
    /// handed one per device carry (Jamf's `per_device_profile`). Once; later calls are
    /// ignored.
    pub fn write_profiles_with(&self, writer: ProfileWriter) {
        let _ = self.inner.profile_writer.set(writer);
    }
}

/// One credential's way of pushing.
#[derive(Clone)]
pub(crate) struct Channel {
    pub(crate) delivery: Arc<dyn Delivery>,
    pub(crate) settings: PushSettings,
}

impl Channel {
    /// How long before a certificate ends its renewal is pushed (seconds; 0: this channel's
    /// MDM renews by itself, or renewals are off).
    pub(super) fn renewal_window(&self) -> i64 {
        if self.delivery.renews() {
            i64::from(self.settings.renew_within_days) * 86_400
        } else {
            0
        }
    }
}

/// Whether a certificate ending at `not_after` is in its renewal window at `at`: notAfter in
/// `[at, at + window)`, the window every expiry query uses (a certificate is still valid at
/// its notAfter). A window of 0 renews nothing.
fn renews(not_after: i64, at: i64, window: i64) -> bool {
    window > 0 && not_after >= at && not_after.saturating_sub(at) < window
}

/// Whether an approved registration whose deliver was never queued gets one now. Not when
/// the channel carries the SCEP payload and the MDM already collected it itself (say before
/// the credential pushed): the deliver would mint a new challenge and void the one the device
/// holds. A channel that only adds the device to a group or profile scope mints nothing, so
/// it delivers whether or not the payload was collected.
fn redelivers(carries_payload: bool, collected: bool) -> bool {
    !(carries_payload && collected)
}

/// Whether a deliver or renew that ended so may have reached the MDM, and so must be taken
/// back once more if a withdrawal was queued while it was in flight: it was delivered, or it
/// failed in a way that is retried (no answer, cut off, the MDM's 5xx), which may have landed.
/// A refusal (the MDM's 4xx, superseded, no device) changed nothing there.
fn may_have_landed(action: PushAction, state: PushState, retryable_failure: bool) -> bool {
    action != PushAction::Withdraw && (state == PushState::Delivered || retryable_failure)
}

/// The channels, by credential.
pub(crate) type Channels = HashMap<String, Channel>;

/// Build the channels of every credential that pushes.
pub(crate) fn channels(
    credentials: &std::collections::BTreeMap<String, super::CredentialSettings>,
    directories: &std::collections::BTreeMap<String, crate::mdm::DirectorySettings>,
) -> Result<Channels, Reason> {
    let mut out = HashMap::new();
    for (name, c) in credentials {
        let Some(push) = &c.push else { continue };
        let directory = directories.get(&c.directory).ok_or_else(|| {
            Reason::new(format!(
                "credentials.{name}: no directory `{}`",
                c.directory
            ))
        })?;
        let delivery = crate::mdm::push::connect(&c.directory, directory, push)
            .map_err(|e| Reason::context(format!("credentials.{name}"), e))?;
        out.insert(
            name.clone(),
            Channel {
                delivery,
                settings: push.clone(),
            },
        );
    }
    Ok(out)
}

/// The wait before attempt `attempts + 1`.
fn backoff(retry_secs: u64, attempts: i64) -> i64 {
    let shift = attempts.clamp(0, 20) as u32;
    (retry_secs as i64)
        .saturating_mul(1i64 << shift)
        .min(MAX_WAIT_SECS)
}

fn event(action: PushAction) -> PushEvent {
    match action {
        PushAction::Deliver => PushEvent::Deliver,
        PushAction::Withdraw => PushEvent::Withdraw,
        PushAction::Renew => PushEvent::Renew,
    }
}

impl Authority {
    /// Does this credential push?
    pub fn pushes_for(&self, credential: &str) -> bool {
        self.inner.channels.contains_key(credential)
    }

    /// Queue a push of `action` (unique per registration by `key`), then send what is due
    /// without waiting for the background round.
    pub(crate) async fn queue_push(
        &self,
        r: &RegistrationRecord,
        action: PushAction,
        key: &str,
    ) -> Result<bool, StoreError> {
        if !self.pushes_for(&r.credential) {
            return Ok(false);
        }
        let push = new_push(&r.id, action, key)?;
        let queued = self.inner.store.queue_push(&push, ACTOR).await?;
        if queued {
            tracing::info!(registration = %r.id, action = %action, "push queued");
            let ra = self.clone();
            tokio::spawn(async move { ra.send_due_pushes().await });
        }
        Ok(queued)
    }

    /// The pushes of a registration, oldest first.
    pub async fn registration_pushes(&self, id: &str) -> Result<Vec<PushRecord>, StoreError> {
        self.inner.store.pushes(Some(id), 0).await
    }

    /// The background part: queue the withdrawals and renewals that are due, then send what is
    /// due. Runs on the node leading "push".
    pub async fn push_round(&self) {
        if self.inner.channels.is_empty() {
            return;
        }
        if let Err(e) = self.queue_follow_ups().await {
            tracing::warn!(error = %e, "push: cannot look for withdrawals and renewals");
        }
        self.send_due_pushes().await;
    }

    /// Withdrawals for delivered registrations that ended, renewals for certificates entering
    /// their renewal window. The store names the registrations that may need one (a query, not
    /// a walk over every push); each is then read and decided here.
    async fn queue_follow_ups(&self) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let windows: Vec<(String, i64)> = self
            .inner
            .channels
            .iter()
            .map(|(credential, channel)| (credential.clone(), channel.renewal_window()))
            .collect();
        let at = now();
        for id in store.push_follow_ups(at, &windows).await? {
            // One registration that cannot be followed up now does not hold up the others.
            if let Err(e) = self.follow_up(&id, at).await {
                tracing::warn!(registration = %id, error = %e, "push: cannot follow up; next round");
            }
        }
        Ok(())
    }

    /// Queue the withdrawal or renewal one registration needs, if any.
    async fn follow_up(&self, id: &str, at: i64) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let Some(r) = store.registration(id).await? else {
            return Ok(());
        };
        let Some(channel) = self.inner.channels.get(&r.credential) else {
            return Ok(());
        };
        let ended = match r.state {
            // Approved, and its deliver never queued (the write after the approval failed):
            // queue it now (queuing is once per key, so an existing one stays as it is).
            RegistrationState::Approved => {
                if redelivers(
                    channel.delivery.carries_payload(),
                    r.challenge_hash.is_some(),
                ) {
                    self.queue_push(&r, PushAction::Deliver, "deliver").await?;
                } else {
                    tracing::debug!(registration = %r.id, "push: its payload was collected by the MDM; not delivered again");
                }
                false
            }
            RegistrationState::Rejected | RegistrationState::Expired => true,
            RegistrationState::Issued => {
                let cert = match &r.serial {
                    Some(s) => store.certificate(s).await?,
                    None => None,
                };
                match cert {
                    Some(c) if c.status == CertStatus::Revoked => true,
                    Some(c) => {
                        if renews(c.not_after, at, channel.renewal_window()) {
                            self.queue_push(&r, PushAction::Renew, &format!("renew:{}", c.serial))
                                .await?;
                        }
                        false
                    }
                    None => false,
                }
            }
            _ => false,
        };
        if ended {
            self.queue_push(&r, PushAction::Withdraw, "withdraw")
                .await?;
        }
        Ok(())
    }

    /// Send every push that is due (each taken by this node alone), and record the outcome;
    /// once more if that queued a withdrawal to send at once.
    pub async fn send_due_pushes(&self) {
        let _one_at_a_time = self.inner.pushing.lock().await;
        for _ in 0..2 {
            let due = match self.inner.store.due_pushes(now(), BATCH).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "push: cannot read due pushes");
                    return;
                }
            };
            let mut again = false;
            for p in due {
                match self.send_push(p).await {
                    Ok(queued) => again |= queued,
                    Err(e) => tracing::warn!(error = %e, "push: cannot record an attempt"),
                }
            }
            if !again {
                return;
            }
        }
    }

    /// Send one push and record the outcome; true when that queued another to send now.
    async fn send_push(&self, mut p: PushRecord) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        // The attempt's time is counted from before the claim, so that a slow claim or read
        // does not eat into the margin before the claim ends.
        let started = tokio::time::Instant::now();
        let at = now();
        let lease = at + LEASE_SECS;
        if !store.claim_push(&p.id, at, lease).await? {
            return Ok(false); // another node has it, or it is no longer due
        }
        let span = tracing::info_span!("push", registration = %p.registration_id, action = %p.action, actor = ACTOR);
        // Read before the MDM is asked: a store failure after it would lose the answer, and
        // the push would be sent again once the claim lapsed.
        let channel = self
            .inner
            .store
            .registration(&p.registration_id)
            .await?
            .and_then(|r| self.inner.channels.get(&r.credential).cloned());
        p.attempts += 1;
        p.updated_at = at;
        let outcome = {
            use tracing::Instrument;
            let attempt = self.attempt(&p).instrument(span.clone());
            let deadline = started + std::time::Duration::from_secs(ATTEMPT_SECS);
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(outcome) => outcome,
                // Retried like an MDM that did not answer; deliveries and withdrawals are
                // idempotent, and a re-push cut off halfway is re-pushed whole.
                Err(_) => Err(PushError::Unavailable(Reason::new(format!(
                    "the MDM did not finish within {} minutes (this node's claim on the push); retried",
                    ATTEMPT_SECS / 60
                )))),
            }
        };
        let _enter = span.enter();
        let (retry_secs, max_attempts) = channel
            .map(|c| (c.settings.retry_secs, c.settings.max_attempts))
            .unwrap_or((60, 1));
        let mut retryable_failure = false;
        let action = match outcome.or_else(|e| nothing_to_take_back(p.action, e)) {
            Ok(said) => {
                p.state = PushState::Delivered;
                p.message = said;
                tracing::info!(message = %p.message, "push delivered");
                "push_delivered"
            }
            Err(e) => {
                p.message = e.to_string();
                retryable_failure = e.retryable();
                if e.retryable() && p.attempts < i64::from(max_attempts) {
                    p.state = PushState::Pending;
                    p.next_at = at + backoff(retry_secs, p.attempts - 1);
                    tracing::warn!(error = %e, attempts = p.attempts, retry_at = p.next_at, "push failed; will retry");
                    "push_attempt_failed"
                } else {
                    p.state = PushState::Failed;
                    tracing::warn!(error = %e, attempts = p.attempts, "push failed for good");
                    "push_failed"
                }
            }
        };
        // Recorded before the push is settled: if this write fails, or the node stops between
        // the two, the push is still claimed, not settled, and is sent again (idempotently)
        // once the claim lapses, which records it then. Settled first, a lost write here would
        // leave the registration to expire into a withdrawal.
        if p.state == PushState::Delivered && p.action == PushAction::Deliver {
            self.lasts_once_delivered(&p).await?;
        }
        if !store.settle_push(&p, lease, action, ACTOR).await? {
            tracing::warn!("push: the lease ran out before the answer; another node has it");
        }
        // Even when the claim lapsed: what this node sent reached the MDM, or may have.
        if may_have_landed(p.action, p.state, retryable_failure) {
            return self.withdraw_again_if_overtaken(&p).await;
        }
        Ok(false)
    }

    /// A registration whose device Intune enrolls with Intune's own challenge (the credential's
    /// profile says `challenge = "intune"` and its push joins an Intune group) never sees its
    /// own challenge used, so no enrollment moves it on: once the device is in the group it is
    /// done, and lasts until an officer withdraws it instead of expiring into a withdrawal.
    /// Recorded on the registration then (`registration_delivered`), so a later change of the
    /// configuration does not end what was delivered.
    async fn lasts_once_delivered(&self, p: &PushRecord) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let Some(mut r) = store.registration(&p.registration_id).await? else {
            return Ok(());
        };
        if r.state != RegistrationState::Approved || r.expires_at >= super::registration::LASTING {
            return Ok(());
        }
        let intune_enrolls = self
            .inner
            .credentials
            .get(&r.credential)
            .and_then(|c| self.inner.profiles.get(&c.profile))
            .is_some_and(|profile| profile.policy.takes_intune_challenge());
        let intune_group = self
            .inner
            .channels
            .get(&r.credential)
            .is_some_and(|c| c.delivery.kind() == "intune");
        if !(intune_enrolls && intune_group) {
            return Ok(());
        }
        r.expires_at = super::registration::LASTING;
        r.updated_at = now();
        let details = serde_json::json!({"push": p.id,
            "lasts": "until withdrawn: Intune enrolls the device with its own challenge"});
        if store
            .update_registration(
                &r,
                RegistrationState::Approved,
                "registration_delivered",
                ACTOR,
                &details,
            )
            .await?
        {
            tracing::info!(registration = %r.id, "delivered to Intune's group: the registration lasts until withdrawn");
        }
        Ok(())
    }

    /// A deliver or renew is checked against withdrawals before the MDM is asked, but another
    /// node may send a withdrawal while this one waits for the MDM: the deliver then lands
    /// after it and puts the device back. Any withdrawal seen now was queued during the flight
    /// (sent, or being sent, or about to be), and withdrawing is idempotent: withdraw once
    /// more, after this deliver.
    async fn withdraw_again_if_overtaken(&self, p: &PushRecord) -> Result<bool, StoreError> {
        let overtaken = self
            .registration_pushes(&p.registration_id)
            .await?
            .iter()
            .any(|w| w.action == PushAction::Withdraw);
        if !overtaken {
            return Ok(false);
        }
        tracing::warn!(registration = %p.registration_id, push = %p.id, "a push landed after the withdrawal: withdrawing again");
        let again = new_push(
            &p.registration_id,
            PushAction::Withdraw,
            &format!("withdraw:after:{}", p.id),
        )?;
        self.inner.store.queue_push(&again, ACTOR).await
    }

    /// One attempt: the registration and device, then the MDM.
    async fn attempt(&self, p: &PushRecord) -> Result<String, PushError> {
        let gone = |said: String| PushError::UnknownDevice {
            device: String::new(),
            said,
        };
        let r = self
            .inner
            .store
            .registration(&p.registration_id)
            .await
            .map_err(|e| PushError::Unavailable(Reason::context("the store", e)))?
            .ok_or_else(|| gone("the registration is gone".into()))?;
        if p.action != PushAction::Withdraw {
            let withdrawn = self
                .registration_pushes(&r.id)
                .await
                .map_err(|e| PushError::Unavailable(Reason::context("the store", e)))?
                .iter()
                .any(|w| w.action == PushAction::Withdraw);
            if withdrawn {
                return Err(gone("superseded: the credential was withdrawn".into()));
            }
        }
        let channel = self
            .inner
            .channels
            .get(&r.credential)
            .ok_or_else(|| gone(format!("credential `{}` no longer pushes", r.credential)))?;
        let device_id = r
            .device_id
            .clone()
            .ok_or_else(|| gone("the registration has no device".into()))?;
        if p.action == PushAction::Withdraw && channel.delivery.shared_by_registrations() {
            let holder = self
                .holder_of(&r, &device_id)
                .await
                .map_err(|e| PushError::Unavailable(Reason::context("the store", e)))?;
            if let Some(holder) = holder {
                return Ok(format!(
                    "not taken back: registration {holder} holds credential `{}` on device {device_id} now",
                    r.credential
                ));
            }
        }
        if p.action != PushAction::Withdraw
            && !matches!(
                r.state,
                RegistrationState::Approved | RegistrationState::Issued
            )
        {
            return Err(gone(format!(
                "superseded: the registration is {} now",
                r.state
            )));
        }
        // A renewal asked for a certificate the device has renewed since: the new one has a
        // renewal push of its own when its window opens.
        if p.action == PushAction::Renew
            && r.serial.as_deref().map(|s| format!("renew:{s}")).as_deref() != Some(p.key.as_str())
        {
            return Err(gone(
                "superseded: the device renewed that certificate already".into(),
            ));
        }
        let cert = match &r.serial {
            Some(s) => self
                .inner
                .store
                .certificate(s)
                .await
                .map_err(|e| PushError::Unavailable(Reason::context("the store", e)))?,
            None => None,
        };
        // A profile is written around the payload: without a writer, mint nothing (a new
        // challenge would void the one the MDM may be installing) and try again later.
        let writer = if channel.delivery.carries_profile() {
            Some(self.inner.profile_writer.get().ok_or_else(|| {
                PushError::Unavailable("this process writes no configuration profiles".into())
            })?)
        } else {
            None
        };
        // A deliver carries the challenge the device enrolls with; a renewal, for an issued
        // registration, the challenge that renews the certificate it holds.
        let payload = if channel.delivery.carries_payload()
            && matches!(
                (p.action, r.state),
                (PushAction::Deliver, RegistrationState::Approved)
                    | (PushAction::Renew, RegistrationState::Issued)
            ) {
            let payload = self.payload_for(&r, ACTOR, "").await.map_err(|e| match e {
                // Revoked, ended, or no longer in its window: nothing to renew, now or later.
                super::registration::RegistrationError::WrongState(why) => {
                    gone(format!("superseded: {why}"))
                }
                e => PushError::Unavailable(Reason::context("the SCEP payload", e)),
            })?;
            Some(payload)
        } else {
            None
        };
        // The profile around that payload, for an MDM handed one per device.
        let profile = match (&payload, writer) {
            (Some(payload), Some(writer)) => {
                Some(writer(self, payload).map_err(PushError::Unavailable)?)
            }
            _ => None,
        };
        let scep_payload = payload.and_then(|p| serde_json::to_value(p).ok());
        let target = PushTarget {
            push: p.id.clone(),
            attempt: p.attempts,
            registration: r.id.clone(),
            email: r.email.clone(),
            credential: r.credential.clone(),
            device_id,
            serial: cert.as_ref().map(|c| c.serial.clone()),
            not_after: cert.as_ref().map(|c| crate::clock::rfc3339(c.not_after)),
            scep_payload,
            profile,
        };
        channel.delivery.push(event(p.action), &target).await
    }

    /// Another registration of the same device for the same credential that is in force
    /// (approved, or issued with a certificate not revoked): the MDM delivered the credential
    /// for that one too (same group, same profile), so withdrawing this one would take it back
    /// from under it. That one's own withdrawal takes it back when it ends.
    async fn holder_of(
        &self,
        r: &RegistrationRecord,
        device_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let store = &self.inner.store;
        for other in store.device_registrations(&r.credential, device_id).await? {
            if other.id == r.id {
                continue;
            }
            let in_force = match (other.state, &other.serial) {
                (RegistrationState::Approved, _) => true,
                (RegistrationState::Issued, Some(serial)) => store
                    .certificate(serial)
                    .await?
                    .is_some_and(|c| c.status != CertStatus::Revoked),
                _ => false,
            };
            if in_force {
                return Ok(Some(other.id));
            }
        }
        Ok(None)
    }
}

/// A pending push of `action` for registration `registration`, due now.
fn new_push(registration: &str, action: PushAction, key: &str) -> Result<PushRecord, StoreError> {
    let at = now();
    let mut id = [0u8; 8];
    openssl::rand::rand_bytes(&mut id)
        .map_err(|e| StoreError::Unavailable(Reason::context("random", e)))?;
    Ok(PushRecord {
        id: format!("push_{}", hex::encode(id)),
        registration_id: registration.to_owned(),
        key: key.to_owned(),
        action,
        state: PushState::Pending,
        attempts: 0,
        next_at: at,
        message: String::new(),
        created_at: at,
        updated_at: at,
    })
}

/// A withdrawal for a device its MDM no longer knows (retired, wiped, deleted) has nothing to
/// take back: the membership or profile went with the device. It is settled as delivered,
/// with the MDM's words, rather than failed for good.
fn nothing_to_take_back(action: PushAction, e: PushError) -> Result<String, PushError> {
    match e {
        PushError::UnknownDevice { device, said }
            if action == PushAction::Withdraw && !device.is_empty() =>
        {
            Ok(format!(
                "nothing to take back: the MDM no longer knows device {device} ({said})"
            ))
        }
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_deliver_is_queued_unless_it_would_void_a_collected_challenge() {
        assert!(redelivers(true, false), "a webhook, nothing collected");
        assert!(
            !redelivers(true, true),
            "a webhook would mint a new challenge"
        );
        assert!(redelivers(false, true), "a group add mints nothing");
        assert!(redelivers(false, false));
    }

    #[test]
    fn what_may_have_reached_the_mdm_is_withdrawn_again_if_overtaken() {
        use PushAction::*;
        assert!(may_have_landed(Deliver, PushState::Delivered, false));
        assert!(may_have_landed(Renew, PushState::Delivered, false));
        // No answer, cut off, or the MDM's 5xx: it may have landed, retried or not.
        assert!(may_have_landed(Deliver, PushState::Pending, true));
        assert!(may_have_landed(Renew, PushState::Failed, true));
        // Refused: nothing changed at the MDM.
        assert!(!may_have_landed(Deliver, PushState::Failed, false));
        // A withdrawal is never followed by another.
        assert!(!may_have_landed(Withdraw, PushState::Delivered, false));
        assert!(!may_have_landed(Withdraw, PushState::Pending, true));
    }

    #[test]
    fn the_renewal_window_is_half_open() {
        let (at, w) = (1_000_000, 864_000);
        assert!(super::renews(at, at, w));
        assert!(super::renews(at + w - 1, at, w));
        assert!(!super::renews(at + w, at, w));
        assert!(!super::renews(at - 1, at, w));
        assert!(!super::renews(at, at, 0));
        // Far-off values do not overflow into the window.
        assert!(!super::renews(i64::MAX, i64::MIN + 1, w));
    }

    #[test]
    fn waits_double_up_to_an_hour() {
        assert_eq!(super::backoff(60, 0), 60);
        assert_eq!(super::backoff(60, 1), 120);
        assert_eq!(super::backoff(60, 3), 480);
        assert_eq!(super::backoff(60, 10), 3600);
        assert_eq!(super::backoff(1, 63), 3600);
        assert_eq!(super::backoff(1, -1), 1);
    }

    #[test]
    fn only_a_withdrawal_for_a_device_the_mdm_forgot_is_settled() {
        use super::{nothing_to_take_back, PushAction, PushError};
        let forgot = || PushError::UnknownDevice {
            device: "dev-9".into(),
            said: "Resource not found".into(),
        };
        let said = nothing_to_take_back(PushAction::Withdraw, forgot()).unwrap();
        assert!(
            said.contains("dev-9") && said.contains("Resource not found"),
            "{said}"
        );
        assert!(nothing_to_take_back(PushAction::Deliver, forgot()).is_err());
        assert!(nothing_to_take_back(PushAction::Renew, forgot()).is_err());
        // Sigil's own inability to ask (no group configured, an unreadable ID) took nothing
        // back: the withdrawal fails, for the operator to see.
        let unpushable = PushError::Unpushable {
            device: "mobile:7".into(),
            why: "no static group is configured for mobile devices".into(),
        };
        assert!(nothing_to_take_back(PushAction::Withdraw, unpushable).is_err());
        // Sigil's own reasons (no device named) stay failures.
        let own = PushError::UnknownDevice {
            device: String::new(),
            said: "the registration is gone".into(),
        };
        assert!(nothing_to_take_back(PushAction::Withdraw, own).is_err());
        assert!(
            nothing_to_take_back(PushAction::Withdraw, PushError::Webhook("down".into())).is_err()
        );
    }
}
