//! Stored Command documents and their versions. Plain rows; what a document
//! means and how it is shown is the action layer's business.

use super::sql;
use super::{Result, Store};

/// One version of a document.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DocumentVersionRow {
    pub name: String,
    pub version: i64,
    pub version_name: Option<String>,
    pub content: String,
    pub format: String,
    pub hash: String,
    pub document_type: String,
    pub schema_version: String,
    pub description: String,
    pub target_type: Option<String>,
    pub created_ms: i64,
}

/// A document's head: which versions are default and latest, and its tags.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DocumentRow {
    pub name: String,
    pub default_version: i64,
    pub latest_version: i64,
    pub created_ms: i64,
    pub tags_json: String,
}

const VERSION_COLUMNS: &str = "name, version, version_name, content, format, hash, \
    document_type, schema_version, description, target_type, created_ms";

/// Why a new version was not stored.
#[derive(Debug, PartialEq, Eq)]
pub enum VersionConflict {
    /// The document does not exist (any more).
    Missing,
    /// Someone else added a version first; the latest is now this one.
    NotLatest(i64),
    /// Another version already carries this version name.
    VersionNameTaken,
}

impl Store {
    /// Creates a document with its version 1; false if the name is taken.
    pub async fn create_document(&self, v: &DocumentVersionRow, tags_json: &str) -> Result<bool> {
        let mut tx = self.write().await?;
        let created = sqlx::query(sql(
            self.dialect,
            "INSERT INTO documents (name, default_version, latest_version, created_ms, tags_json) \
             VALUES (?, 1, 1, ?, ?) ON CONFLICT DO NOTHING",
        ))
        .bind(&v.name)
        .bind(v.created_ms)
        .bind(tags_json)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !created {
            return Ok(false);
        }
        insert_version(&mut tx, v).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Adds `v` as the version after `expected_latest`, in one transaction.
    pub async fn add_document_version(
        &self,
        v: &DocumentVersionRow,
        expected_latest: i64,
    ) -> Result<Result<(), VersionConflict>> {
        let mut tx = self.write().await?;
        let latest: Option<i64> = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT latest_version FROM documents WHERE name = ?",
        ))
        .bind(&v.name)
        .fetch_optional(&mut *tx)
        .await?;
        match latest {
            None => return Ok(Err(VersionConflict::Missing)),
            Some(l) if l != expected_latest || v.version != l + 1 => {
                return Ok(Err(VersionConflict::NotLatest(l)));
            }
            Some(_) => {}
        }
        if let Some(vn) = &v.version_name {
            let taken: Option<i64> = sqlx::query_scalar(sql(
                self.dialect,
                "SELECT version FROM document_versions WHERE name = ? AND version_name = ?",
            ))
            .bind(&v.name)
            .bind(vn)
            .fetch_optional(&mut *tx)
            .await?;
            if taken.is_some() {
                return Ok(Err(VersionConflict::VersionNameTaken));
            }
        }
        insert_version(&mut tx, v).await?;
        sqlx::query(sql(
            self.dialect,
            "UPDATE documents SET latest_version = ? WHERE name = ?",
        ))
        .bind(v.version)
        .bind(&v.name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    pub async fn document(&self, name: &str) -> Result<Option<DocumentRow>> {
        Ok(sqlx::query_as(sql(self.dialect, "SELECT name, default_version, latest_version, created_ms, tags_json FROM documents WHERE name = ?"),
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every stored document with its default version, by name.
    pub async fn documents(&self) -> Result<Vec<(DocumentRow, DocumentVersionRow)>> {
        let heads: Vec<DocumentRow> = sqlx::query_as(sql(self.dialect, "SELECT name, default_version, latest_version, created_ms, tags_json FROM documents ORDER BY name"),
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(heads.len());
        for head in heads {
            if let Some(v) = self
                .document_version(&head.name, head.default_version)
                .await?
            {
                out.push((head, v));
            }
        }
        Ok(out)
    }

    pub async fn document_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<DocumentVersionRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!(
                "SELECT {VERSION_COLUMNS} FROM document_versions WHERE name = ? AND version = ?"
            ),
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn document_version_named(
        &self,
        name: &str,
        version_name: &str,
    ) -> Result<Option<DocumentVersionRow>> {
        Ok(sqlx::query_as(sql(self.dialect, format!(
            "SELECT {VERSION_COLUMNS} FROM document_versions WHERE name = ? AND version_name = ?"
        )))
        .bind(name)
        .bind(version_name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// All versions of a document, newest first.
    pub async fn document_versions(&self, name: &str) -> Result<Vec<DocumentVersionRow>> {
        Ok(sqlx::query_as(sql(self.dialect, format!(
            "SELECT {VERSION_COLUMNS} FROM document_versions WHERE name = ? ORDER BY version DESC"
        )))
        .bind(name)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes an existing version the default; false if there is no such version.
    pub async fn set_default_document_version(&self, name: &str, version: i64) -> Result<bool> {
        let r = sqlx::query(sql(
            self.dialect,
            "UPDATE documents SET default_version = ? WHERE name = ? \
             AND EXISTS (SELECT 1 FROM document_versions WHERE name = ? AND version = ?)",
        ))
        .bind(version)
        .bind(name)
        .bind(name)
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Deletes a document and all its versions; false if it did not exist.
    pub async fn delete_document(&self, name: &str) -> Result<bool> {
        let mut tx = self.write().await?;
        sqlx::query(sql(
            self.dialect,
            "DELETE FROM document_versions WHERE name = ?",
        ))
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query(sql(self.dialect, "DELETE FROM documents WHERE name = ?"))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Deletes one version that is not the default; false if it did not exist.
    pub async fn delete_document_version(&self, name: &str, version: i64) -> Result<bool> {
        let mut tx = self.write().await?;
        let r = sqlx::query(sql(
            self.dialect,
            "DELETE FROM document_versions WHERE name = ? AND version = ? \
             AND version <> (SELECT default_version FROM documents WHERE name = ?)",
        ))
        .bind(name)
        .bind(version)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        // The latest version is the highest one left.
        sqlx::query(sql(
            self.dialect,
            "UPDATE documents SET latest_version = \
             (SELECT MAX(version) FROM document_versions WHERE name = ?) WHERE name = ?",
        ))
        .bind(name)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_document_tags(&self, name: &str, tags_json: &str) -> Result<bool> {
        let r = sqlx::query(sql(
            self.dialect,
            "UPDATE documents SET tags_json = ? WHERE name = ?",
        ))
        .bind(tags_json)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    v: &DocumentVersionRow,
) -> Result<()> {
    let d = super::Dialect::of(tx);
    sqlx::query(sql(
        d,
        format!("INSERT INTO document_versions ({VERSION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"),
    ))
    .bind(&v.name)
    .bind(v.version)
    .bind(&v.version_name)
    .bind(&v.content)
    .bind(&v.format)
    .bind(&v.hash)
    .bind(&v.document_type)
    .bind(&v.schema_version)
    .bind(&v.description)
    .bind(&v.target_type)
    .bind(v.created_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
