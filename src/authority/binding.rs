//! One CA, one store. A store is bound to the CA it serves and the token that holds it:
//! `sigil init` (or `sigil db migrate --create`) records the CA certificate's fingerprint and
//! a store id in the store, and the store id on the token (a `CKO_DATA` object). `sigil
//! serve` refuses a store that does not know the token's CA, or a token that belongs to
//! another store: a second, empty store would serve the same CA key without its revocations
//! (CRL number 1, OCSP "good" for revoked certificates).
//!
//! Stores from before the binding existed are adopted when they recorded this CA's
//! certificate (every `serve` did).

use serde::{Deserialize, Serialize};

use crate::hsm::{Hsm, HsmError};
use crate::store::{Store, StoreError};

/// The state record in the store.
const STATE: &str = "store_binding";
/// The data object on the token.
const TOKEN_OBJECT: &str = "sigil-store";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Binding {
    store_id: String,
    token: String,
    ca_sha256: Vec<String>,
}

/// Why a store and a token do not belong together.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The token failed.
    #[error("token: {0}")]
    Hsm(#[from] HsmError),
    /// They belong to others; the text names the fix.
    #[error("{0}")]
    Mismatch(String),
    /// The store's binding record is not the JSON this program writes.
    #[error("the store's binding record does not read or write: {0}")]
    Record(#[source] serde_json::Error),
    /// The blocking task that talks to the token did not finish (panicked or cancelled).
    #[error("token worker: {0}")]
    Worker(#[from] tokio::task::JoinError),
    /// The system's random generator failed while making a store id.
    #[error("random generator: {0}")]
    Random(#[source] openssl::error::ErrorStack),
}

fn fingerprint(der: &[u8]) -> String {
    crate::pki::sha256_fingerprint(der)
}

async fn read(store: &dyn Store) -> Result<Option<Binding>, BindingError> {
    match store.state(STATE).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(BindingError::Record),
    }
}

async fn token_store_id(hsm: &Hsm) -> Result<Option<String>, BindingError> {
    let hsm = hsm.clone();
    let v = tokio::task::spawn_blocking(move || hsm.data_blocking(TOKEN_OBJECT)).await??;
    Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

async fn set_token_store_id(hsm: &Hsm, id: &str) -> Result<(), BindingError> {
    let (hsm, id) = (hsm.clone(), id.to_owned());
    tokio::task::spawn_blocking(move || hsm.store_data_blocking(TOKEN_OBJECT, id.as_bytes()))
        .await??;
    Ok(())
}

/// Bind a new store to the token's CA (`ca_cert`, DER). `replace`: the token may already
/// belong to another store, which is gone (disaster recovery); the store records that.
/// Binding a store that is already this CA's is a no-op.
pub async fn bind(
    hsm: &Hsm,
    store: &dyn Store,
    ca_cert: &[u8],
    actor: &str,
    replace: bool,
) -> Result<(), BindingError> {
    let fp = fingerprint(ca_cert);
    let on_token = token_store_id(hsm).await?;
    if let Some(b) = read(store).await? {
        if b.ca_sha256.contains(&fp) && on_token.as_deref() == Some(b.store_id.as_str()) {
            return Ok(());
        }
        if !b.ca_sha256.contains(&fp) {
            return Err(BindingError::Mismatch(format!(
                "this store belongs to another CA (SHA-256 {}), not the token's (SHA-256 {fp}): point server.data_dir or database.url at an empty location for a new CA",
                b.ca_sha256.join(", ")
            )));
        }
    }
    if let (Some(id), false) = (&on_token, replace) {
        return Err(BindingError::Mismatch(format!(
            "token `{}` already belongs to store {id}: a second store would serve this CA without its revocations and CRL numbers. Point server.data_dir or database.url at that store; if it is lost for good, run `sigil db migrate --create --replace-store`",
            hsm.token()
        )));
    }
    let mut raw = [0u8; 16];
    openssl::rand::rand_bytes(&mut raw).map_err(BindingError::Random)?;
    let binding = Binding {
        store_id: format!("store_{}", hex::encode(raw)),
        token: hsm.token().to_string(),
        ca_sha256: vec![fp.clone()],
    };
    let text = serde_json::to_vec(&binding).map_err(BindingError::Record)?;
    store.set_state(STATE, &text).await?;
    set_token_store_id(hsm, &binding.store_id).await?;
    store
        .audit(
            actor,
            if on_token.is_some() {
                "store_rebound"
            } else {
                "store_bound"
            },
            &binding.store_id,
            &serde_json::json!({"token": binding.token, "ca_sha256": fp,
                "previous_store": on_token}),
        )
        .await?;
    tracing::info!(store = %binding.store_id, token = %binding.token, "store bound to the CA");
    Ok(())
}

/// `sigil serve`: is this the token's CA's store? Adopts a store from before bindings that
/// recorded this CA's certificate.
pub async fn check(hsm: &Hsm, store: &dyn Store, ca_cert: &[u8]) -> Result<(), BindingError> {
    let fp = fingerprint(ca_cert);
    let Some(b) = read(store).await? else {
        if store.state("ca_certificate").await?.as_deref() == Some(ca_cert) {
            tracing::warn!("this store predates store bindings and served this CA: binding it");
            return bind(hsm, store, ca_cert, "sigil serve", false).await;
        }
        return Err(BindingError::Mismatch(
            "this store was not made for the token's CA (it has no binding): the first use of a store is `sigil init` or `sigil db migrate --create`".into(),
        ));
    };
    if !b.ca_sha256.contains(&fp) {
        return Err(BindingError::Mismatch(format!(
            "this store belongs to another CA (SHA-256 {}), not the token's (SHA-256 {fp}): server.data_dir or database.url points at another CA's store, or hsm.token at another token",
            b.ca_sha256.join(", ")
        )));
    }
    match token_store_id(hsm).await? {
        Some(id) if id == b.store_id => Ok(()),
        Some(id) => Err(BindingError::Mismatch(format!(
            "token `{}` belongs to store {id}, but this is store {}: two stores for one CA fork its state. Point server.data_dir or database.url at store {id}",
            hsm.token(),
            b.store_id
        ))),
        None => {
            // A token copied before bindings (or a second token of a cluster): record it.
            set_token_store_id(hsm, &b.store_id).await?;
            Ok(())
        }
    }
}

/// A new CA generation (rollover) joins the store's binding.
pub async fn add_ca(store: &dyn Store, ca_cert: &[u8]) -> Result<(), BindingError> {
    let Some(mut b) = read(store).await? else {
        return Ok(());
    };
    let fp = fingerprint(ca_cert);
    if !b.ca_sha256.contains(&fp) {
        b.ca_sha256.push(fp);
        let text = serde_json::to_vec(&b).map_err(BindingError::Record)?;
        store.set_state(STATE, &text).await?;
    }
    Ok(())
}
