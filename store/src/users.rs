//! Principals other than root: the `users` table and their inline policies
//! (`user_policies`), operator tokens (`operator_tokens`: the bootstrap
//! token and users' tokens, hashed), and the account's settings
//! (`settings`: the account ID every replica shares).
//!
//! Policies are stored as the document was given; parsing and evaluation are
//! `tether-iam`'s.

use super::sql;
use super::{Result, Store};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserRow {
    pub user_name: String,
    pub user_id: String,
    pub path: String,
    pub created_ms: i64,
    /// `[{"Key": .., "Value": ..}]`.
    pub tags_json: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OperatorTokenRow {
    pub token_hash: String,
    pub created_ms: i64,
    /// `None` for the bootstrap token.
    pub token_id: Option<String>,
    /// `None`: the root principal's (the bootstrap token).
    pub user_name: Option<String>,
    pub expires_ms: Option<i64>,
}

/// Why a user was not deleted: what still hangs on it (IAM's
/// `DeleteConflict`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserDeletion {
    Deleted,
    NoSuchUser,
    HasAccessKeys(usize),
    HasPolicies(usize),
}

const USER_COLUMNS: &str = "user_name, user_id, path, created_ms, tags_json";
const TOKEN_COLUMNS: &str = "token_hash, created_ms, token_id, user_name, expires_ms";

impl Store {
    // ----- settings -----

