//! The `access_keys` table: SigV4 keys for the SSM-compatible HTTP API. The
//! store keeps only the sealed secret; sealing and opening are `pki`'s.

use super::sql;
use super::{Result, Store};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AccessKeyRow {
    pub access_key_id: String,
    pub secret_sealed: Vec<u8>,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

impl Store {
    pub async fn insert_access_key(&self, row: &AccessKeyRow) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO access_keys (access_key_id, secret_sealed, created_ms, last_used_ms) \
             VALUES (?, ?, ?, ?)",
        ))
        .bind(&row.access_key_id)
        .bind(&row.secret_sealed)
        .bind(row.created_ms)
        .bind(row.last_used_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every key, oldest first.
    pub async fn access_keys(&self) -> Result<Vec<AccessKeyRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            "SELECT access_key_id, secret_sealed, created_ms, last_used_ms FROM access_keys \
             ORDER BY created_ms, access_key_id",
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            "SELECT access_key_id, secret_sealed, created_ms, last_used_ms FROM access_keys \
             WHERE access_key_id = ?",
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
