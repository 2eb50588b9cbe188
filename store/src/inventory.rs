//! Associations, their per-instance status, and inventory with its history,
//! in SQLite. Plain rows in and out; no SSM shapes.
//!
//! An instance's inventory type is replaced only when its content hash
//! changes, and each new content is appended to `inventory_history` in the
//! same transaction, so the history holds every distinct state a node has
//! been in and nothing twice.

use sqlx::Row;

use super::sql;
use super::{Result, Store};

#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct AssociationRow {
    pub association_id: String,
    pub association_name: String,
    pub document_name: String,
    pub document_version: String,
    pub document_hash: String,
    pub document_content: String,
    pub association_version: i64,
    pub parameters_json: String,
    pub resolved_json: String,
    pub targets_json: String,
    pub instance_id: String,
    pub schedule_expression: String,
    #[sqlx(try_from = "super::IntFlag")]
    pub apply_only_at_cron_interval: bool,
    pub max_concurrency: String,
    pub max_errors: String,
    pub compliance_severity: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub last_execution_ms: Option<i64>,
    pub last_success_ms: Option<i64>,
    /// The ARN of the principal that created it or last updated it; empty
    /// for associations saved before this was recorded.
    pub requested_by: String,
}

#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct AssociationStatusRow {
    pub association_id: String,
    pub instance_id: String,
    pub association_version: String,
    pub status: String,
    pub detail: String,
    pub output: String,
    pub execution_ms: i64,
}

#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct InventoryRow {
    pub instance_id: String,
    pub type_name: String,
    pub schema_version: String,
    pub content_hash: String,
    pub capture_ms: i64,
    pub content_json: String,
}

/// What an agent sent for one type.
#[derive(Clone, Debug)]
pub enum InventoryPut {
    /// Full content.
    Content(InventoryRow),
    /// Only the hash: unchanged since the agent's last acknowledged upload.
    Unchanged {
        type_name: String,
        content_hash: String,
        capture_ms: i64,
    },
}

const ASSOCIATION_COLUMNS: &str = "association_id, association_name, document_name, \
    document_version, document_hash, document_content, association_version, parameters_json, \
    resolved_json, targets_json, instance_id, schedule_expression, apply_only_at_cron_interval, \
    max_concurrency, max_errors, compliance_severity, created_ms, updated_ms, last_execution_ms, \
    last_success_ms, requested_by";

