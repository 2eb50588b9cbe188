//! The AWS bridge's tables: `aws_instances` (what each configured AWS account's
//! SSM last said about its managed instances) and `aws_invocations` (the AWS
//! command behind each of our invocations on such an instance). The
//! invocations themselves live in `invocations` like every other.

use super::sql;
use super::{AwsFacts, InstanceRow, Result, Store};

#[derive(Clone, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct AwsInstanceRow {
    pub instance_id: String,
    pub account: String,
    pub resource_type: String,
    pub ping_status: String,
    pub name: String,
    pub activation_id: String,
    pub iam_role: String,
    pub platform_type: String,
    pub platform_name: String,
    pub platform_version: String,
    pub computer_name: String,
    pub ip_address: String,
    pub agent_version: String,
    pub registration_ms: Option<i64>,
    pub last_ping_ms: Option<i64>,
    pub tags_json: String,
    pub seen_ms: i64,
}

const AWS_INSTANCE_COLUMNS: &str = "instance_id, account, resource_type, ping_status, name, \
    activation_id, iam_role, platform_type, platform_name, platform_version, computer_name, \
    ip_address, agent_version, registration_ms, last_ping_ms, tags_json, seen_ms";

/// An in-flight invocation on the AWS side.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct AwsInvocationRow {
    pub command_id: String,
    pub instance_id: String,
    pub account: String,
    pub aws_command_id: String,
    pub next_poll_ms: i64,
    pub throttled: i64,
}

/// A Pending invocation on a bridged instance, not yet sent to AWS.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct BridgePending {
    pub command_id: String,
    pub instance_id: String,
    pub account: String,
}

impl Store {
    /// Every instance the action layer may target: Tether's agents, then the
    /// bridged AWS instances (an ID known to both is Tether's).
    pub async fn all_instances(&self) -> Result<Vec<InstanceRow>> {
        let mut rows = self.instances().await?;
        let own: std::collections::HashSet<String> =
            rows.iter().map(|r| r.instance_id.clone()).collect();
        for a in self.aws_instances().await? {
            if !own.contains(&a.instance_id) {
                rows.push(instance_row(a));
            }
        }
        Ok(rows)
    }

    /// One instance the action layer may target, by ID, Tether's own first.
    pub async fn any_instance(&self, id: &str) -> Result<Option<InstanceRow>> {
        if let Some(row) = self.instance(id).await? {
            return Ok(Some(row));
        }
        Ok(self.aws_instance(id).await?.map(instance_row))
    }

