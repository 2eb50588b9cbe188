//! The `access_keys` table: SigV4 keys for the SSM-compatible HTTP API, each
//! the root principal's (`user_name` NULL) or a user's. The store keeps only
//! the sealed secret; sealing and opening are `pki`'s.

use super::sql;
use super::{Result, Store};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AccessKeyRow {
    pub access_key_id: String,
    pub secret_sealed: Vec<u8>,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
    /// The owner; `None`: the root principal.
    pub user_name: Option<String>,
    /// `Active` or `Inactive`.
    pub status: String,
    /// After this the key is refused.
    pub expires_ms: Option<i64>,
}

const COLUMNS: &str =
    "access_key_id, secret_sealed, created_ms, last_used_ms, user_name, status, expires_ms";

impl Store {
    pub async fn insert_access_key(&self, row: &AccessKeyRow) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            format!("INSERT INTO access_keys ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
        ))
        .bind(&row.access_key_id)
        .bind(&row.secret_sealed)
        .bind(row.created_ms)
        .bind(row.last_used_ms)
        .bind(&row.user_name)
        .bind(&row.status)
        .bind(row.expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The keys of `user_name` (`None`: root's), oldest first.
    pub async fn access_keys(&self, user_name: Option<&str>) -> Result<Vec<AccessKeyRow>> {
        let text = match user_name {
            Some(_) => format!(
                "SELECT {COLUMNS} FROM access_keys WHERE user_name = ? ORDER BY created_ms, access_key_id"
            ),
            None => format!(
                "SELECT {COLUMNS} FROM access_keys WHERE user_name IS NULL ORDER BY created_ms, access_key_id"
            ),
        };
        let q = sqlx::query_as(sql(self.dialect, text));
        let q = match user_name {
            Some(u) => q.bind(u.to_string()),
            None => q,
        };
        Ok(q.fetch_all(&self.pool).await?)
    }

    pub async fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!("SELECT {COLUMNS} FROM access_keys WHERE access_key_id = ?"),
        ))
        .bind(access_key_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Whether a key was deleted.
    pub async fn delete_access_key(&self, access_key_id: &str) -> Result<bool> {
        let done = sqlx::query(sql(
            self.dialect,
            "DELETE FROM access_keys WHERE access_key_id = ?",
        ))
        .bind(access_key_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets a key's status; whether the key exists.
    pub async fn set_access_key_status(&self, access_key_id: &str, status: &str) -> Result<bool> {
        let done = sqlx::query(sql(
            self.dialect,
            "UPDATE access_keys SET status = ? WHERE access_key_id = ?",
        ))
        .bind(status)
        .bind(access_key_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn touch_access_key(&self, access_key_id: &str, now_ms: i64) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            "UPDATE access_keys SET last_used_ms = ? WHERE access_key_id = ?",
        ))
        .bind(now_ms)
        .bind(access_key_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
