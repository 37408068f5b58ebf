//! The RA's upkeep: the records every node and tool reads (CA and RA certificates, the
//! configuration's digest), the CRL (current, renewed, published with fencing), and the
//! background round that runs them on the node leading each task.

use super::{ca, crl_fresh, Authority, RequestError, CRL_HOURS};
use crate::reason::Reason;

impl Authority {
    /// Record the CA certificate, its chain and the RA certificate(s) in the store, so every
    /// node and every tool reads the same ones.
    pub async fn record_certificates(&self) -> Result<(), crate::store::StoreError> {
        let i = &self.inner;
        let store = &i.store;
        store.set_state("ca_certificate", &i.ca_cert).await?;
        store.set_state("ra_certificate", &i.ra_sign_cert).await?;
        store
            .set_state("ra_decrypt_certificate", &i.ra_decrypt_cert)
            .await?;
        let chain: String = i.ca_chain.iter().map(|c| crate::pki::to_pem(c)).collect();
        store.set_state("ca_chain_pem", chain.as_bytes()).await?;
        // Each CA's OCSP responder certificate, unless the store has one that lives longer.
        for generation in self.generations() {
            let label = self.generation_label(generation).to_string();
            let ours = self.responder_of(generation).cert();
            let key = super::responder::state_key(&label);
            let keep = match store.state(&key).await? {
                Some(stored) => !self.responder_of(generation).adopt(stored),
                None => true,
            };
            if keep {
                store.set_state(&key, &ours).await?;
            }
        }
        Ok(())
    }

    /// A generation's delegated OCSP responder.
    pub(crate) fn responder_of(&self, generation: Option<usize>) -> &super::responder::Responder {
        match generation.and_then(|i| self.inner.retired.get(i)) {
            Some(g) => &g.responder,
            None => &self.inner.responder,
        }
    }

    /// The OCSP responders' round: every node takes a newer responder certificate from the
    /// store; the node leading "ocsp" issues a new one when a third of its life is left (the
    /// CA key signs it), and records it on the token and in the store.
    pub async fn responder_round(&self, lead: bool) {
        let days = self.inner.responder_days;
        for generation in self.generations() {
            let label = self.generation_label(generation).to_string();
            let key = super::responder::state_key(&label);
            let responder = self.responder_of(generation);
            match self.inner.store.state(&key).await {
                Ok(Some(der)) => {
                    if responder.adopt(der) {
                        tracing::info!(ca = %label, "took the renewed OCSP responder certificate");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "OCSP responder round: store unavailable");
                    return;
                }
            }
            if !lead || !super::responder::due(&responder.cert(), days) {
                continue;
            }
            let Ok(_permit) = self
                .inner
                .key
                .hsm
                .admit(crate::hsm::WorkClass::Background)
                .await
            else {
                continue;
            };
            let ra = self.clone();
            let made = tokio::task::spawn_blocking(move || {
                let (issuer, ca) = match generation.and_then(|i| ra.inner.retired.get(i)) {
                    Some(g) => (&g.issuer, &g.cert),
                    None => (&ra.inner.issuer, &ra.inner.ca_cert),
                };
                let r = ra.responder_of(generation);
                let der = super::responder::issue(issuer, ca, r.key(), days)?;
                let label = super::responder::label_for(ra.generation_label(generation));
                r.key().hsm().store_certificate_blocking(&label, &der)?;
                Ok::<_, super::responder::ResponderError>(der)
            })
            .await;
            match made {
                Ok(Ok(der)) => {
                    responder.adopt(der.clone());
                    if let Err(e) = self.inner.store.set_state(&key, &der).await {
                        tracing::warn!(error = %e, "the renewed OCSP responder certificate is on the token but not in the store yet");
                    }
                    if let Err(e) = self
                        .inner
                        .store
                        .audit(
                            "sigil",
                            "ocsp_responder_renewed",
                            &label,
                            &serde_json::json!({"sha256": crate::pki::sha256_fingerprint(&der)}),
                        )
                        .await
                    {
                        tracing::warn!(error = %e, "could not record the responder renewal");
                    }
                    tracing::info!(ca = %label, "renewed the OCSP responder certificate");
                }
                Ok(Err(e)) => {
                    tracing::warn!(ca = %label, error = %e, "could not renew the OCSP responder certificate")
                }
                Err(e) => tracing::warn!(ca = %label, error = %e, "OCSP responder renewal failed"),
            }
        }
    }

