//! Who is calling: the credentials the edges accept, checked here so that
//! every transport turns a request into the same [`Caller`].
//!
//! - The operator token (`operator.json`, the tether CLI over gRPC): stored
//!   as its SHA-256 only, compared in constant time.
//! - SigV4 access keys (the SSM-compatible HTTPS API): SigV4 is an HMAC, so
//!   verifying one needs the secret itself; it is sealed with AES-256-GCM under
//!   `access-keys.key` (see `pki`), bound to its key ID, and opened here only
//!   to verify a signature.

use std::net::IpAddr;

use tether_store::StoreError;
use tether_util::time::now_ms;

use crate::core::Coordinator;

/// Who is behind a request, and how it came: the explicit argument of every
/// action, and what authorisation and audit will look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub transport: Transport,
    /// The peer's address, when the transport knows it.
    pub source: Option<IpAddr>,
}

/// The identity a credential stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The bootstrap operator token: the coordinator's administrator.
    Root,
    /// A SigV4 access key.
    AccessKey { access_key_id: String },
}

/// The wire a request came over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The operator gRPC channel (the tether CLI).
    Grpc,
    /// AWS JSON 1.1 over HTTPS (the aws CLI, boto3, the SDKs).
    Https,
}

/// Hex SHA-256 of an operator token, as stored.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` is an operator token of this coordinator.
pub async fn operator_token_is_valid(c: &Coordinator, token: &str) -> Result<bool, StoreError> {
    let presented = token_hash(token);
    let known = c.store.operator_token_hashes().await?;
    Ok(known.iter().fold(false, |acc, h| {
        let eq: bool = subtle::ConstantTimeEq::ct_eq(h.as_bytes(), presented.as_bytes()).into();
        acc | eq
    }))
}

/// The secret of `access_key_id` in clear, for verifying a signature; `None`
/// when no such key exists (or its sealed secret does not open under this
/// data directory's key, which is logged).
pub async fn access_key_secret(
    c: &Coordinator,
    access_key_id: &str,
) -> Result<Option<String>, StoreError> {
    let Some(row) = c.store.access_key(access_key_id).await? else {
        return Ok(None);
    };
    let opened = c
        .pki
        .open(access_key_id.as_bytes(), &row.secret_sealed)
        .and_then(|b| String::from_utf8(b).ok());
    if opened.is_none() {
        tracing::error!(%access_key_id, "access key secret does not open under access-keys.key");
    }
    Ok(opened)
}

/// Records that a key was just used (shown by ListAccessKeys).
pub async fn access_key_used(c: &Coordinator, access_key_id: &str) {
    if let Err(e) = c.store.touch_access_key(access_key_id, now_ms()).await {
        tracing::warn!(%access_key_id, error = %e, "could not record access key use");
    }
}
