//! SigV4 access keys for the SSM-compatible HTTP API, IAM's verbs and shapes
//! (`CreateAccessKey`, `UpdateAccessKey`, `ListAccessKeys`,
//! `DeleteAccessKey`, `GetAccessKeyLastUsed`), reachable only through the
//! operator channel, never through a SigV4-signed request. A key belongs to
//! a user (`--user-name`, or the calling user) or to the root principal;
//! `Inactive` and expired keys are refused (`crate::credentials`). The lookup
//! that verifies a signature is `crate::credentials`.
//!
//! SigV4 is an HMAC: verifying it needs the secret itself, so the secret cannot
//! be stored hashed as the operator token is. It is sealed with AES-256-GCM
//! under `access-keys.key` in the data directory (`pki`), bound to its key ID,
//! and shown in clear once, in CreateAccessKey's reply. A copy of the database
//! alone reveals no secret.

use serde_json::{Value, json};

use tether_ssm::input::{
    CreateAccessKeyRequest, DeleteAccessKeyRequest, GetAccessKeyLastUsedRequest,
    ListAccessKeysRequest, UpdateAccessKeyRequest,
};
use tether_ssm::{ApiError, limits};
use tether_store::AccessKeyRow;
use tether_util::time::{iso_ms, now_ms};

use super::wire::{ID_ALPHABET, duration_ms, random_string};
use crate::authz::Authority;
use crate::core::Coordinator;

const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn metadata(row: &AccessKeyRow) -> Value {
    let mut v = json!({
        "AccessKeyId": row.access_key_id,
        "Status": row.status,
        "CreateDate": iso_ms(row.created_ms),
    });
    if let Some(u) = &row.user_name {
        v["UserName"] = json!(u);
    }
    v
}

fn no_such_user(op: &str, name: &str) -> ApiError {
    ApiError::new(
        "NoSuchEntity",
        format!("{op}: The user with name {name} cannot be found."),
    )
}

fn no_such_key(op: &str, id: &str) -> ApiError {
    ApiError::new(
        "NoSuchEntity",
        format!("{op}: The Access Key with id {id} cannot be found."),
    )
}

/// The user a key operation is about: the one named, else (as IAM does)
/// the caller's own; `None` is the root principal. A named user must exist.
async fn owner(
    c: &Coordinator,
    op: &str,
    authority: &Authority,
    named: Option<&str>,
) -> Result<Option<String>, ApiError> {
    match named {
        Some(n) => Ok(Some(
            c.store
                .user(n)
                .await?
                .ok_or_else(|| no_such_user(op, n))?
                .user_name,
        )),
        None => Ok(match authority {
            Authority::User(u) => Some(u.user.user_name.clone()),
            Authority::Root { .. } => None,
        }),
    }
}

/// The key `id`, which must belong to `user` (`None`: root's).
async fn owned_key(
    c: &Coordinator,
    op: &str,
    id: &str,
    user: Option<&str>,
) -> Result<AccessKeyRow, ApiError> {
    match c.store.access_key(id).await? {
        Some(row) if row.user_name.as_deref() == user => Ok(row),
        _ => Err(no_such_key(op, id)),
    }
}

