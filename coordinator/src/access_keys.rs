//! SigV4 access keys for the SSM-compatible HTTP API: `CreateAccessKey`,
//! `ListAccessKeys`, `DeleteAccessKey` (IAM's shapes, reachable only through
//! the operator's token, never through a SigV4-signed request), and the lookup
//! that the HTTP layer uses to verify a signature.
//!
//! SigV4 is an HMAC: verifying it needs the secret itself, so the secret cannot
//! be stored hashed as the operator token is. It is sealed with AES-256-GCM
//! under `access-keys.key` in the data directory (`pki`), bound to its key ID,
//! and shown in clear once, in CreateAccessKey's reply. A copy of the database
//! alone reveals no secret.

use rand::Rng;
use serde_json::{Value, json};

use crate::core::Coordinator;
use tether_ssm::ApiError;
use tether_ssm::limits;
use tether_store::{AccessKeyRow, StoreError};
use tether_util::time::{iso_ms, now_ms};

/// The operations this module answers; the HTTP API refuses them.
pub const OPERATIONS: [&str; 3] = ["CreateAccessKey", "ListAccessKeys", "DeleteAccessKey"];

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// Runs one access-key operation.
pub async fn invoke(c: &Coordinator, operation: &str, request: &Value) -> Result<Value, ApiError> {
    match operation {
        "CreateAccessKey" => create(c).await,
        "ListAccessKeys" => list(c).await,
        "DeleteAccessKey" => delete(c, request).await,
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!("{other} is not an access-key operation"),
        )),
    }
}

fn metadata(row: &AccessKeyRow) -> Value {
    json!({
        "AccessKeyId": row.access_key_id,
        "Status": "Active",
        "CreateDate": iso_ms(row.created_ms),
    })
}

async fn create(c: &Coordinator) -> Result<Value, ApiError> {
    let id = format!(
        "{}{}",
        limits::ACCESS_KEY_ID_PREFIX,
        random_string(
            ID_ALPHABET,
            limits::ACCESS_KEY_ID_LEN - limits::ACCESS_KEY_ID_PREFIX.len()
        )
    );
    let secret = random_string(SECRET_ALPHABET, limits::ACCESS_KEY_SECRET_LEN);
    let row = AccessKeyRow {
        secret_sealed: c.pki.seal(id.as_bytes(), secret.as_bytes()),
        access_key_id: id,
        created_ms: now_ms(),
        last_used_ms: None,
    };
    if row.secret_sealed.is_empty() {
        return Err(ApiError::new(
            "InternalServerError",
            "could not seal the new secret",
        ));
    }
    c.store.insert_access_key(&row).await?;
    tracing::info!(access_key_id = %row.access_key_id, "access key created");
    let mut key = metadata(&row);
    key["SecretAccessKey"] = json!(secret);
    Ok(json!({ "AccessKey": key }))
}

async fn list(c: &Coordinator) -> Result<Value, ApiError> {
    let keys: Vec<Value> = c
        .store
        .access_keys()
        .await?
        .iter()
        .map(|row| {
            let mut m = metadata(row);
            if let Some(used) = row.last_used_ms {
                m["LastUsedDate"] = json!(iso_ms(used));
            }
            m
        })
        .collect();
    Ok(json!({ "AccessKeyMetadata": keys, "IsTruncated": false }))
}

async fn delete(c: &Coordinator, request: &Value) -> Result<Value, ApiError> {
    let id = match request.get("AccessKeyId") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        Some(other) if !other.is_null() => {
            return Err(ApiError::new(
                "ValidationException",
                format!("DeleteAccessKey: AccessKeyId must be a non-empty string, got {other}"),
            ));
        }
        _ => {
            return Err(ApiError::new(
                "ValidationException",
                "DeleteAccessKey: the member AccessKeyId is required",
            ));
        }
    };
    if !c.store.delete_access_key(id).await? {
        return Err(ApiError::new(
            "NoSuchEntity",
            format!("DeleteAccessKey: the access key with ID {id:?} cannot be found"),
        ));
    }
    tracing::info!(access_key_id = %id, "access key deleted");
    Ok(json!({}))
}

/// The secret of `access_key_id` in clear, for verifying a signature; `None`
/// when no such key exists (or its sealed secret does not open under this
/// data directory's key, which is logged).
pub async fn secret(c: &Coordinator, access_key_id: &str) -> Result<Option<String>, StoreError> {
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
pub async fn touch(c: &Coordinator, access_key_id: &str) {
    if let Err(e) = c.store.touch_access_key(access_key_id, now_ms()).await {
        tracing::warn!(%access_key_id, error = %e, "could not record access key use");
    }
}
