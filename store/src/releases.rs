//! Agent releases (`agent_releases`, their bytes in `agent_release_parts`)
//! and the fleet's target version (`agent_target_version`). A release is
//! uploaded in parts, appended in order; the coordinator checks the whole
//! against its announced size and SHA-256 and only then stores the signed
//! manifest and marks it `Available`. No key is here: the release key lives
//! in the secrets directory.

use super::sql;
use super::{Result, Store};
use sqlx::Row;

/// A release still receiving its bytes.
pub const RELEASE_UPLOADING: &str = "Uploading";
/// A release whole, checked and signed: agents may install it.
pub const RELEASE_AVAILABLE: &str = "Available";

/// One agent release.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ReleaseRow {
    pub version: String,
    pub platform: String,
    pub size: i64,
    /// Lowercase hex.
    pub sha256: String,
    pub received: i64,
    /// [`RELEASE_UPLOADING`] or [`RELEASE_AVAILABLE`].
    pub status: String,
    /// The encoded `ReleaseManifest` and the release key's signature, once
    /// available.
    pub manifest: Option<Vec<u8>>,
    pub signature: Option<Vec<u8>>,
    pub uploaded_ms: i64,
    /// The ARN of the principal that added it.
    pub uploaded_by: String,
}

/// What appending a part did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartOutcome {
    /// Stored: this many bytes are now held.
    Stored { received: i64 },
    /// No release of this version and platform is being uploaded.
    NotUploading,
    /// The part does not start where the bytes held end (`received`).
    WrongOffset { received: i64 },
}

const COLUMNS: &str = "version, platform, size, sha256, received, status, manifest, signature, \
                       uploaded_ms, uploaded_by";

