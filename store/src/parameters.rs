//! Parameter Store: `parameters` (one row per parameter: its latest version
//! and tags), `parameter_versions` (every kept version), `parameter_labels`
//! (a label names one version), and the names and check values of the
//! key-encryption keys (`parameter_keys`, `parameter_key_generations`).
//!
//! A SecureString version is stored as the coordinator sealed it: the value
//! under a data key, the data key wrapped under a key-encryption key named by
//! `key_id` and `key_generation`. This module never sees a secret in clear
//! and no key material: the keys live in the secrets directory.

use super::sql;
use super::{Result, Store};

/// One stored version of a parameter.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ParameterVersionRow {
    pub name: String,
    pub version: i64,
    /// `String`, `StringList` or `SecureString`.
    pub kind: String,
    pub data_type: String,
    pub tier: String,
    pub description: Option<String>,
    pub allowed_pattern: Option<String>,
    /// The value of a `String` or `StringList`; `None` for a `SecureString`.
    pub value: Option<String>,
    /// SecureString: the key-encryption key's name and generation, the
    /// wrapped data key and the ciphertext (both base64, nonce first).
    pub key_id: Option<String>,
    pub key_generation: Option<i64>,
    pub data_key: Option<String>,
    pub ciphertext: Option<String>,
    pub modified_ms: i64,
    /// The ARN of the principal that stored this version.
    pub modified_by: String,
}

/// A parameter's latest version with its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterRow {
    pub latest: ParameterVersionRow,
    pub tags_json: String,
}

/// What PutParameter did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Stored {
        version: i64,
    },
    /// It exists and Overwrite was not given.
    AlreadyExists,
    /// Someone else stored a version since the caller read `expected`.
    Raced,
    /// 100 versions are kept and the oldest has a label.
    OldestLabelled {
        version: i64,
        labels: Vec<String>,
    },
    /// Storing a new parameter would pass the account's limit.
    TooManyParameters,
}

/// What LabelParameterVersion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelOutcome {
    Labelled,
    NoSuchParameter,
    NoSuchVersion,
    /// The version would carry more than the limit.
    TooMany {
        count: usize,
    },
}

/// One data key to re-wrap in a rotation.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct WrappedKeyRow {
    pub name: String,
    pub version: i64,
    pub key_generation: i64,
    pub data_key: String,
}

/// A key-encryption key's name and state (never its material).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ParameterKeyRow {
    pub key_id: String,
    pub description: String,
    pub generation: i64,
    pub created_ms: i64,
    pub rotated_ms: Option<i64>,
}

const VERSION_COLUMNS: &str = "name, version, kind, data_type, tier, description, allowed_pattern, \
     value, key_id, key_generation, data_key, ciphertext, modified_ms, modified_by";

