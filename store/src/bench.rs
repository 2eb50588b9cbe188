//! What `tether-bench` reads from a running coordinator's database and the
//! synthetic history it seeds there for its list-latency figures. The
//! coordinator never calls these; they live here because only this crate
//! knows SQL. Reached through [`Store::bench`].

use super::{Dialect, INSTANCE_COLUMNS, Result, Store, sql};

/// The benchmark's statements on a store (see [`Store::bench`]).
#[derive(Debug)]
pub struct Bench<'a> {
    store: &'a Store,
}

/// Finished invocations to store as history (see [`Bench::seed_history`]).
#[derive(Debug, Clone, Copy)]
pub struct SyntheticHistory<'a> {
    /// Commands of `per_command` invocations each.
    pub commands: usize,
    pub per_command: usize,
    /// The commands are spread over the 20 days before this.
    pub now_ms: i64,
    /// The document content every command records.
    pub document_content: &'a str,
}

/// The command ID of synthetic command `n`: recognisable (see
/// [`Bench::history_command`]), and a lowercase UUID as command IDs must be.
/// PostgreSQL's seeding spells the same in SQL.
pub fn history_command_id(n: usize) -> String {
    format!("{HISTORY_PREFIX}{n:012x}")
}

const HISTORY_PREFIX: &str = "00000000-0000-4000-8000-";

/// One step's output in every synthetic invocation.
const HISTORY_STDOUT: &[u8] = b"Linux node 6.1.0 x86_64\n";

impl Store {
    /// The statements `tether-bench` uses.
    pub fn bench(&self) -> Bench<'_> {
        Bench { store: self }
    }
}