    /// Record a configuration change in the audit log: when the effective configuration
    /// (`config_text`, which holds no secrets) differs from the one this CA last started with.
    pub async fn record_configuration(
        &self,
        config_text: &str,
    ) -> Result<bool, crate::store::StoreError> {
        use sha2::Digest;
        let store = &self.inner.store;
        let digest = hex::encode(sha2::Sha256::digest(config_text.as_bytes()));
        let previous = store.state("config_sha256").await?;
        if previous.as_deref() == Some(digest.as_bytes()) {
            return Ok(false);
        }
        store
            .audit(
                "sigil serve",
                "configuration_changed",
                &digest,
                &serde_json::json!({
                    "previous_sha256": previous.map(|p| String::from_utf8_lossy(&p).into_owned()),
                    "profiles": self.profile_names(),
                }),
            )
            .await?;
        store.set_state("config_sha256", digest.as_bytes()).await?;
        store
            .set_state("config_toml", config_text.as_bytes())
            .await?;
        Ok(true)
    }

    /// The current CRL of the active CA (DER): the one in the store while it is fresh, else a
    /// new one. Any node may call it.
    pub async fn crl(&self) -> Result<Vec<u8>, RequestError> {
        self.crl_of(None).await
    }

    /// The current CRL of a generation (`None`: the active CA; `Some(i)`: the i-th retired
    /// one), from the store while fresh.
    pub(crate) async fn crl_of(&self, generation: Option<usize>) -> Result<Vec<u8>, RequestError> {
        let unavailable =
            |e: crate::store::StoreError| RequestError::Unavailable(Reason::caused_by(e));
        let label = self.generation_label(generation);
        let store = &self.inner.store;
        let held = &self.inner.held_crls;
        // The published number first (a small row): while it is the held CRL's, no read of
        // the CRL itself.
        let number = crate::store::parse_number(
            store
                .state(&format!("crl_published_number:{label}"))
                .await
                .map_err(unavailable)?,
            "crl_published_number",
        )
        .map_err(unavailable)?;
        if let Some(der) = held.get(label, number, crate::store::now()) {
            return Ok(der.to_vec());
        }
        if let Some(der) = store
            .state(&format!("crl:{label}"))
            .await
            .map_err(unavailable)?
        {
            if let Some(next) = super::held_crls::next_update(&der) {
                if next > crate::store::now() {
                    // Held under the number read before it: if a newer one came between,
                    // the next request sees the number move and reads again.
                    held.put(label, number, bytes::Bytes::copy_from_slice(&der), next);
                    return Ok(der);
                }
            }
        }
        self.refresh_crl_of(generation).await
    }

    /// The issuer text of a generation's certificates.
    pub(super) fn generation_issuer(&self, generation: Option<usize>) -> &str {
        match generation.and_then(|i| self.inner.retired.get(i)) {
            Some(g) => &g.issuer_text,
            None => &self.inner.ca_issuer_text,
        }
    }

    /// Each CA generation's CRL state: its name, and the published CRL's out-of-date mark
    /// (revocations it lacks, and since when).
    pub async fn crl_status(
        &self,
    ) -> Result<Vec<(String, crate::store::CrlMark)>, crate::store::StoreError> {
        let mut out = Vec::new();
        for generation in self.generations() {
            let mark = self
                .inner
                .store
                .crl_mark(self.generation_issuer(generation))
                .await?;
            out.push((self.generation_label(generation).to_string(), mark));
        }
        Ok(out)
    }

    /// The active CA (`None`) and every retired one (`Some(i)`).
    fn generations(&self) -> impl Iterator<Item = Option<usize>> {
        std::iter::once(None).chain((0..self.inner.retired.len()).map(Some))
    }

    pub(super) fn generation_label(&self, generation: Option<usize>) -> &str {
        match generation.and_then(|i| self.inner.retired.get(i)) {
            Some(g) => &g.label,
            None => &self.inner.ca_name,
        }
    }

    /// Make, sign and publish a new CRL of the active CA.
    pub async fn refresh_crl(&self) -> Result<Vec<u8>, RequestError> {
        self.refresh_crl_of(None).await
    }

    /// Make, sign and publish a new CRL of a generation, listing every certificate it issued
    /// that is revoked. The number comes from the store and publication is fenced per CA, so a
    /// CA's published CRL never goes back, whichever node made it.
    pub(crate) async fn refresh_crl_of(
        &self,
        generation: Option<usize>,
    ) -> Result<Vec<u8>, RequestError> {
        self.make_crl(generation, None).await
    }