impl Store {
    pub async fn insert_association(&self, a: &AssociationRow) -> Result<()> {
        sqlx::query(sql(self.dialect, format!(
            "INSERT INTO associations ({ASSOCIATION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        )))
        .bind(&a.association_id)
        .bind(&a.association_name)
        .bind(&a.document_name)
        .bind(&a.document_version)
        .bind(&a.document_hash)
        .bind(&a.document_content)
        .bind(a.association_version)
        .bind(&a.parameters_json)
        .bind(&a.resolved_json)
        .bind(&a.targets_json)
        .bind(&a.instance_id)
        .bind(&a.schedule_expression)
        .bind(i64::from(a.apply_only_at_cron_interval))
        .bind(&a.max_concurrency)
        .bind(&a.max_errors)
        .bind(&a.compliance_severity)
        .bind(a.created_ms)
        .bind(a.updated_ms)
        .bind(a.last_execution_ms)
        .bind(a.last_success_ms)
        .bind(&a.requested_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces an association's definition (its version already bumped).
    pub async fn update_association(&self, a: &AssociationRow) -> Result<bool> {
        let r = sqlx::query(sql(self.dialect, "UPDATE associations SET association_name = ?, document_name = ?, document_version = ?, \
             document_hash = ?, document_content = ?, association_version = ?, parameters_json = ?, \
             resolved_json = ?, targets_json = ?, schedule_expression = ?, \
             apply_only_at_cron_interval = ?, max_concurrency = ?, max_errors = ?, \
             compliance_severity = ?, updated_ms = ?, requested_by = ? WHERE association_id = ?"),
        )
        .bind(&a.association_name)
        .bind(&a.document_name)
        .bind(&a.document_version)
        .bind(&a.document_hash)
        .bind(&a.document_content)
        .bind(a.association_version)
        .bind(&a.parameters_json)
        .bind(&a.resolved_json)
        .bind(&a.targets_json)
        .bind(&a.schedule_expression)
        .bind(i64::from(a.apply_only_at_cron_interval))
        .bind(&a.max_concurrency)
        .bind(&a.max_errors)
        .bind(&a.compliance_severity)
        .bind(a.updated_ms)
        .bind(&a.requested_by)
        .bind(&a.association_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn association(&self, id: &str) -> Result<Option<AssociationRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!("SELECT {ASSOCIATION_COLUMNS} FROM associations WHERE association_id = ?"),
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every association, oldest first.
    pub async fn associations(&self) -> Result<Vec<AssociationRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!(
                "SELECT {ASSOCIATION_COLUMNS} FROM associations ORDER BY created_ms, association_id"
            ),
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_association(&self, id: &str) -> Result<bool> {
        let r = sqlx::query(sql(
            self.dialect,
            "DELETE FROM associations WHERE association_id = ?",
        ))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn association_statuses(
        &self,
        association_id: &str,
    ) -> Result<Vec<AssociationStatusRow>> {
        Ok(sqlx::query_as(sql(self.dialect, "SELECT association_id, instance_id, association_version, status, detail, output, execution_ms \
             FROM association_status WHERE association_id = ? ORDER BY instance_id"),
        )
        .bind(association_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn instance_association_statuses(
        &self,
        instance_id: &str,
    ) -> Result<Vec<AssociationStatusRow>> {
        Ok(sqlx::query_as(sql(self.dialect, "SELECT association_id, instance_id, association_version, status, detail, output, execution_ms \
             FROM association_status WHERE instance_id = ? ORDER BY association_id"),
        )
        .bind(instance_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a run's outcome (a later run replaces an earlier one; an
    /// older report arriving late does not).
    pub async fn record_association_run(&self, s: &AssociationStatusRow) -> Result<bool> {
        let mut tx = self.write().await?;
        let exists: Option<i64> = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT 1 FROM associations WHERE association_id = ?",
        ))
        .bind(&s.association_id)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Ok(false);
        }
        sqlx::query(sql(self.dialect, "INSERT INTO association_status (association_id, instance_id, association_version, status, detail, output, execution_ms) \
             VALUES (?,?,?,?,?,?,?) ON CONFLICT (association_id, instance_id) DO UPDATE SET \
             association_version = excluded.association_version, status = excluded.status, \
             detail = excluded.detail, output = excluded.output, execution_ms = excluded.execution_ms \
             WHERE excluded.execution_ms >= association_status.execution_ms"),
        )
        .bind(&s.association_id)
        .bind(&s.instance_id)
        .bind(&s.association_version)
        .bind(&s.status)
        .bind(&s.detail)
        .bind(&s.output)
        .bind(s.execution_ms)
        .execute(&mut *tx)
        .await?;
        let success = (s.status == "Success").then_some(s.execution_ms);
        sqlx::query(sql(self.dialect, "UPDATE associations SET last_execution_ms = GREATEST(COALESCE(last_execution_ms, 0), ?), \
             last_success_ms = CASE WHEN ? IS NULL THEN last_success_ms ELSE GREATEST(COALESCE(last_success_ms, 0), ?) END \
             WHERE association_id = ?"),
        )
        .bind(s.execution_ms)
        .bind(success)
        .bind(success)
        .bind(&s.association_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Stores one upload for an instance; returns the types sent as
    /// unchanged whose hash this store does not hold (ask for them in full).
    pub async fn put_inventory(
        &self,
        instance_id: &str,
        puts: &[InventoryPut],
    ) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        let mut tx = self.write().await?;
        for p in puts {
            match p {
                InventoryPut::Unchanged {
                    type_name,
                    content_hash,
                    capture_ms,
                } => {
                    let r = sqlx::query(sql(
                        self.dialect,
                        "UPDATE inventory SET capture_ms = GREATEST(capture_ms, ?) \
                         WHERE instance_id = ? AND type_name = ? AND content_hash = ?",
                    ))
                    .bind(capture_ms)
                    .bind(instance_id)
                    .bind(type_name)
                    .bind(content_hash)
                    .execute(&mut *tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        missing.push(type_name.clone());
                    }
                }
                InventoryPut::Content(row) => {
                    let current: Option<(String, i64)> = sqlx::query_as(sql(self.dialect, "SELECT content_hash, capture_ms FROM inventory WHERE instance_id = ? AND type_name = ?"),
                    )
                    .bind(instance_id)
                    .bind(&row.type_name)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match current {
                        // A late upload of an older capture changes nothing.
                        Some((_, at)) if at > row.capture_ms => continue,
                        Some((hash, _)) if hash == row.content_hash => {
                            sqlx::query(sql(self.dialect, "UPDATE inventory SET capture_ms = ? WHERE instance_id = ? AND type_name = ?"),
                            )
                            .bind(row.capture_ms)
                            .bind(instance_id)
                            .bind(&row.type_name)
                            .execute(&mut *tx)
                            .await?;
                            continue;
                        }
                        _ => {}
                    }
                    sqlx::query(sql(self.dialect, "INSERT INTO inventory (instance_id, type_name, schema_version, content_hash, capture_ms, content_json) \
                         VALUES (?,?,?,?,?,?) ON CONFLICT (instance_id, type_name) DO UPDATE SET \
                         schema_version = excluded.schema_version, content_hash = excluded.content_hash, \
                         capture_ms = excluded.capture_ms, content_json = excluded.content_json"),
                    )
                    .bind(instance_id)
                    .bind(&row.type_name)
                    .bind(&row.schema_version)
                    .bind(&row.content_hash)
                    .bind(row.capture_ms)
                    .bind(&row.content_json)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(sql(self.dialect, "INSERT INTO inventory_history (instance_id, type_name, content_hash, capture_ms, content_json) \
                         VALUES (?,?,?,?,?)"),
                    )
                    .bind(instance_id)
                    .bind(&row.type_name)
                    .bind(&row.content_hash)
                    .bind(row.capture_ms)
                    .bind(&row.content_json)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(missing)
    }

    /// Current inventory rows, optionally for one instance and/or one type.
    pub async fn inventory(
        &self,
        instance_id: Option<&str>,
        type_name: Option<&str>,
    ) -> Result<Vec<InventoryRow>> {
        Ok(sqlx::query_as(sql(self.dialect, "SELECT instance_id, type_name, schema_version, content_hash, capture_ms, content_json FROM inventory \
             WHERE (?1 IS NULL OR instance_id = ?1) AND (?2 IS NULL OR type_name = ?2) \
             ORDER BY instance_id, type_name"),
        )
        .bind(instance_id)
        .bind(type_name)
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many distinct contents have been stored for (instance, type).
    pub async fn inventory_versions(&self, instance_id: &str, type_name: &str) -> Result<i64> {
        let row = sqlx::query(sql(
            self.dialect,
            "SELECT COUNT(*) AS n FROM inventory_history WHERE instance_id = ? AND type_name = ?",
        ))
        .bind(instance_id)
        .bind(type_name)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Every distinct content captured after `after_ms` up to `to_ms`, by
    /// type, oldest first (what each capture changed, with
    /// [`Store::inventory_at`] of `after_ms` before them).
    pub async fn inventory_between(
        &self,
        instance_id: &str,
        after_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<InventoryRow>> {
        Ok(sqlx::query_as(sql(self.dialect, "SELECT instance_id, type_name, '' AS schema_version, content_hash, capture_ms, content_json \
             FROM inventory_history WHERE instance_id = ? AND capture_ms > ? AND capture_ms <= ? \
             ORDER BY type_name, capture_ms, seq"),
        )
        .bind(instance_id)
        .bind(after_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The content each type had at `at_ms` (the last capture at or before it).
    pub async fn inventory_at(&self, instance_id: &str, at_ms: i64) -> Result<Vec<InventoryRow>> {
        Ok(sqlx::query_as(sql(self.dialect, "SELECT h.instance_id, h.type_name, '' AS schema_version, h.content_hash, h.capture_ms, h.content_json \
             FROM inventory_history h WHERE h.instance_id = ?1 AND h.seq = ( \
               SELECT h2.seq FROM inventory_history h2 WHERE h2.instance_id = ?1 AND h2.type_name = h.type_name \
               AND h2.capture_ms <= ?2 ORDER BY h2.capture_ms DESC, h2.seq DESC LIMIT 1) \
             ORDER BY h.type_name"),
        )
        .bind(instance_id)
        .bind(at_ms)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::store;

    fn content(t: &str, hash: &str, at: i64, json: &str) -> InventoryPut {
        InventoryPut::Content(InventoryRow {
            instance_id: "mi-1".into(),
            type_name: t.into(),
            schema_version: "1.0".into(),
            content_hash: hash.into(),
            capture_ms: at,
            content_json: json.into(),
        })
    }

    fn unchanged(t: &str, hash: &str, at: i64) -> InventoryPut {
        InventoryPut::Unchanged {
            type_name: t.into(),
            content_hash: hash.into(),
            capture_ms: at,
        }
    }

    #[tokio::test]
    async fn inventory_keeps_each_distinct_content_once_and_asks_for_what_it_lacks() {
        let (_d, s) = store().await;
        let missing = s
            .put_inventory(
                "mi-1",
                &[content("Custom:A", "h1", 1_000, r#"[{"V":"1"}]"#)],
            )
            .await
            .unwrap();
        assert!(missing.is_empty());
        // Same content again, and hash-only: no new history, newer capture time.
        s.put_inventory(
            "mi-1",
            &[content("Custom:A", "h1", 2_000, r#"[{"V":"1"}]"#)],
        )
        .await
        .unwrap();
        let missing = s
            .put_inventory("mi-1", &[unchanged("Custom:A", "h1", 3_000)])
            .await
            .unwrap();
        assert!(missing.is_empty());
        assert_eq!(s.inventory_versions("mi-1", "Custom:A").await.unwrap(), 1);
        assert_eq!(
            s.inventory(Some("mi-1"), None).await.unwrap()[0].capture_ms,
            3_000
        );
        // A hash the store does not hold, or a type it never saw: ask for them.
        let missing = s
            .put_inventory(
                "mi-1",
                &[
                    unchanged("Custom:A", "h-other", 4_000),
                    unchanged("Custom:B", "x", 4_000),
                ],
            )
            .await
            .unwrap();
        assert_eq!(missing, ["Custom:A", "Custom:B"]);
        // A change is kept; an older capture arriving late changes nothing.
        s.put_inventory(
            "mi-1",
            &[content("Custom:A", "h2", 5_000, r#"[{"V":"2"}]"#)],
        )
        .await
        .unwrap();
        s.put_inventory("mi-1", &[content("Custom:A", "h0", 900, r#"[{"V":"0"}]"#)])
            .await
            .unwrap();
        assert_eq!(s.inventory_versions("mi-1", "Custom:A").await.unwrap(), 2);
        let now = s.inventory(Some("mi-1"), Some("Custom:A")).await.unwrap();
        assert_eq!(now[0].content_hash, "h2");
        // The content at a time is the last capture at or before it.
        assert_eq!(
            s.inventory_at("mi-1", 4_999).await.unwrap()[0].content_hash,
            "h1"
        );
        assert_eq!(
            s.inventory_at("mi-1", 5_000).await.unwrap()[0].content_hash,
            "h2"
        );
        assert!(s.inventory_at("mi-1", 999).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn association_runs_keep_the_latest_and_vanish_with_the_association() {
        let (_d, s) = store().await;
        let mut a = AssociationRow {
            association_id: "a1".into(),
            document_name: "AWS-GatherSoftwareInventory".into(),
            requested_by: "arn:aws:iam::123456789012:user/alice".into(),
            ..Default::default()
        };
        s.insert_association(&a).await.unwrap();
        let back = s.association("a1").await.unwrap().unwrap();
        assert_eq!(back.requested_by, a.requested_by);
        // An update records who made it: the runs act for them now.
        a.requested_by = "arn:aws:iam::123456789012:user/bob".into();
        a.association_version = 2;
        assert!(s.update_association(&a).await.unwrap());
        let back = s.association("a1").await.unwrap().unwrap();
        assert_eq!(
            (back.requested_by.as_str(), back.association_version),
            ("arn:aws:iam::123456789012:user/bob", 2)
        );
        let run = |status: &str, at: i64| AssociationStatusRow {
            association_id: "a1".into(),
            instance_id: "mi-1".into(),
            association_version: "1".into(),
            status: status.into(),
            detail: String::new(),
            output: String::new(),
            execution_ms: at,
        };
        assert!(
            s.record_association_run(&run("Failed", 2_000))
                .await
                .unwrap()
        );
        assert!(
            s.record_association_run(&run("Success", 1_000))
                .await
                .unwrap()
        );
        let st = s.association_statuses("a1").await.unwrap();
        assert_eq!(st[0].status, "Failed", "a late, older run does not win");
        let a = s.association("a1").await.unwrap().unwrap();
        assert_eq!(
            (a.last_execution_ms, a.last_success_ms),
            (Some(2_000), Some(1_000))
        );
        assert!(s.delete_association("a1").await.unwrap());
        assert!(s.association_statuses("a1").await.unwrap().is_empty());
        assert!(
            !s.record_association_run(&run("Success", 3_000))
                .await
                .unwrap()
        );
    }
}