impl Bench<'_> {
    fn dialect(&self) -> Dialect {
        self.store.dialect
    }

    /// The command's own tally of finished invocations (one row, not a count
    /// over its invocations).
    pub async fn completed_count(&self, command_id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(sql(
            self.dialect(),
            "SELECT completed_count FROM commands WHERE command_id = ?",
        ))
        .bind(command_id)
        .fetch_one(&self.store.pool)
        .await?)
    }

    /// Each invocation's end minus the command's request time, in ms,
    /// smallest first.
    pub async fn latencies_ms(&self, command_id: &str) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(sql(
            self.dialect(),
            "SELECT i.end_ms - c.requested_ms FROM invocations i \
             JOIN commands c ON c.command_id = i.command_id \
             WHERE i.command_id = ? ORDER BY 1",
        ))
        .bind(command_id)
        .fetch_all(&self.store.pool)
        .await?)
    }

    /// How many of the command's invocations have each StatusDetails.
    pub async fn status_counts(&self, command_id: &str) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(sql(
            self.dialect(),
            "SELECT status_details, COUNT(*) FROM invocations WHERE command_id = ? \
             GROUP BY status_details ORDER BY status_details",
        ))
        .bind(command_id)
        .fetch_all(&self.store.pool)
        .await?)
    }

    /// How many instances have polled since `since_ms` (pings are stored by
    /// the coordinator's 2 s sweep).
    pub async fn polled_since(&self, since_ms: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(sql(
            self.dialect(),
            "SELECT COUNT(*) FROM instances WHERE last_ping_ms >= ?",
        ))
        .bind(since_ms)
        .fetch_one(&self.store.pool)
        .await?)
    }

    /// The `nth` synthetic command (in command ID order) that is stored.
    pub async fn history_command(&self, nth: usize) -> Result<String> {
        Ok(sqlx::query_scalar(sql(
            self.dialect(),
            "SELECT command_id FROM commands WHERE command_id LIKE ? \
             ORDER BY command_id LIMIT 1 OFFSET ?",
        ))
        .bind(format!("{HISTORY_PREFIX}%"))
        .bind(nth as i64)
        .fetch_one(&self.store.pool)
        .await?)
    }

    /// Registers `n` synthetic managed instances for the console's fleet
    /// figures, in transactions of 1,000: `mi-f` + 16 hex digits,
    /// named `node-00042`, nine in ten seen at `now_ms` (Online) and the rest
    /// an hour before (ConnectionLost), one in five Windows, each tagged
    /// `env` (prod, staging, dev), `role` (web, db, cache, worker) and
    /// `rack` (r0 … r49), under one activation `bench-fleet`.
    pub async fn seed_instances(&self, n: usize, now_ms: i64) -> Result<()> {
        let d = self.dialect();
        sqlx::query(sql(
            d,
            "INSERT INTO activations (activation_id, code_salt, code_hash, description, \
             default_instance_name, iam_role, registration_limit, registrations_count, \
             expiration_ms, created_ms, deleted_ms, tags_json) \
             VALUES ('bench-fleet', ?, ?, 'bench fleet', 'node', 'SSMServiceRole', ?, ?, ?, ?, \
             NULL, '[]')",
        ))
        .bind(vec![0u8; 16])
        .bind(vec![0u8; 32])
        .bind(n as i64)
        .bind(n as i64)
        .bind(now_ms + 86_400_000)
        .bind(now_ms)
        .execute(&self.store.pool)
        .await?;
        let text = format!(
            "INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        );
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let mut tx = self.store.pool.begin().await?;
            for &i in chunk {
                let windows = i % 5 == 2;
                let tags = format!(
                    r#"[{{"Key":"env","Value":"{}"}},{{"Key":"role","Value":"{}"}},{{"Key":"rack","Value":"r{}"}}]"#,
                    ["prod", "staging", "dev"][i % 3],
                    ["web", "db", "cache", "worker"][i % 4],
                    i % 50
                );
                sqlx::query(sql(d, text.clone()))
                    .bind(format!("mi-f{i:016x}"))
                    .bind("bench-fleet")
                    .bind(format!("node-{i:05}"))
                    .bind("SSMServiceRole")
                    .bind(now_ms - 86_400_000)
                    .bind(if i % 10 == 9 {
                        now_ms - 3_600_000
                    } else {
                        now_ms
                    })
                    .bind(if windows { "Windows" } else { "Linux" })
                    .bind(if windows {
                        "Microsoft Windows Server 2022"
                    } else {
                        "Debian GNU/Linux"
                    })
                    .bind(if windows { "10.0.20348" } else { "12" })
                    .bind(format!("node-{i:05}.example.internal"))
                    .bind(format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256))
                    .bind("0.1.0")
                    .bind(None::<i64>)
                    .bind(tags)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Stores finished history: commands of `per_command` invocations
    /// (`mi-` + 17 hex digits from 0), each with one step and a line of
    /// output, spread over the last 20 days; commands are numbered from 0
    /// ([`history_command_id`]) and commented `history`.
    pub async fn seed_history(&self, h: SyntheticHistory<'_>) -> Result<()> {
        match self.dialect() {
            Dialect::Sqlite => self.seed_history_row_by_row(h).await,
            Dialect::Postgres => self.seed_history_on_the_server(h).await,
        }
    }

    /// SQLite: row by row, a transaction per 100 commands.
    async fn seed_history_row_by_row(&self, h: SyntheticHistory<'_>) -> Result<()> {
        let d = self.dialect();
        for chunk in (0..h.commands).collect::<Vec<_>>().chunks(100) {
            let mut tx = self.store.pool.begin().await?;
            for &c in chunk {
                let id = history_command_id(c);
                let requested =
                    h.now_ms - 20 * 86_400_000 + (c as i64 * 86_400_000 * 20 / h.commands as i64);
                sqlx::query(sql(
                    d,
                    "INSERT INTO commands (command_id, document_name, document_version, \
                     document_hash, document_content, parameters_json, resolved_json, comment, \
                     requested_ms, timeout_seconds, max_concurrency, max_errors, concurrency_limit, \
                     instance_ids_json, targets_json, status, status_details, target_count, \
                     completed_count, error_count, delivery_timed_out_count) \
                     VALUES (?, 'AWS-RunShellScript', '1', 'h', ?, '{}', '{}', 'history', ?, 600, \
                     '50', '0', 50, '[]', '[]', 'Success', 'Success', ?, ?, 0, 0)",
                ))
                .bind(&id)
                .bind(h.document_content)
                .bind(requested)
                .bind(h.per_command as i64)
                .bind(h.per_command as i64)
                .execute(&mut *tx)
                .await?;
                for i in 0..h.per_command {
                    let instance = format!("mi-{i:017x}");
                    sqlx::query(sql(
                        d,
                        "INSERT INTO invocations (command_id, instance_id, instance_name, status, \
                         status_details, requested_ms, delivered_ms, acked_ms, start_ms, end_ms, \
                         response_code) \
                         VALUES (?, ?, 'node', 'Success', 'Success', ?, ?, ?, ?, ?, 0)",
                    ))
                    .bind(&id)
                    .bind(&instance)
                    .bind(requested)
                    .bind(requested + 5)
                    .bind(requested + 8)
                    .bind(requested + 10)
                    .bind(requested + 40)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(sql(
                        d,
                        "INSERT INTO invocation_plugins (command_id, instance_id, seq, name, status, \
                         status_details, response_code, start_ms, end_ms, stdout, stderr, \
                         stdout_truncated, stderr_truncated) \
                         VALUES (?, ?, 0, 'aws:runShellScript', 'Success', 'Success', 0, ?, ?, ?, ?, \
                         0, 0)",
                    ))
                    .bind(&id)
                    .bind(&instance)
                    .bind(requested + 10)
                    .bind(requested + 40)
                    .bind(HISTORY_STDOUT.to_vec())
                    .bind(Vec::<u8>::new())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// PostgreSQL: the same rows generated by the server, in three
    /// statements instead of two million, then ANALYZE for the planner.
    async fn seed_history_on_the_server(&self, h: SyntheticHistory<'_>) -> Result<()> {
        let d = self.dialect();
        let mut tx = self.store.pool.begin().await?;
        sqlx::query(sql(
            d,
            "INSERT INTO commands (command_id, document_name, document_version, document_hash, \
             document_content, parameters_json, resolved_json, comment, requested_ms, \
             timeout_seconds, max_concurrency, max_errors, concurrency_limit, instance_ids_json, \
             targets_json, status, status_details, target_count, completed_count, error_count, \
             delivery_timed_out_count) \
             SELECT ? || lpad(to_hex(c), 12, '0'), 'AWS-RunShellScript', '1', 'h', ?, '{}', '{}', \
             'history', ? - 20 * 86400000 + (c * 86400000 * 20 / ?), 600, '50', '0', 50, '[]', \
             '[]', 'Success', 'Success', ?, ?, 0, 0 FROM generate_series(0::bigint, ? - 1) c",
        ))
        .bind(HISTORY_PREFIX)
        .bind(h.document_content)
        .bind(h.now_ms)
        .bind(h.commands as i64)
        .bind(h.per_command as i64)
        .bind(h.per_command as i64)
        .bind(h.commands as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sql(
            d,
            "INSERT INTO invocations (command_id, instance_id, instance_name, status, \
             status_details, requested_ms, delivered_ms, acked_ms, start_ms, end_ms, response_code) \
             SELECT c.command_id, 'mi-' || lpad(to_hex(i), 17, '0'), 'node', 'Success', 'Success', \
             c.requested_ms, c.requested_ms + 5, c.requested_ms + 8, c.requested_ms + 10, \
             c.requested_ms + 40, 0 \
             FROM commands c, generate_series(0::bigint, ? - 1) i WHERE c.comment = 'history'",
        ))
        .bind(h.per_command as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sql(
            d,
            "INSERT INTO invocation_plugins (command_id, instance_id, seq, name, status, \
             status_details, response_code, start_ms, end_ms, stdout, stderr, stdout_truncated, \
             stderr_truncated) \
             SELECT i.command_id, i.instance_id, 0, 'aws:runShellScript', 'Success', 'Success', 0, \
             i.start_ms, i.end_ms, ?, ?, 0, 0 FROM invocations i JOIN commands c \
             ON c.command_id = i.command_id WHERE c.comment = 'history'",
        ))
        .bind(HISTORY_STDOUT.to_vec())
        .bind(Vec::<u8>::new())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        sqlx::query("ANALYZE").execute(&self.store.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HostInfo, InstanceRow, Seen};

    /// On both engines (scripts/test.sh's second pass runs this on
    /// PostgreSQL): what the benchmark seeds, the store's own readers read,
    /// and the benchmark's counts see it.
    #[tokio::test]
    async fn seeded_history_reads_back() {
        let (_d, s) = crate::tests::store().await;
        let b = s.bench();
        let content = "{\"schemaVersion\":\"2.2\"}";
        let now = 1_900_000_000_000;
        b.seed_history(SyntheticHistory {
            commands: 3,
            per_command: 4,
            now_ms: now,
            document_content: content,
        })
        .await
        .unwrap();
        assert_eq!(b.history_command(1).await.unwrap(), history_command_id(1));
        assert!(b.history_command(3).await.is_err(), "three commands only");
        let mut requested = Vec::new();
        for c in 0..3 {
            let id = history_command_id(c);
            assert_eq!(b.completed_count(&id).await.unwrap(), 4);
            // Every invocation ends 40 ms after its command was requested.
            assert_eq!(b.latencies_ms(&id).await.unwrap(), vec![40; 4]);
            assert_eq!(
                b.status_counts(&id).await.unwrap(),
                vec![("Success".to_string(), 4)]
            );
            let row = s.command(&id).await.unwrap().expect("seeded command");
            assert_eq!(
                (row.document_content.as_str(), row.comment.as_str()),
                (content, "history")
            );
            requested.push(row.requested_ms);
            let plugins = s.plugins(&id, "mi-00000000000000003").await.unwrap();
            assert_eq!(plugins.len(), 1, "one step");
            assert_eq!(plugins[0].stdout, HISTORY_STDOUT);
            assert!(plugins[0].stderr.is_empty());
        }
        // Spread over the 20 days before `now`, oldest first.
        assert_eq!(requested[0], now - 20 * 86_400_000);
        assert!(
            requested.windows(2).all(|w| w[0] < w[1] && w[1] < now),
            "{requested:?}"
        );

        s.insert_activation(&crate::tests::activation("a", 2, i64::MAX))
            .await
            .unwrap();
        for id in ["mi-1", "mi-2"] {
            let inst = InstanceRow {
                instance_id: id.into(),
                activation_id: "a".into(),
                ..Default::default()
            };
            s.register_instance(&inst, 1_000).await.unwrap();
        }
        assert_eq!(b.polled_since(5_000).await.unwrap(), 0);
        let host = HostInfo {
            platform_name: "Debian GNU/Linux".into(),
            ..Default::default()
        };
        s.pings(&[
            Seen {
                instance_id: "mi-1".into(),
                at_ms: 4_000,
                host: None,
            },
            Seen {
                instance_id: "mi-2".into(),
                at_ms: 6_000,
                host: Some(host.clone()),
            },
        ])
        .await
        .unwrap();
        let row = s.instance("mi-2").await.unwrap().unwrap();
        assert_eq!(
            (row.last_ping_ms, row.platform_name.as_str()),
            (Some(6_000), "Debian GNU/Linux"),
            "host facts come with the ping"
        );
        assert_eq!(b.polled_since(5_000).await.unwrap(), 1);
        assert_eq!(b.polled_since(4_000).await.unwrap(), 2);
    }

    /// The synthetic fleet reads back through the store's own readers.
    #[tokio::test]
    async fn seeded_instances_read_back() {
        let (_d, s) = crate::tests::store().await;
        let now = 1_900_000_000_000;
        s.bench().seed_instances(1_500, now).await.unwrap();
        let all = s.all_instances().await.unwrap();
        assert_eq!(all.len(), 1_500);
        let i = s.instance("mi-f0000000000000009").await.unwrap().unwrap();
        assert_eq!(
            (i.name.as_str(), i.last_ping_ms, i.platform_type.as_str()),
            ("node-00009", Some(now - 3_600_000), "Linux")
        );
        assert!(i.tags_json.contains("\"rack\""), "{}", i.tags_json);
        assert_eq!(
            all.iter().filter(|i| i.platform_type == "Windows").count(),
            300
        );
    }
}