/// `VERSION_COLUMNS` on the table aliased `v`.
fn v_columns() -> String {
    VERSION_COLUMNS
        .split(", ")
        .map(|c| format!("v.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `text` as a LIKE pattern matching itself (with `\` as the escape).
fn like_prefix(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Store {
    /// Stores `v` as the parameter's next version. `expected` is the latest
    /// version the caller read (None: it read none), so a value sealed for
    /// version N is never stored as another; `tags_json` is kept only when
    /// the parameter is created. At `max_versions`, the oldest version goes
    /// unless it has a label.
    pub async fn put_parameter(
        &self,
        v: &ParameterVersionRow,
        expected: Option<i64>,
        overwrite: bool,
        tags_json: &str,
        max_versions: i64,
        max_parameters: i64,
    ) -> Result<PutOutcome> {
        let mut tx = self.write().await?;
        let latest: Option<i64> = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT version FROM parameters WHERE name = ?",
        ))
        .bind(&v.name)
        .fetch_optional(&mut *tx)
        .await?;
        if latest.is_some() && !overwrite {
            return Ok(PutOutcome::AlreadyExists);
        }
        if latest != expected || v.version != expected.unwrap_or(0) + 1 {
            return Ok(PutOutcome::Raced);
        }
        if latest.is_none() {
            let count: i64 =
                sqlx::query_scalar(sql(self.dialect, "SELECT COUNT(*) FROM parameters"))
                    .fetch_one(&mut *tx)
                    .await?;
            if count >= max_parameters {
                return Ok(PutOutcome::TooManyParameters);
            }
        }
        let kept: Vec<i64> = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT version FROM parameter_versions WHERE name = ? ORDER BY version",
        ))
        .bind(&v.name)
        .fetch_all(&mut *tx)
        .await?;
        if kept.len() as i64 >= max_versions
            && let Some(&oldest) = kept.first()
        {
            let labels: Vec<String> = sqlx::query_scalar(sql(
                self.dialect,
                "SELECT label FROM parameter_labels WHERE name = ? AND version = ? ORDER BY label",
            ))
            .bind(&v.name)
            .bind(oldest)
            .fetch_all(&mut *tx)
            .await?;
            if !labels.is_empty() {
                return Ok(PutOutcome::OldestLabelled {
                    version: oldest,
                    labels,
                });
            }
            sqlx::query(sql(
                self.dialect,
                "DELETE FROM parameter_versions WHERE name = ? AND version = ?",
            ))
            .bind(&v.name)
            .bind(oldest)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(sql(
            self.dialect,
            format!(
                "INSERT INTO parameter_versions ({VERSION_COLUMNS}) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
        ))
        .bind(&v.name)
        .bind(v.version)
        .bind(&v.kind)
        .bind(&v.data_type)
        .bind(&v.tier)
        .bind(&v.description)
        .bind(&v.allowed_pattern)
        .bind(&v.value)
        .bind(&v.key_id)
        .bind(v.key_generation)
        .bind(&v.data_key)
        .bind(&v.ciphertext)
        .bind(v.modified_ms)
        .bind(&v.modified_by)
        .execute(&mut *tx)
        .await?;
        if latest.is_some() {
            sqlx::query(sql(
                self.dialect,
                "UPDATE parameters SET version = ? WHERE name = ?",
            ))
            .bind(v.version)
            .bind(&v.name)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(sql(
                self.dialect,
                "INSERT INTO parameters (name, version, created_ms, tags_json) VALUES (?, ?, ?, ?)",
            ))
            .bind(&v.name)
            .bind(v.version)
            .bind(v.modified_ms)
            .bind(tags_json)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(PutOutcome::Stored { version: v.version })
    }

    /// A parameter's latest version and tags.
    pub async fn parameter(&self, name: &str) -> Result<Option<ParameterRow>> {
        let row = sqlx::query_as::<_, ParameterVersionRow>(sql(
            self.dialect,
            format!(
                "SELECT {} FROM parameters p JOIN parameter_versions v \
                 ON v.name = p.name AND v.version = p.version WHERE p.name = ?",
                v_columns()
            ),
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(latest) = row else { return Ok(None) };
        let tags_json: String = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT tags_json FROM parameters WHERE name = ?",
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or_else(|| "[]".into());
        Ok(Some(ParameterRow { latest, tags_json }))
    }

    /// One version of a parameter.
    pub async fn parameter_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<ParameterVersionRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!(
                "SELECT {VERSION_COLUMNS} FROM parameter_versions WHERE name = ? AND version = ?"
            ),
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The version a label names.
    pub async fn parameter_label(&self, name: &str, label: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(sql(
            self.dialect,
            "SELECT version FROM parameter_labels WHERE name = ? AND label = ?",
        ))
        .bind(name)
        .bind(label)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every kept version of a parameter, oldest first.
    pub async fn parameter_history(&self, name: &str) -> Result<Vec<ParameterVersionRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!(
                "SELECT {VERSION_COLUMNS} FROM parameter_versions WHERE name = ? ORDER BY version"
            ),
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A parameter's labels, (label, version), by label.
    pub async fn parameter_labels(&self, name: &str) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            "SELECT label, version FROM parameter_labels WHERE name = ? ORDER BY label",
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The latest version of every parameter whose name starts with
    /// `prefix`, by name, with its tags.
    pub async fn parameters_with_prefix(&self, prefix: &str) -> Result<Vec<ParameterRow>> {
        let rows: Vec<(String, String)> = sqlx::query_as(sql(
            self.dialect,
            "SELECT name, tags_json FROM parameters WHERE name LIKE ? ESCAPE '\\' ORDER BY name",
        ))
        .bind(like_prefix(prefix))
        .fetch_all(&self.pool)
        .await?;
        let versions: Vec<ParameterVersionRow> = sqlx::query_as(sql(
            self.dialect,
            format!(
                "SELECT {} FROM parameters p JOIN parameter_versions v \
                 ON v.name = p.name AND v.version = p.version \
                 WHERE p.name LIKE ? ESCAPE '\\' ORDER BY p.name",
                v_columns()
            ),
        ))
        .bind(like_prefix(prefix))
        .fetch_all(&self.pool)
        .await?;
        let tags: std::collections::HashMap<String, String> = rows.into_iter().collect();
        Ok(versions
            .into_iter()
            .map(|latest| ParameterRow {
                tags_json: tags
                    .get(&latest.name)
                    .cloned()
                    .unwrap_or_else(|| "[]".into()),
                latest,
            })
            .collect())
    }

    /// Puts `labels` on version `version` of `name` (moving any of them
    /// from another version), unless the version would then carry more
    /// than `max_labels`.
    pub async fn label_parameter_version(
        &self,
        name: &str,
        version: i64,
        labels: &[String],
        max_labels: usize,
    ) -> Result<LabelOutcome> {
        let mut tx = self.write().await?;
        let exists: Option<i64> = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT version FROM parameters WHERE name = ?",
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Ok(LabelOutcome::NoSuchParameter);
        }
        let found: Option<i64> = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT version FROM parameter_versions WHERE name = ? AND version = ?",
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Ok(LabelOutcome::NoSuchVersion);
        }
        let mut on_version: Vec<String> = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT label FROM parameter_labels WHERE name = ? AND version = ?",
        ))
        .bind(name)
        .bind(version)
        .fetch_all(&mut *tx)
        .await?;
        for l in labels {
            if !on_version.contains(l) {
                on_version.push(l.clone());
            }
        }
        if on_version.len() > max_labels {
            return Ok(LabelOutcome::TooMany {
                count: on_version.len(),
            });
        }
        for l in labels {
            sqlx::query(sql(
                self.dialect,
                "INSERT INTO parameter_labels (name, label, version) VALUES (?, ?, ?) \
                 ON CONFLICT (name, label) DO UPDATE SET version = excluded.version",
            ))
            .bind(name)
            .bind(l)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(LabelOutcome::Labelled)
    }

    /// Removes those of `labels` that version `version` of `name` carries;
    /// answers the ones removed.
    pub async fn unlabel_parameter_version(
        &self,
        name: &str,
        version: i64,
        labels: &[String],
    ) -> Result<Vec<String>> {
        let mut tx = self.write().await?;
        let mut removed = Vec::new();
        for l in labels {
            let done = sqlx::query(sql(
                self.dialect,
                "DELETE FROM parameter_labels WHERE name = ? AND label = ? AND version = ?",
            ))
            .bind(name)
            .bind(l)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() > 0 {
                removed.push(l.clone());
            }
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// Deletes a parameter with all its versions and labels; false when
    /// there was none.
    pub async fn delete_parameter(&self, name: &str) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(sql(self.dialect, "DELETE FROM parameters WHERE name = ?"))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        for text in [
            "DELETE FROM parameter_versions WHERE name = ?",
            "DELETE FROM parameter_labels WHERE name = ?",
        ] {
            sqlx::query(sql(self.dialect, text))
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Replaces a parameter's tags; false when it does not exist.
    pub async fn set_parameter_tags(&self, name: &str, tags_json: &str) -> Result<bool> {
        let done = sqlx::query(sql(
            self.dialect,
            "UPDATE parameters SET tags_json = ? WHERE name = ?",
        ))
        .bind(tags_json)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    // ----- key-encryption keys (names and check values only) -----

    /// Every key-encryption key, by name.
    pub async fn parameter_keys(&self) -> Result<Vec<ParameterKeyRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            "SELECT key_id, description, generation, created_ms, rotated_ms \
             FROM parameter_keys ORDER BY key_id",
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The check values of a key's generations, (generation, check), oldest first.
    pub async fn parameter_key_checks(&self, key_id: &str) -> Result<Vec<(i64, String)>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            "SELECT generation, check_value FROM parameter_key_generations \
             WHERE key_id = ? ORDER BY generation",
        ))
        .bind(key_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a new key (generation 1 with its check value); false when one
    /// of that name exists.
    pub async fn insert_parameter_key(
        &self,
        key: &ParameterKeyRow,
        check_value: &str,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(sql(
            self.dialect,
            "INSERT INTO parameter_keys (key_id, description, generation, created_ms, rotated_ms) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        ))
        .bind(&key.key_id)
        .bind(&key.description)
        .bind(key.generation)
        .bind(key.created_ms)
        .bind(key.rotated_ms)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO parameter_key_generations (key_id, generation, check_value, created_ms) \
             VALUES (?, ?, ?, ?)",
        ))
        .bind(&key.key_id)
        .bind(key.generation)
        .bind(check_value)
        .bind(key.created_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Makes `generation` (with its check value) the key's current one;
    /// false when the key's current generation is no longer `generation - 1`.
    pub async fn advance_parameter_key(
        &self,
        key_id: &str,
        generation: i64,
        check_value: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(sql(
            self.dialect,
            "UPDATE parameter_keys SET generation = ?, rotated_ms = ? \
             WHERE key_id = ? AND generation = ?",
        ))
        .bind(generation)
        .bind(now_ms)
        .bind(key_id)
        .bind(generation - 1)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO parameter_key_generations (key_id, generation, check_value, created_ms) \
             VALUES (?, ?, ?, ?)",
        ))
        .bind(key_id)
        .bind(generation)
        .bind(check_value)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Up to `limit` data keys wrapped under a generation of `key_id` older
    /// than `generation`.
    pub async fn data_keys_below(
        &self,
        key_id: &str,
        generation: i64,
        limit: i64,
    ) -> Result<Vec<WrappedKeyRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            "SELECT name, version, key_generation, data_key FROM parameter_versions \
             WHERE key_id = ? AND key_generation < ? ORDER BY name, version LIMIT ?",
        ))
        .bind(key_id)
        .bind(generation)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Replaces one wrapped data key, if it is still the one `old` read.
    pub async fn rewrap_data_key(
        &self,
        old: &WrappedKeyRow,
        generation: i64,
        data_key: &str,
    ) -> Result<bool> {
        let done = sqlx::query(sql(
            self.dialect,
            "UPDATE parameter_versions SET key_generation = ?, data_key = ? \
             WHERE name = ? AND version = ? AND key_generation = ? AND data_key = ?",
        ))
        .bind(generation)
        .bind(data_key)
        .bind(&old.name)
        .bind(old.version)
        .bind(old.key_generation)
        .bind(&old.data_key)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many stored versions each key wraps a data key for.
    pub async fn data_key_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            "SELECT key_id, COUNT(*) FROM parameter_versions WHERE key_id IS NOT NULL \
             GROUP BY key_id",
        ))
        .fetch_all(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::like_prefix;

    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(like_prefix("/a_b%c\\"), "/a\\_b\\%c\\\\%");
        assert_eq!(like_prefix(""), "%");
    }
}