    /// Make, sign and publish a CRL of a generation: the full one (`partition` `None`) or one
    /// partition's, which lists only the revoked certificates ending in its week and names
    /// the partition's URLs in its issuing distribution point. A partition's CRL is stored as the
    /// issuer's revocation count it covers and the number of URLs it names (8 bytes each,
    /// big-endian) followed by its DER, fenced by its own number like the full one; it leaves
    /// the full CRL's out-of-date mark alone.
    pub(crate) async fn make_crl(
        &self,
        generation: Option<usize>,
        partition: Option<(crate::pki::CrlPartition, Vec<String>)>,
    ) -> Result<Vec<u8>, RequestError> {
        let unavailable =
            |e: crate::store::StoreError| RequestError::Unavailable(Reason::caused_by(e));
        let store = &self.inner.store;
        let issuer_text = self.generation_issuer(generation).to_string();
        // The out-of-date mark first: if a revocation commits after the list is read, the
        // mark has moved on and stays after this CRL is published.
        let mark = store.crl_mark(&issuer_text).await.map_err(unavailable)?;
        // The number and the list together: a CRL numbered after another lists at least
        // what that one did.
        let window = partition.as_ref().map(|(p, _)| p.window());
        let (number, revoked) = store
            .crl_listing(&issuer_text, window)
            .await
            .map_err(unavailable)?;
        let revoked = ca::crl_entries(revoked);
        let _permit = self
            .inner
            .key
            .hsm
            .admit(crate::hsm::WorkClass::Background)
            .await
            .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))?;
        let entries = revoked.len();
        let urls_named = partition.as_ref().map_or(0, |(_, urls)| urls.len());
        let ra = self.clone();
        let urls = partition.as_ref().map(|(_, urls)| urls.clone());
        let der = tokio::task::spawn_blocking(move || {
            let (issuer, cert) = match generation.and_then(|i| ra.inner.retired.get(i)) {
                Some(g) => (&g.issuer, &g.cert),
                None => (&ra.inner.issuer, &ra.inner.ca_cert),
            };
            crate::pki::build_crl(
                issuer,
                cert,
                &revoked,
                number.max(1) as u64,
                CRL_HOURS,
                urls.as_deref(),
            )
        })
        .await
        .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))?
        .map_err(|e| RequestError::Unavailable(Reason::caused_by(e)))?;
        let label = self.generation_label(generation).to_string();
        let (key, stored, covers) = match &partition {
            None => (label.clone(), der.clone(), mark),
            Some((p, _)) => (
                format!("{label}/{}", p.name()),
                super::crl_partitions::stored(mark.revisions, urls_named, &der),
                // Covers nothing of the full CRL's mark.
                crate::store::CrlMark::default(),
            ),
        };
        if store
            .publish_crl(&key, number, &stored, &covers)
            .await
            .map_err(unavailable)?
        {
            tracing::info!(ca = %key, crl_number = number, entries, "CRL refreshed");
            if partition.is_none() {
                if let Some(next) = super::held_crls::next_update(&der) {
                    self.inner.held_crls.put(
                        &key,
                        number,
                        bytes::Bytes::copy_from_slice(&der),
                        next,
                    );
                }
            }
            return Ok(der);
        }
        // Another node published a newer CRL meanwhile: that one is current.
        let newer = store
            .state(&format!("crl:{key}"))
            .await
            .map_err(unavailable)?;
        Ok(match (newer, &partition) {
            (Some(newer), None) => newer,
            (Some(newer), Some(_)) => {
                super::crl_partitions::from_stored(&newer).map_or(der, |(_, _, d)| d.to_vec())
            }
            _ => der,
        })
    }

    /// After revocations: new CRLs for the active CA and every retired one (a revoked
    /// certificate may be from either). A CRL that cannot be made now is marked out of date in
    /// the store and made by the next CRL round.
    pub(crate) async fn refresh_all_crls(&self) {
        for generation in self.generations() {
            if let Err(e) = self.refresh_crl_of(generation).await {
                tracing::warn!(error = %e, "revoked, but a new CRL could not be published yet; retrying every few seconds");
            }
        }
    }

    /// One CRL round (the node leading the "crl" task): a CA whose published CRL lacks a
    /// revocation, or has less than half its life left, gets a new one. Also sets this node's
    /// `sigil_crl_stale_seconds` gauges.
    pub async fn crl_round(&self, lead: bool) {
        let at = crate::store::now();
        for generation in self.generations() {
            let label = self.generation_label(generation).to_string();
            let mark = match self
                .inner
                .store
                .crl_mark(self.generation_issuer(generation))
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "CRL round: store unavailable");
                    return;
                }
            };
            let gauge = |seconds: i64| {
                if let Some(m) = crate::telemetry::metrics() {
                    m.crl_stale_seconds
                        .with_label_values(&[&label])
                        .set(seconds);
                }
            };
            gauge(if mark.lacking() > 0 {
                at - mark.since
            } else {
                0
            });
            if !lead {
                continue;
            }
            let stale = mark.lacking() > 0
                || match self.inner.store.state(&format!("crl:{label}")).await {
                    Ok(Some(der)) => !crl_fresh(&der, CRL_HOURS * 3600 / 2),
                    Ok(None) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "CRL round: store unavailable");
                        return;
                    }
                };
            if stale {
                match self.refresh_crl_of(generation).await {
                    Ok(_) if mark.lacking() > 0 => {
                        gauge(0);
                        tracing::info!(ca = %label, revocations = mark.lacking(), "the CRL was out of date; published a new one")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(ca = %label, error = %e, "CRL refresh failed; retrying next round")
                    }
                }
            }
        }
    }

    /// Background work for this node. Every few seconds: the CRL round (see
    /// [`Authority::crl_round`]), so a revocation whose CRL could not be made at once is published
    /// as soon as the token allows. Every `interval`: when this node leads "expire", expire
    /// registrations and PENDING enrollments that waited too long; the expiry gauges and
    /// webhook; pushes to the MDMs (withdrawals, renewals, retries); Intune's revocation feed. Runs until the process ends (the audit log is sealed
    /// by its own task, [`Authority::sealing`]).
    pub async fn background(self, interval: std::time::Duration) {
        let crl_every = interval.min(CRL_CHECK);
        let mut tick = tokio::time::interval(crl_every);
        let mut last_rest: Option<tokio::time::Instant> = None;
        loop {
            tick.tick().await;
            let lead = match self.inner.store.lead("crl").await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "background: cannot reach the store");
                    false
                }
            };
            self.crl_round(lead).await;
            if last_rest.is_some_and(|t| t.elapsed() < interval) {
                continue;
            }
            last_rest = Some(tokio::time::Instant::now());
            let ocsp_lead = match self.inner.store.lead("ocsp").await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "background: cannot reach the store");
                    false
                }
            };
            self.responder_round(ocsp_lead).await;
            self.rest_round().await;
        }
    }

    async fn rest_round(&self) {
        match self.inner.store.lead("expire").await {
            Ok(true) => {
                if let Err(e) = self.expire().await {
                    tracing::warn!(error = %e, "background: expiry failed");
                }
                // Ended sessions and sign-ins never finished.
                match self.inner.store.purge_sessions().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(sessions = n, "ended sessions purged"),
                    Err(e) => tracing::warn!(error = %e, "background: session purge"),
                }
                // Reservations whose node stopped before recording: free their challenges.
                match self.inner.store.abandon_lapsed(None, "ra").await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        reservations = n,
                        "dropped reservations their node left behind"
                    ),
                    Err(e) => tracing::warn!(error = %e, "background: lapsed reservations"),
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "background: cannot reach the store"),
        }
        if let Err(e) = self.expiry_gauges().await {
            tracing::warn!(error = %e, "background: expiry counts failed");
        }
        match self.inner.store.lead("notify").await {
            Ok(true) => {
                if let Err(e) = self.announce_expiring().await {
                    tracing::warn!(error = %e, "background: expiry webhook");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "background: cannot reach the store"),
        }
        if !self.inner.channels.is_empty() {
            match self.inner.store.lead("push").await {
                Ok(true) => self.push_round().await,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "background: cannot reach the store"),
            }
        }
        if !self.inner.external.is_empty() {
            match self.inner.store.lead("intune").await {
                Ok(true) => self.external_revocations_round().await,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "background: cannot reach the store"),
            }
        }
    }
}

/// How often the CRL round looks for out-of-date CRLs (at most; a shorter background
/// interval is used as it is).
const CRL_CHECK: std::time::Duration = std::time::Duration::from_secs(5);