pub(super) async fn create(
    c: &Coordinator,
    authority: &Authority,
    r: CreateAccessKeyRequest,
) -> Result<Value, ApiError> {
    let user_name = owner(c, "CreateAccessKey", authority, r.user_name.as_deref()).await?;
    if let Some(u) = &user_name {
        let have = c.store.access_keys(Some(u)).await?.len();
        if have >= limits::ACCESS_KEYS_PER_USER {
            return Err(ApiError::new(
                "LimitExceeded",
                format!(
                    "CreateAccessKey: Cannot exceed quota for AccessKeysPerUser: {} (user {u} has {have})",
                    limits::ACCESS_KEYS_PER_USER
                ),
            ));
        }
    }
    let id = format!(
        "{}{}",
        limits::ACCESS_KEY_ID_PREFIX,
        random_string(
            ID_ALPHABET,
            limits::ACCESS_KEY_ID_LEN - limits::ACCESS_KEY_ID_PREFIX.len()
        )
    );
    let secret = random_string(SECRET_ALPHABET, limits::ACCESS_KEY_SECRET_LEN);
    let expires_ms = match &r.expires_in {
        Some(d) => Some(now_ms() + duration_ms("CreateAccessKey", "ExpiresIn", d)?),
        None => None,
    };
    let row = AccessKeyRow {
        secret_sealed: c.pki.seal(id.as_bytes(), secret.as_bytes()),
        access_key_id: id,
        created_ms: now_ms(),
        last_used_ms: None,
        user_name,
        status: "Active".into(),
        expires_ms,
    };
    if row.secret_sealed.is_empty() {
        return Err(ApiError::new(
            "InternalServerError",
            "could not seal the new secret",
        ));
    }
    c.store.insert_access_key(&row).await?;
    tracing::info!(access_key_id = %row.access_key_id, user = ?row.user_name, "access key created");
    let mut key = metadata(&row);
    key["UserName"] = json!(row.user_name.clone().unwrap_or_default());
    key["SecretAccessKey"] = json!(secret);
    if let Some(e) = row.expires_ms {
        key["Expiration"] = json!(iso_ms(e));
    }
    Ok(json!({ "AccessKey": key }))
}

pub(super) async fn update(
    c: &Coordinator,
    authority: &Authority,
    r: UpdateAccessKeyRequest,
) -> Result<Value, ApiError> {
    let op = "UpdateAccessKey";
    let user = owner(c, op, authority, r.user_name.as_deref()).await?;
    let row = owned_key(c, op, &r.access_key_id, user.as_deref()).await?;
    c.store
        .set_access_key_status(&row.access_key_id, &r.status)
        .await?;
    tracing::info!(access_key_id = %row.access_key_id, status = %r.status, "access key status changed");
    Ok(json!({}))
}

pub(super) async fn list(
    c: &Coordinator,
    authority: &Authority,
    r: ListAccessKeysRequest,
) -> Result<Value, ApiError> {
    let user = owner(c, "ListAccessKeys", authority, r.user_name.as_deref()).await?;
    let keys: Vec<Value> = c
        .store
        .access_keys(user.as_deref())
        .await?
        .iter()
        .map(|row| {
            let mut m = metadata(row);
            if let Some(e) = row.expires_ms {
                m["Expiration"] = json!(iso_ms(e));
            }
            m
        })
        .collect();
    Ok(json!({ "AccessKeyMetadata": keys, "IsTruncated": false }))
}

pub(super) async fn delete(
    c: &Coordinator,
    authority: &Authority,
    r: DeleteAccessKeyRequest,
) -> Result<Value, ApiError> {
    let op = "DeleteAccessKey";
    let user = owner(c, op, authority, r.user_name.as_deref()).await?;
    let row = owned_key(c, op, &r.access_key_id, user.as_deref()).await?;
    if !c.store.delete_access_key(&row.access_key_id).await? {
        return Err(no_such_key(op, &row.access_key_id));
    }
    tracing::info!(access_key_id = %row.access_key_id, "access key deleted");
    Ok(json!({}))
}

/// IAM's GetAccessKeyLastUsed: `N/A` for a key never used.
pub(super) async fn last_used(
    c: &Coordinator,
    r: GetAccessKeyLastUsedRequest,
) -> Result<Value, ApiError> {
    let op = "GetAccessKeyLastUsed";
    let row = c
        .store
        .access_key(&r.access_key_id)
        .await?
        .ok_or_else(|| no_such_key(op, &r.access_key_id))?;
    let used = match row.last_used_ms {
        Some(ms) => {
            json!({"LastUsedDate": iso_ms(ms), "ServiceName": "ssm", "Region": c.account.region})
        }
        None => json!({"ServiceName": "N/A", "Region": "N/A"}),
    };
    let mut v = json!({ "AccessKeyLastUsed": used });
    if let Some(u) = &row.user_name {
        v["UserName"] = json!(u);
    }
    Ok(v)
}
