//! Changing running invocations: cancellation, live output from agents, and
//! the sweeps that make sure no invocation stays unfinished forever.

use super::sql;
use super::{Moved, Result, Store, refresh_command, set_invocation_detail};
use tether_ssm::state::Detail;

/// What CancelCommand did to one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Never handed to its agent: Cancelled at once.
    Cancelled(String),
    /// Delivered: Cancelling until its agent confirms.
    Cancelling(String),
}

/// A chunk of live output from a running step.
#[derive(Debug, Clone, Default)]
pub struct OutputChunk {
    pub step_index: i64,
    pub name: String,
    pub start_ms: Option<i64>,
    pub stdout_offset: i64,
    pub stdout: Vec<u8>,
    pub stderr_offset: i64,
    pub stderr: Vec<u8>,
}

/// Places `chunk` at `offset` in `current`: a resent chunk overwrites what it
/// covers, a gap (an earlier chunk lost) is left out rather than invented.
fn splice(current: &mut Vec<u8>, offset: i64, chunk: &[u8]) {
    let offset = offset.max(0) as usize;
    if offset > current.len() {
        return;
    }
    current.truncate(offset);
    current.extend_from_slice(chunk);
}

impl Store {
    /// Cancels the unfinished invocations of a command (all, or those of
    /// `instance_ids`), in one transaction.
    pub async fn cancel_invocations(
        &self,
        command_id: &str,
        instance_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<CancelOutcome>> {
        let mut tx = self.write().await?;
        let rows: Vec<(String, Option<i64>)> = sqlx::query_as(sql(
            self.dialect,
            "SELECT instance_id, delivered_ms FROM invocations WHERE command_id = ? \
             AND status IN ('Pending', 'InProgress', 'Delayed')",
        ))
        .bind(command_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::new();
        let mut moved = Moved::default();
        for (instance_id, delivered) in rows {
            if !instance_ids.is_empty() && !instance_ids.contains(&instance_id) {
                continue;
            }
            if delivered.is_none() {
                if set_invocation_detail(
                    &mut tx,
                    command_id,
                    &instance_id,
                    Detail::Cancelled,
                    now_ms,
                )
                .await?
                {
                    moved.add(Detail::Cancelled, 1);
                }
                out.push(CancelOutcome::Cancelled(instance_id));
            } else {
                sqlx::query(sql(self.dialect, "UPDATE invocations SET status = ?, status_details = ?, cancel_requested_ms = ?, \
                     cancel_sent_ms = NULL WHERE command_id = ? AND instance_id = ?"),
                )
                .bind(Detail::Cancelling.status())
                .bind(Detail::Cancelling.as_str())
                .bind(now_ms)
                .bind(command_id)
                .bind(&instance_id)
                .execute(&mut *tx)
                .await?;
                out.push(CancelOutcome::Cancelling(instance_id));
            }
        }
        refresh_command(&mut tx, command_id, now_ms, &mut moved).await?;
        tx.commit().await?;
        self.count_finished(&moved);
        Ok(out)
    }

    pub async fn mark_cancel_sent(
        &self,
        command_id: &str,
        instance_id: &str,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            "UPDATE invocations SET cancel_sent_ms = ? WHERE command_id = ? AND instance_id = ?",
        ))
        .bind(now_ms)
        .bind(command_id)
        .bind(instance_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores live output of a running step; nothing changes once the
    /// invocation has ended (its final report holds the whole output).
    pub async fn append_output(
        &self,
        command_id: &str,
        instance_id: &str,
        chunk: &OutputChunk,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let status: Option<String> = sqlx::query_scalar(sql(
            self.dialect,
            "SELECT status_details FROM invocations WHERE command_id = ? AND instance_id = ?",
        ))
        .bind(command_id)
        .bind(instance_id)
        .fetch_optional(&mut *tx)
        .await?;
        if status
            .as_deref()
            .and_then(Detail::parse)
            .is_none_or(Detail::is_terminal)
        {
            return Ok(false);
        }
        let existing: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(sql(
            self.dialect,
            "SELECT stdout, stderr FROM invocation_plugins \
             WHERE command_id = ? AND instance_id = ? AND seq = ?",
        ))
        .bind(command_id)
        .bind(instance_id)
        .bind(chunk.step_index)
        .fetch_optional(&mut *tx)
        .await?;
        let (mut stdout, mut stderr) = existing.unwrap_or_default();
        splice(&mut stdout, chunk.stdout_offset, &chunk.stdout);
        splice(&mut stderr, chunk.stderr_offset, &chunk.stderr);
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO invocation_plugins (command_id, instance_id, seq, name, status, \
             status_details, response_code, start_ms, end_ms, stdout, stderr, stdout_truncated, \
             stderr_truncated) VALUES (?,?,?,?,?,?,-1,?,NULL,?,?,0,0) \
             ON CONFLICT (command_id, instance_id, seq) DO UPDATE SET \
             stdout = excluded.stdout, stderr = excluded.stderr, \
             start_ms = COALESCE(invocation_plugins.start_ms, excluded.start_ms)",
        ))
        .bind(command_id)
        .bind(instance_id)
        .bind(chunk.step_index)
        .bind(&chunk.name)
        .bind(Detail::InProgress.status())
        .bind(Detail::InProgress.as_str())
        .bind(chunk.start_ms)
        .bind(&stdout)
        .bind(&stderr)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Ends invocations whose agent has not confirmed a cancellation within
    /// `give_up_ms` (it is offline), and running invocations whose agent has
    /// been silent for `silent_ms` and holds no poll open (`connected`). The latter are marked presumed lost, so a
    /// result the agent sends when it returns still replaces the verdict.
    /// Returns the (command, instance) pairs ended.
    pub async fn sweep_unconfirmed(
        &self,
        now_ms: i64,
        give_up_ms: i64,
        silent_ms: i64,
        connected: &[String],
    ) -> Result<Vec<(String, String, Detail)>> {
        let cancels: Vec<(String, String)> = sqlx::query_as(sql(
            self.dialect,
            "SELECT command_id, instance_id FROM invocations WHERE status = 'Cancelling' \
             AND cancel_requested_ms <= ?",
        ))
        .bind(now_ms - give_up_ms)
        .fetch_all(&self.pool)
        .await?;
        let silent: Vec<(String, String)> = sqlx::query_as(sql(
            self.dialect,
            "SELECT i.command_id, i.instance_id FROM invocations i \
             JOIN instances n ON n.instance_id = i.instance_id \
             WHERE i.status = 'InProgress' AND COALESCE(n.last_ping_ms, 0) <= ? \
             AND COALESCE(i.acked_ms, 0) <= ?",
        ))
        .bind(now_ms - silent_ms)
        .bind(now_ms - silent_ms)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .filter(|(_, instance_id): &(String, String)| !connected.contains(instance_id))
        .collect();
        if cancels.is_empty() && silent.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write().await?;
        let mut ended = Vec::new();
        let mut moved = Moved::default();
        for ((command_id, instance_id), detail, lost) in cancels
            .into_iter()
            .map(|p| (p, Detail::Cancelled, false))
            .chain(silent.into_iter().map(|p| (p, Detail::Failed, true)))
        {
            // Its agent may have reported since the read: that stands.
            if !set_invocation_detail(&mut tx, &command_id, &instance_id, detail, now_ms).await? {
                continue;
            }
            moved.add(detail, 1);
            sqlx::query(sql(
                self.dialect,
                "UPDATE invocations SET presumed_lost = ? WHERE command_id = ? AND instance_id = ?",
            ))
            .bind(i64::from(lost))
            .bind(&command_id)
            .bind(&instance_id)
            .execute(&mut *tx)
            .await?;
            refresh_command(&mut tx, &command_id, now_ms, &mut moved).await?;
            ended.push((command_id, instance_id, detail));
        }
        tx.commit().await?;
        self.count_finished(&moved);
        Ok(ended)
    }
}

impl Store {
    /// Deletes commands requested before `before_ms` with their invocations
    /// and outputs, `batch` commands per transaction. Returns how many.
    pub async fn prune_history(&self, before_ms: i64, batch: i64) -> Result<usize> {
        let mut total = 0;
        loop {
            let mut tx = self.write().await?;
            let ids: Vec<String> = sqlx::query_scalar(sql(self.dialect, "SELECT command_id FROM commands WHERE requested_ms < ? ORDER BY requested_ms LIMIT ?"),
            )
            .bind(before_ms)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
            for id in &ids {
                for table in [
                    "invocation_plugins",
                    "invocations",
                    "command_counts",
                    "commands",
                ] {
                    sqlx::query(sql(
                        self.dialect,
                        format!("DELETE FROM {table} WHERE command_id = ?"),
                    ))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            total += ids.len();
            if (ids.len() as i64) < batch {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::splice;

    #[test]
    fn chunks_land_at_their_offsets() {
        let mut s = b"hello".to_vec();
        splice(&mut s, 5, b" world");
        assert_eq!(s, b"hello world");
        // A resent chunk replaces what it covers.
        splice(&mut s, 6, b"there");
        assert_eq!(s, b"hello there");
        // A chunk after a gap is dropped, not glued on.
        splice(&mut s, 50, b"??");
        assert_eq!(s, b"hello there");
    }
}