    /// The value of `name`, set to `value` first if it had none: the first
    /// replica to start decides, every later one reads its choice.
    pub async fn setting_or_init(&self, name: &str, value: &str) -> Result<String> {
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
        ))
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query_scalar(sql(
            self.dialect,
            "SELECT value FROM settings WHERE name = ?",
        ))
        .bind(name)
        .fetch_one(&self.pool)
        .await?)
    }

    // ----- users -----

    /// Inserts a user; false when one of that name (without case) exists.
    pub async fn insert_user(&self, u: &UserRow) -> Result<bool> {
        let done = sqlx::query(sql(
            self.dialect,
            format!(
                "INSERT INTO users ({USER_COLUMNS}, user_name_lower) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING"
            ),
        ))
        .bind(&u.user_name)
        .bind(&u.user_id)
        .bind(&u.path)
        .bind(u.created_ms)
        .bind(&u.tags_json)
        .bind(u.user_name.to_lowercase())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The user named `user_name` (IAM's names match without case).
    pub async fn user(&self, user_name: &str) -> Result<Option<UserRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!("SELECT {USER_COLUMNS} FROM users WHERE user_name_lower = ?"),
        ))
        .bind(user_name.to_lowercase())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every user whose path starts with `path_prefix`, by name.
    pub async fn users(&self, path_prefix: &str) -> Result<Vec<UserRow>> {
        let rows: Vec<UserRow> = sqlx::query_as(sql(
            self.dialect,
            format!("SELECT {USER_COLUMNS} FROM users ORDER BY user_name_lower"),
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|u| u.path.starts_with(path_prefix))
            .collect())
    }

    pub async fn set_user_tags(&self, user_name: &str, tags_json: &str) -> Result<bool> {
        let done = sqlx::query(sql(
            self.dialect,
            "UPDATE users SET tags_json = ? WHERE user_name = ?",
        ))
        .bind(tags_json)
        .bind(user_name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a user as IAM does: refused while access keys or inline
    /// policies remain; the user's operator tokens (Tether's own) go with it.
    pub async fn delete_user(&self, user_name: &str) -> Result<UserDeletion> {
        let mut tx = self.write().await?;
        let found: Option<String> = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT user_name FROM users WHERE user_name_lower = ?",
        ))
        .bind(user_name.to_lowercase())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(name) = found else {
            return Ok(UserDeletion::NoSuchUser);
        };
        let keys: i64 = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT COUNT(*) FROM access_keys WHERE user_name = ?",
        ))
        .bind(&name)
        .fetch_one(&mut *tx)
        .await?;
        if keys > 0 {
            return Ok(UserDeletion::HasAccessKeys(keys as usize));
        }
        let policies: i64 = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT COUNT(*) FROM user_policies WHERE user_name = ?",
        ))
        .bind(&name)
        .fetch_one(&mut *tx)
        .await?;
        if policies > 0 {
            return Ok(UserDeletion::HasPolicies(policies as usize));
        }
        for text in [
            "DELETE FROM operator_tokens WHERE user_name = ?",
            "DELETE FROM users WHERE user_name = ?",
        ] {
            sqlx::query(sql(self.dialect, text))
                .bind(&name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(UserDeletion::Deleted)
    }

    // ----- inline policies -----

    /// Adds or replaces a user's inline policy.
    pub async fn put_user_policy(
        &self,
        user_name: &str,
        policy: &str,
        document: &str,
    ) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO user_policies (user_name, policy_name, document) VALUES (?, ?, ?) \
             ON CONFLICT (user_name, policy_name) DO UPDATE SET document = excluded.document",
        ))
        .bind(user_name)
        .bind(policy)
        .bind(document)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A user's inline policies, (name, document), by name.
    pub async fn user_policies(&self, user_name: &str) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            "SELECT policy_name, document FROM user_policies WHERE user_name = ? ORDER BY policy_name",
        ))
        .bind(user_name)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether a policy was deleted.
    pub async fn delete_user_policy(&self, user_name: &str, policy: &str) -> Result<bool> {
        let done = sqlx::query(sql(
            self.dialect,
            "DELETE FROM user_policies WHERE user_name = ? AND policy_name = ?",
        ))
        .bind(user_name)
        .bind(policy)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    // ----- operator tokens -----

    pub async fn add_operator_token(&self, token_hash: &str, now_ms: i64) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO operator_tokens (token_hash, created_ms) VALUES (?, ?) ON CONFLICT DO NOTHING",
        ))
        .bind(token_hash)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces every root token (the bootstrap tokens of the replicas'
    /// operator.json files) with `token_hash`, in one transaction: from its
    /// commit no old root token is accepted by any replica (each request
    /// looks its token up). Returns how many were revoked.
    pub async fn rotate_root_token(&self, token_hash: &str, now_ms: i64) -> Result<u64> {
        let mut tx = self.write().await?;
        let revoked = sqlx::query(sql(
            self.dialect,
            "DELETE FROM operator_tokens WHERE user_name IS NULL",
        ))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO operator_tokens (token_hash, created_ms) VALUES (?, ?)",
        ))
        .bind(token_hash)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// Stores a user's token (its hash only).
    pub async fn insert_operator_token(&self, t: &OperatorTokenRow) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            format!("INSERT INTO operator_tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?)"),
        ))
        .bind(&t.token_hash)
        .bind(t.created_ms)
        .bind(&t.token_id)
        .bind(&t.user_name)
        .bind(t.expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The token whose hash is `token_hash`. (The hash of a 256-bit random
    /// token: looking it up by index reveals nothing a guess could use.)
    pub async fn operator_token(&self, token_hash: &str) -> Result<Option<OperatorTokenRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!("SELECT {TOKEN_COLUMNS} FROM operator_tokens WHERE token_hash = ?"),
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Users' tokens (of `user_name` when given), oldest first.
    pub async fn operator_tokens(&self, user_name: Option<&str>) -> Result<Vec<OperatorTokenRow>> {
        let rows: Vec<OperatorTokenRow> = sqlx::query_as(sql(
            self.dialect,
            format!(
                "SELECT {TOKEN_COLUMNS} FROM operator_tokens WHERE user_name IS NOT NULL \
                 ORDER BY created_ms, token_id"
            ),
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|t| user_name.is_none_or(|u| t.user_name.as_deref() == Some(u)))
            .collect())
    }

    /// Whether a user's token was deleted.
    pub async fn delete_operator_token(&self, token_id: &str) -> Result<bool> {
        let done = sqlx::query(sql(
            self.dialect,
            "DELETE FROM operator_tokens WHERE token_id = ?",
        ))
        .bind(token_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use crate::OperatorTokenRow;
    use crate::tests::store;

    #[tokio::test]
    async fn rotating_the_root_token_revokes_every_root_token_and_no_users() {
        let (_d, s) = store().await;
        // Two replicas' bootstrap tokens, and a user's token.
        s.add_operator_token("root-a", 1).await.unwrap();
        s.add_operator_token("root-b", 2).await.unwrap();
        let alice = OperatorTokenRow {
            token_hash: "alice".into(),
            created_ms: 3,
            token_id: Some("ot-1".into()),
            user_name: Some("alice".into()),
            expires_ms: None,
        };
        s.insert_operator_token(&alice).await.unwrap();
        assert_eq!(s.rotate_root_token("root-new", 4).await.unwrap(), 2);
        for old in ["root-a", "root-b"] {
            assert!(s.operator_token(old).await.unwrap().is_none(), "{old}");
        }
        let new = s.operator_token("root-new").await.unwrap().unwrap();
        assert_eq!(new.user_name, None);
        assert!(s.operator_token("alice").await.unwrap().is_some());
        assert_eq!(s.rotate_root_token("root-newer", 5).await.unwrap(), 1);
    }
}