impl Store {
    /// The release of `version` for `platform`.
    pub async fn release(&self, version: &str, platform: &str) -> Result<Option<ReleaseRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!("SELECT {COLUMNS} FROM agent_releases WHERE version = ? AND platform = ?"),
        ))
        .bind(version)
        .bind(platform)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every release, newest upload first.
    pub async fn releases(&self) -> Result<Vec<ReleaseRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!(
                "SELECT {COLUMNS} FROM agent_releases ORDER BY uploaded_ms DESC, version, platform"
            ),
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Starts (or starts over) the upload of `row` (its `received` and
    /// status are ignored): any bytes an unfinished upload of the same
    /// version and platform held are dropped. `Ok(false)` when that release
    /// is already available, or when `max_releases` are kept.
    pub async fn begin_release(&self, row: &ReleaseRow, max_releases: i64) -> Result<bool> {
        let mut tx = self.write().await?;
        let held: Option<String> = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT status FROM agent_releases WHERE version = ? AND platform = ?",
        ))
        .bind(&row.version)
        .bind(&row.platform)
        .fetch_optional(&mut *tx)
        .await?;
        match held.as_deref() {
            Some(RELEASE_AVAILABLE) => return Ok(false),
            Some(_) => {
                for table in ["agent_release_parts", "agent_releases"] {
                    sqlx::query(sql(
                        self.dialect,
                        format!("DELETE FROM {table} WHERE version = ? AND platform = ?"),
                    ))
                    .bind(&row.version)
                    .bind(&row.platform)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            None => {
                let count: i64 =
                    sqlx::query_scalar(sql(self.dialect, "SELECT COUNT(*) FROM agent_releases"))
                        .fetch_one(&mut *tx)
                        .await?;
                if count >= max_releases {
                    return Ok(false);
                }
            }
        }
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO agent_releases (version, platform, size, sha256, received, status, \
             uploaded_ms, uploaded_by) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
        ))
        .bind(&row.version)
        .bind(&row.platform)
        .bind(row.size)
        .bind(&row.sha256)
        .bind(RELEASE_UPLOADING)
        .bind(row.uploaded_ms)
        .bind(&row.uploaded_by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Appends `data` at `offset` to a release being uploaded.
    pub async fn append_release_part(
        &self,
        version: &str,
        platform: &str,
        offset: i64,
        data: &[u8],
    ) -> Result<PartOutcome> {
        let mut tx = self.write().await?;
        let held = sqlx::query(sql(
            self.dialect,
            "SELECT received, status FROM agent_releases WHERE version = ? AND platform = ?",
        ))
        .bind(version)
        .bind(platform)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(held) = held else {
            return Ok(PartOutcome::NotUploading);
        };
        let received: i64 = held.try_get("received")?;
        let status: String = held.try_get("status")?;
        if status != RELEASE_UPLOADING {
            return Ok(PartOutcome::NotUploading);
        }
        if received != offset {
            return Ok(PartOutcome::WrongOffset { received });
        }
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO agent_release_parts (version, platform, part_offset, data) VALUES (?, ?, ?, ?)",
        ))
        .bind(version)
        .bind(platform)
        .bind(offset)
        .bind(data)
        .execute(&mut *tx)
        .await?;
        let received = offset + data.len() as i64;
        sqlx::query(sql(
            self.dialect,
            "UPDATE agent_releases SET received = ? WHERE version = ? AND platform = ?",
        ))
        .bind(received)
        .bind(version)
        .bind(platform)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PartOutcome::Stored { received })
    }

    /// The stored part that holds byte `offset` of a release: where it
    /// starts and its bytes (`None` past the end).
    pub async fn release_part_at(
        &self,
        version: &str,
        platform: &str,
        offset: i64,
    ) -> Result<Option<(i64, Vec<u8>)>> {
        let row = sqlx::query(sql(
            self.dialect,
            "SELECT part_offset, data FROM agent_release_parts WHERE version = ? AND platform = ? \
             AND part_offset <= ? ORDER BY part_offset DESC LIMIT 1",
        ))
        .bind(version)
        .bind(platform)
        .bind(offset)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let start: i64 = row.try_get("part_offset")?;
        let data: Vec<u8> = row.try_get("data")?;
        if offset >= start + data.len() as i64 {
            return Ok(None);
        }
        Ok(Some((start, data)))
    }

    /// Marks a whole, checked release available with its signed manifest.
    /// `false` when it is no longer being uploaded.
    pub async fn finish_release(
        &self,
        version: &str,
        platform: &str,
        manifest: &[u8],
        signature: &[u8],
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(sql(
            self.dialect,
            "UPDATE agent_releases SET status = ?, manifest = ?, signature = ? \
             WHERE version = ? AND platform = ? AND status = ? AND received = size",
        ))
        .bind(RELEASE_AVAILABLE)
        .bind(manifest)
        .bind(signature)
        .bind(version)
        .bind(platform)
        .bind(RELEASE_UPLOADING)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(done)
    }

    /// Deletes a release and its bytes; `false` when there was none.
    pub async fn delete_release(&self, version: &str, platform: &str) -> Result<bool> {
        let mut tx = self.write().await?;
        sqlx::query(sql(
            self.dialect,
            "DELETE FROM agent_release_parts WHERE version = ? AND platform = ?",
        ))
        .bind(version)
        .bind(platform)
        .execute(&mut *tx)
        .await?;
        let gone = sqlx::query(sql(
            self.dialect,
            "DELETE FROM agent_releases WHERE version = ? AND platform = ?",
        ))
        .bind(version)
        .bind(platform)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(gone)
    }

    /// The fleet's target version, if one is set.
    pub async fn target_version(&self) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(sql(
            self.dialect,
            "SELECT version FROM agent_target_version WHERE id = 1",
        ))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Makes `version` the fleet's target.
    pub async fn set_target_version(&self, version: &str, now_ms: i64, by: &str) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO agent_target_version (id, version, set_ms, set_by) VALUES (1, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, set_ms = excluded.set_ms, \
             set_by = excluded.set_by",
        ))
        .bind(version)
        .bind(now_ms)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::store;

    fn row(version: &str, size: i64) -> ReleaseRow {
        ReleaseRow {
            version: version.into(),
            platform: "linux-x86_64".into(),
            size,
            sha256: "ab".repeat(32),
            received: 0,
            status: String::new(),
            manifest: None,
            signature: None,
            uploaded_ms: 1,
            uploaded_by: "arn:aws:iam::123456789012:root".into(),
        }
    }

    #[tokio::test]
    async fn a_release_is_uploaded_in_order_read_by_offset_and_signed_once_whole() {
        let (_d, s) = store().await;
        let p = "linux-x86_64";
        assert!(s.begin_release(&row("1.0.0", 5), 10).await.unwrap());
        assert_eq!(
            s.append_release_part("1.0.0", p, 2, b"xyz").await.unwrap(),
            PartOutcome::WrongOffset { received: 0 }
        );
        assert_eq!(
            s.append_release_part("1.0.0", p, 0, b"ab").await.unwrap(),
            PartOutcome::Stored { received: 2 }
        );
        // Not whole yet: it cannot be made available.
        assert!(!s.finish_release("1.0.0", p, b"m", b"s").await.unwrap());
        assert_eq!(
            s.append_release_part("1.0.0", p, 2, b"cde").await.unwrap(),
            PartOutcome::Stored { received: 5 }
        );
        assert_eq!(
            s.release_part_at("1.0.0", p, 3).await.unwrap(),
            Some((2, b"cde".to_vec()))
        );
        assert_eq!(
            s.release_part_at("1.0.0", p, 0).await.unwrap(),
            Some((0, b"ab".to_vec()))
        );
        assert_eq!(s.release_part_at("1.0.0", p, 5).await.unwrap(), None);
        assert!(s.finish_release("1.0.0", p, b"m", b"s").await.unwrap());
        let r = s.release("1.0.0", p).await.unwrap().unwrap();
        assert_eq!(r.status, RELEASE_AVAILABLE);
        assert_eq!(r.manifest.as_deref(), Some(&b"m"[..]));
        // An available release is never replaced or appended to.
        assert!(!s.begin_release(&row("1.0.0", 5), 10).await.unwrap());
        assert_eq!(
            s.append_release_part("1.0.0", p, 5, b"f").await.unwrap(),
            PartOutcome::NotUploading
        );
        // An unfinished upload starts over; the count is bounded.
        assert!(s.begin_release(&row("2.0.0", 3), 10).await.unwrap());
        s.append_release_part("2.0.0", p, 0, b"q").await.unwrap();
        assert!(s.begin_release(&row("2.0.0", 3), 10).await.unwrap());
        assert_eq!(s.release_part_at("2.0.0", p, 0).await.unwrap(), None);
        assert!(!s.begin_release(&row("3.0.0", 3), 2).await.unwrap());
        assert_eq!(s.releases().await.unwrap().len(), 2);

        assert_eq!(s.target_version().await.unwrap(), None);
        s.set_target_version("1.0.0", 2, "me").await.unwrap();
        s.set_target_version("2.0.0", 3, "me").await.unwrap();
        assert_eq!(s.target_version().await.unwrap().as_deref(), Some("2.0.0"));
        assert!(s.delete_release("1.0.0", p).await.unwrap());
        assert!(!s.delete_release("1.0.0", p).await.unwrap());
        assert_eq!(s.release_part_at("1.0.0", p, 0).await.unwrap(), None);
    }
}
