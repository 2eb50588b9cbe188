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
    /// The bootstrap operator token: the account's root, allowed everything.
    Root,
    /// A SigV4 access key of the root principal (keys issued before users
    /// existed, or with no `--user-name`).
    AccessKey { access_key_id: String },
    /// An IAM-style user, allowed what its policies allow.
    User {
        user_name: String,
        credential: Credential,
    },
}

/// Which of a user's credentials a request came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    OperatorToken { token_id: String },
    AccessKey { access_key_id: String },
}

impl Principal {
    /// The principal's user name, when it is a user.
    pub fn user_name(&self) -> Option<&str> {
        match self {
            Principal::User { user_name, .. } => Some(user_name),
            _ => None,
        }
    }

    /// The ID of the credential used (an access key ID or a token ID).
    pub fn credential_id(&self) -> Option<&str> {
        match self {
            Principal::Root => None,
            Principal::AccessKey { access_key_id }
            | Principal::User {
                credential: Credential::AccessKey { access_key_id },
                ..
            } => Some(access_key_id),
            Principal::User {
                credential: Credential::OperatorToken { token_id },
                ..
            } => Some(token_id),
        }
    }
}

/// Why a credential was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the operator token is not valid for this coordinator")]
    UnknownToken,
    #[error("operator token {0} has expired")]
    TokenExpired(String),
    #[error("The security token included in the request is invalid: access key {0} is Inactive")]
    KeyInactive(String),
    #[error("The security token included in the request is expired: access key {0} expired")]
    KeyExpired(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The wire a request came over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The operator gRPC channel (the tether CLI).
    Grpc,
    /// AWS JSON 1.1 over HTTPS (the aws CLI, boto3, the SDKs).
    Https,
    /// An operator token over HTTPS (`Authorization: Bearer`): `/metrics`.
    HttpsToken,
    /// The web console (`/console/` on the HTTPS listener, `crate::console`):
    /// a signed-in session's requests.
    Console,
}

/// Hex SHA-256 of an operator token, as stored.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The principal `token` stands for: the bootstrap token is root; a user's
/// token must not have expired (a revoked token, or one of a deleted user,
/// is no longer stored). Looked up per request, so a change on any replica
/// holds at once on every other.
pub async fn operator_principal(c: &Coordinator, token: &str) -> Result<Principal, Refused> {
    operator_principal_by_hash(c, &token_hash(token)).await
}

/// As [`operator_principal`], by the token's hash ([`token_hash`]): the web
/// console keeps only that and checks it again at every request.
pub async fn operator_principal_by_hash(c: &Coordinator, hash: &str) -> Result<Principal, Refused> {
    let row = c
        .metrics
        .timed(
            crate::core::stats::Statement::OperatorToken,
            c.store.operator_token(hash),
        )
        .await?
        .ok_or(Refused::UnknownToken)?;
    let Some(user_name) = row.user_name else {
        return Ok(Principal::Root);
    };
    let token_id = row.token_id.unwrap_or_default();
    if row.expires_ms.is_some_and(|e| e <= now_ms()) {
        return Err(Refused::TokenExpired(token_id));
    }
    Ok(Principal::User {
        user_name,
        credential: Credential::OperatorToken { token_id },
    })
}

/// What an access key stands for and its secret in clear (for verifying a
/// signature); `None` when no such key exists (or its sealed secret does
/// not open under this data directory's key, which is logged). An inactive
/// or expired key is refused.
pub async fn access_key(
    c: &Coordinator,
    access_key_id: &str,
) -> Result<Option<(String, Principal)>, Refused> {
    let Some(row) = c.store.access_key(access_key_id).await? else {
        return Ok(None);
    };
    if row.status != "Active" {
        return Err(Refused::KeyInactive(access_key_id.to_string()));
    }
    if row.expires_ms.is_some_and(|e| e <= now_ms()) {
        return Err(Refused::KeyExpired(access_key_id.to_string()));
    }
    let Some(secret) = access_key_secret(c, access_key_id).await? else {
        return Ok(None);
    };
    let principal = match row.user_name {
        None => Principal::AccessKey {
            access_key_id: access_key_id.to_string(),
        },
        Some(user_name) => Principal::User {
            user_name,
            credential: Credential::AccessKey {
                access_key_id: access_key_id.to_string(),
            },
        },
    };
    Ok(Some((secret, principal)))
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