    /// Replaces what is known of `account`'s instances with `rows` (one transaction).
    pub async fn replace_aws_instances(
        &self,
        account: &str,
        rows: &[AwsInstanceRow],
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(sql(
            self.dialect,
            "DELETE FROM aws_instances WHERE account = ?",
        ))
        .bind(account)
        .execute(&mut *tx)
        .await?;
        for r in rows {
            sqlx::query(sql(
                self.dialect,
                format!(
                    "INSERT INTO aws_instances ({AWS_INSTANCE_COLUMNS}) \
                 VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) \
                 ON CONFLICT (instance_id) DO UPDATE SET {}",
                    AWS_INSTANCE_COLUMNS
                        .split(',')
                        .map(str::trim)
                        .filter(|c| *c != "instance_id")
                        .map(|c| format!("{c} = excluded.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
            .bind(&r.instance_id)
            .bind(account)
            .bind(&r.resource_type)
            .bind(&r.ping_status)
            .bind(&r.name)
            .bind(&r.activation_id)
            .bind(&r.iam_role)
            .bind(&r.platform_type)
            .bind(&r.platform_name)
            .bind(&r.platform_version)
            .bind(&r.computer_name)
            .bind(&r.ip_address)
            .bind(&r.agent_version)
            .bind(r.registration_ms)
            .bind(r.last_ping_ms)
            .bind(&r.tags_json)
            .bind(r.seen_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every bridged instance, by ID.
    pub async fn aws_instances(&self) -> Result<Vec<AwsInstanceRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!("SELECT {AWS_INSTANCE_COLUMNS} FROM aws_instances ORDER BY instance_id"),
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn aws_instance(&self, id: &str) -> Result<Option<AwsInstanceRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!("SELECT {AWS_INSTANCE_COLUMNS} FROM aws_instances WHERE instance_id = ?"),
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Pending, undelivered invocations on bridged instances, oldest command first.
    pub async fn bridge_pending(&self) -> Result<Vec<BridgePending>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            "SELECT i.command_id, i.instance_id, a.account FROM invocations i \
             JOIN aws_instances a ON a.instance_id = i.instance_id \
             WHERE i.status = 'Pending' AND i.delivered_ms IS NULL \
             ORDER BY i.requested_ms, i.command_id, i.instance_id",
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Gives a claimed invocation back (AWS throttled the send): it is sent again later.
    pub async fn unclaim_delivery(&self, command_id: &str, instance_id: &str) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            "UPDATE invocations SET delivered_ms = NULL WHERE command_id = ? AND instance_id = ? \
             AND status = 'Pending'",
        ))
        .bind(command_id)
        .bind(instance_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn insert_aws_invocation(&self, r: &AwsInvocationRow) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO aws_invocations \
             (command_id, instance_id, account, aws_command_id, next_poll_ms, throttled) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (command_id, instance_id) DO UPDATE SET \
             account = excluded.account, aws_command_id = excluded.aws_command_id, \
             next_poll_ms = excluded.next_poll_ms, throttled = excluded.throttled",
        ))
        .bind(&r.command_id)
        .bind(&r.instance_id)
        .bind(&r.account)
        .bind(&r.aws_command_id)
        .bind(r.next_poll_ms)
        .bind(r.throttled)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// In-flight AWS invocations due for a poll at `now_ms`.
    pub async fn aws_invocations_due(&self, now_ms: i64) -> Result<Vec<AwsInvocationRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            "SELECT command_id, instance_id, account, aws_command_id, next_poll_ms, throttled \
             FROM aws_invocations WHERE next_poll_ms <= ? ORDER BY next_poll_ms",
        ))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The AWS command behind one of our invocations, if it went to AWS.
    pub async fn aws_invocation(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<Option<AwsInvocationRow>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            "SELECT command_id, instance_id, account, aws_command_id, next_poll_ms, throttled \
             FROM aws_invocations WHERE command_id = ? AND instance_id = ?",
        ))
        .bind(command_id)
        .bind(instance_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn reschedule_aws_invocation(
        &self,
        command_id: &str,
        instance_id: &str,
        next_poll_ms: i64,
        throttled: i64,
    ) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            "UPDATE aws_invocations SET next_poll_ms = ?, throttled = ? \
             WHERE command_id = ? AND instance_id = ?",
        ))
        .bind(next_poll_ms)
        .bind(throttled)
        .bind(command_id)
        .bind(instance_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// In-flight AWS invocations that an operator asked to cancel and whose
    /// cancellation has not been passed on to AWS yet.
    pub async fn aws_cancels_due(&self) -> Result<Vec<AwsInvocationRow>> {
        Ok(sqlx::query_as(sql(self.dialect, "SELECT a.command_id, a.instance_id, a.account, a.aws_command_id, a.next_poll_ms,              a.throttled FROM aws_invocations a JOIN invocations i              ON i.command_id = a.command_id AND i.instance_id = a.instance_id              WHERE i.status = 'Cancelling' AND i.cancel_sent_ms IS NULL"),
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_aws_invocation(&self, command_id: &str, instance_id: &str) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            "DELETE FROM aws_invocations WHERE command_id = ? AND instance_id = ?",
        ))
        .bind(command_id)
        .bind(instance_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// A bridged instance as the rows of Tether's own, with AWS's facts.
fn instance_row(a: AwsInstanceRow) -> InstanceRow {
    InstanceRow {
        instance_id: a.instance_id,
        activation_id: a.activation_id,
        name: a.name,
        iam_role: a.iam_role,
        registration_ms: a.registration_ms.unwrap_or(a.seen_ms),
        last_ping_ms: a.last_ping_ms,
        platform_type: a.platform_type,
        platform_name: a.platform_name,
        platform_version: a.platform_version,
        computer_name: a.computer_name,
        ip_address: a.ip_address,
        agent_version: a.agent_version,
        deregistered_ms: None,
        tags_json: a.tags_json,
        aws: Some(AwsFacts {
            account: a.account,
            resource_type: a.resource_type,
            ping_status: a.ping_status,
        }),
    }
}
