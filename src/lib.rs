//! Sigil: a SCEP (RFC 8894) certificate authority and registration service whose issuing and
//! decryption keys live in a PKCS#11 token.
//!
//! The crate is organised as in `ARCHITECTURE.md`: one module per job, data flowing
//! `http` → `scep_service` → `authority` → (`pki`, `store`, `mdm`) → `hsm`.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "core")]
pub mod authority;
#[cfg(feature = "core")]
pub mod bench;
#[cfg(feature = "core")]
pub mod ceremony;
pub mod client_address;
#[cfg(feature = "core")]
pub mod clock;
#[cfg(feature = "core")]
pub mod config;
pub mod gateway;
#[cfg(feature = "core")]
pub mod hsm;
#[cfg(feature = "core")]
pub mod http;
#[cfg(feature = "core")]
pub mod identity;
#[cfg(feature = "core")]
pub mod intune;
#[cfg(feature = "core")]
pub mod mdm;
#[cfg(feature = "core")]
pub mod pki;
#[cfg(feature = "core")]
pub mod profiles;
pub mod reason;
#[cfg(feature = "core")]
pub mod scep;
#[cfg(feature = "core")]
pub mod scep_service;
#[cfg(feature = "core")]
pub mod secret;
#[cfg(feature = "core")]
pub mod store;
pub mod telemetry;
pub mod wire;
