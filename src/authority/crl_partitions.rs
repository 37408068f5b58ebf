//! CRL partitions, served: `/crl/<ca>/<YYYY-Www>.crl` lists the revoked certificates of that
//! CA whose validity ends in that ISO week ([`crate::pki::CrlPartition`]). Certificates of
//! profiles that leave `crl_url` to Sigil name their partition's URL, so a relying party that
//! checks CRLs downloads one week's revocations instead of all of them.
//!
//! A partition's CRL is made when first asked for and kept in the store (shared by every
//! node) until a revocation of its CA or half its life has passed; then the next request
//! makes a new one. The full CRL at `/crl/<ca>.crl` stays, kept current by the CRL round, for
//! relying parties that load one file and for certificates issued before partitions.

use super::{crl_fresh, Authority, RequestError, CRL_HOURS};
use crate::pki::{CrlPartition, PARTITION_PLACEHOLDER};

/// Why there is no such partition CRL (HTTP 404, with this as the reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoPartition {
    /// The CA label is neither the active CA nor a retired one.
    #[error("no CA is called {0:?}")]
    NoSuchCa(String),
    /// The file name is not `YYYY-Www.crl` with a week that exists.
    #[error("{0:?} is not a CRL partition: partitions are ISO weeks, as in 2027-W49.crl")]
    NotAPartition(String),
    /// The week is outside the CA certificate's validity: no certificate of it ends then.
    #[error("no certificate of {0} can end in {1}: it is outside the CA's validity")]
    OutsideValidity(String, String),
    /// Without `server.public_url` certificates name no partition, and a partition's CRL
    /// could not name its own URL.
    #[error("this server has no public URL (server.public_url), so it names no CRL partitions")]
    NoPublicUrl,
}

/// The CRL URL given to profiles that leave `crl_url` to Sigil: the partition's URL on this
/// server, with the placeholder the issuer fills in per certificate.
pub(crate) fn url_template(public_url: &str, ca_label: &str) -> String {
    format!(
        "{}/crl/{ca_label}/{PARTITION_PLACEHOLDER}.crl",
        public_url.trim_end_matches('/')
    )
}

impl Authority {
    /// The CRL of one partition of a CA generation (`label`: the active CA's name or a
    /// retired one's; `file`: `YYYY-Www.crl`), from the store while it covers every
    /// revocation of its CA and has half its life left, else made now.
    pub async fn partition_crl(
        &self,
        label: &str,
        file: &str,
    ) -> Result<Result<Vec<u8>, NoPartition>, RequestError> {
        let generation = if label == self.inner.ca_name {
            None
        } else {
            match self.inner.retired.iter().position(|g| g.label == label) {
                Some(i) => Some(i),
                None => return Ok(Err(NoPartition::NoSuchCa(label.to_string()))),
            }
        };
        let name = file.strip_suffix(".crl").unwrap_or(file);
        let Some(partition) = CrlPartition::parse(name) else {
            return Ok(Err(NoPartition::NotAPartition(file.to_string())));
        };
        if self.inner.public_url.trim_end_matches('/').is_empty() {
            return Ok(Err(NoPartition::NoPublicUrl));
        }
        if !self.may_end_in(generation, &partition) {
            return Ok(Err(NoPartition::OutsideValidity(
                label.to_string(),
                partition.name(),
            )));
        }
        let unavailable = |e: crate::store::StoreError| RequestError::Unavailable(e.to_string());
        let store = &self.inner.store;
        let mark = store
            .crl_mark(self.generation_issuer(generation))
            .await
            .map_err(unavailable)?;
        if let Some(held) = store
            .state(&format!("crl:{label}/{}", partition.name()))
            .await
            .map_err(unavailable)?
        {
            if let Some((covered, der)) = held.split_first_chunk::<8>() {
                if i64::from_be_bytes(*covered) >= mark.revisions
                    && crl_fresh(der, CRL_HOURS * 3600 / 2)
                {
                    return Ok(Ok(der.to_vec()));
                }
            }
        }
        let url = url_template(&self.inner.public_url, label)
            .replace(PARTITION_PLACEHOLDER, &partition.name());
        self.make_crl(generation, Some((partition, url)))
            .await
            .map(Ok)
    }

    /// Can a certificate of this generation end in this partition's week (does the week
    /// meet the CA certificate's validity)?
    fn may_end_in(&self, generation: Option<usize>, partition: &CrlPartition) -> bool {
        let cert = match generation.and_then(|i| self.inner.retired.get(i)) {
            Some(g) => &g.cert,
            None => &self.inner.ca_cert,
        };
        let Ok((_, ca)) = x509_parser::parse_x509_certificate(cert) else {
            return false;
        };
        let (start, end) = partition.window();
        start <= ca.validity().not_after.timestamp() && ca.validity().not_before.timestamp() < end
    }
}
