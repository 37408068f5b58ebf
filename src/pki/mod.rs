//! X.509 for Sigil: names, the CA's own certificates, and (later) issuance from checked CSRs,
//! CRLs and OCSP. Every signature is made on the token through [`TokenKey`]; this module
//! decides nothing about who may have a certificate.

mod ca;
mod crl_partition;
mod csr;
mod name;
pub mod ocsp;
mod profile;

pub use ca::{
    build_crl, ca_params, ca_request, common_name, issue_ocsp_responder_certificate,
    issue_ra_certificate, link_certificate, parse_revocation_reason, random_serial,
    read_certificates, revocation_reason_name, self_signed_ca, sha256_fingerprint, subject_text,
    to_pem, PkiError, REVOCATION_REASONS,
};
pub use crl_partition::{crl_url_for, CrlPartition, PARTITION_PLACEHOLDER};
pub use csr::{
    certificate_facts, certificate_identity, name_text, parse_csr, CertificateFacts, Csr, CsrError,
    NameAttribute, RequestedKey, San,
};
pub use name::{escape_dn_value, parse_dn};
pub use profile::{extended_key_usage, key_usage, parse_oid, CertProfile, Identity};
pub use rcgen::KeyUsagePurpose;
