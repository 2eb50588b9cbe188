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

    /// Records a SigV4 signature (its hash) as used until `expires_ms`; false
    /// when it was already recorded — the request is a replay (or a
    /// concurrent twin). One atomic insert, so of two identical requests on
    /// any replicas exactly one gets true.
    pub async fn claim_signature(&self, signature_hash: &str, expires_ms: i64) -> Result<bool> {
        let done = sqlx::query(sql(
            self.dialect,
            "INSERT INTO sigv4_signatures (signature_hash, expires_ms) VALUES (?, ?) \
             ON CONFLICT (signature_hash) DO NOTHING",
        ))
        .bind(signature_hash)
        .bind(expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets a claimed signature (its request failed: sent again, it may
    /// still take effect once).
    pub async fn release_signature(&self, signature_hash: &str) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            "DELETE FROM sigv4_signatures WHERE signature_hash = ?",
        ))
        .bind(signature_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Drops signatures no replay could use any more; how many.
    pub async fn prune_signatures(&self, now_ms: i64) -> Result<u64> {
        let done = sqlx::query(sql(
            self.dialect,
            "DELETE FROM sigv4_signatures WHERE expires_ms <= ?",
        ))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::store;

    #[tokio::test]
    async fn a_signature_is_claimed_once_until_it_expires() {
        let (_d, s) = store().await;
        s.check().await.unwrap();
        assert!(s.claim_signature("h1", 10_000).await.unwrap());
        assert!(!s.claim_signature("h1", 10_000).await.unwrap(), "a replay");
        assert!(s.claim_signature("h2", 20_000).await.unwrap());
        s.release_signature("h2").await.unwrap();
        assert!(
            s.claim_signature("h2", 20_000).await.unwrap(),
            "released: once more"
        );
        assert_eq!(s.prune_signatures(10_000).await.unwrap(), 1);
        assert!(s.claim_signature("h1", 30_000).await.unwrap());
    }
}
