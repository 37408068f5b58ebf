//! Sigil: a SCEP (RFC 8894) certificate authority and registration service whose issuing and
//! decryption keys live in a PKCS#11 token.
//!
//! The crate is organised as in `ARCHITECTURE.md`: one module per job, data flowing
//! `http` → `ra` → (`scep`, `pki`) → `hsm`.

#![warn(missing_docs)]

pub mod ceremony;
pub mod config;
pub mod gateway;
pub mod hsm;
pub mod http;
pub mod pki;
pub mod ra;
pub mod scep;
pub mod store;
pub mod telemetry;
