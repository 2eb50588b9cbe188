//! SigV4 access keys for the SSM-compatible HTTP API: `CreateAccessKey`,
//! `ListAccessKeys`, `DeleteAccessKey` (IAM's shapes, reachable only through
//! the operator channel, never through a SigV4-signed request). The lookup
//! that verifies a signature is `crate::credentials`.
//!
//! SigV4 is an HMAC: verifying it needs the secret itself, so the secret cannot
//! be stored hashed as the operator token is. It is sealed with AES-256-GCM
//! under `access-keys.key` in the data directory (`pki`), bound to its key ID,
//! and shown in clear once, in CreateAccessKey's reply. A copy of the database
//! alone reveals no secret.

use rand::Rng;
use serde_json::{Value, json};

use tether_ssm::input::DeleteAccessKeyRequest;
use tether_ssm::{ApiError, limits};
use tether_store::AccessKeyRow;
use tether_util::time::{iso_ms, now_ms};

use crate::core::Coordinator;

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

fn metadata(row: &AccessKeyRow) -> Value {
    json!({
        "AccessKeyId": row.access_key_id,
        "Status": "Active",
        "CreateDate": iso_ms(row.created_ms),
    })
}

pub(super) async fn create(c: &Coordinator) -> Result<Value, ApiError> {
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

pub(super) async fn list(c: &Coordinator) -> Result<Value, ApiError> {
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

pub(super) async fn delete(c: &Coordinator, r: DeleteAccessKeyRequest) -> Result<Value, ApiError> {
    let id = r.access_key_id.as_str();
    if !c.store.delete_access_key(id).await? {
        return Err(ApiError::new(
            "NoSuchEntity",
            format!("DeleteAccessKey: the access key with ID {id:?} cannot be found"),
        ));
    }
    tracing::info!(access_key_id = %id, "access key deleted");
    Ok(json!({}))
}
