//! The audit trail's rows (migration 0010): `audit_records`, one hash chain
//! in one global order across replicas, and `audit_heads`, the signed chain
//! heads. The store keeps what the coordinator computes (hashes, signatures:
//! `coordinator/src/audit/`); what it owns is the order — appends are
//! serialised (SQLite's write lock; a PostgreSQL transaction-scoped advisory
//! lock of their own on every replica) and the chain head is read inside the
//! appending transaction, so two replicas never chain onto the same record.

use super::{Dialect, IntFlag, Result, Store, sql};
use sqlx::AssertSqlSafe;

/// The PostgreSQL advisory lock that serialises audit appends ("tether" + 0x10).
/// What computes a record's own hash over it (the coordinator's chain rule).
pub type Seal = dyn Fn(&AuditRecord) -> String + Sync;

const AUDIT_LOCK: i64 = 0x0074_6574_6865_7210;

/// One audit record as stored. `seq`, `prev_hash` and `hash` are set by
/// [`Store::append_audit`].
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRecord {
    pub seq: i64,
    pub event_id: String,
    pub request_id: String,
    pub time_ms: i64,
    /// `intent` (a change about to be made), `outcome` (its result),
    /// `refused`, `read`, `agent` (registrations).
    pub kind: String,
    pub principal_arn: String,
    pub user_name: String,
    pub credential_id: Option<String>,
    pub source: Option<String>,
    pub transport: String,
    pub action: String,
    pub event_name: String,
    pub event_source: String,
    #[sqlx(try_from = "IntFlag")]
    pub read_only: bool,
    pub resources_json: String,
    pub request_json: String,
    pub outcome_json: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub replica: String,
    pub prev_hash: String,
    pub hash: String,
}

/// A signed chain head.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
    pub signed_ms: i64,
    pub replica: String,
    pub signature: String,
}

/// What `LookupEvents` asks for: at most one attribute (CloudTrail's rule),
/// a time window, newest first from `before_seq`.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub attribute: Option<(AuditAttribute, String)>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Paging: only records older than this one.
    pub before_seq: Option<i64>,
    pub limit: i64,
}

/// CloudTrail's lookup attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAttribute {
    EventId,
    EventName,
    ReadOnly,
    Username,
    ResourceType,
    ResourceName,
    EventSource,
    AccessKeyId,
}

const COLUMNS: &str = "seq, event_id, request_id, time_ms, kind, principal_arn, user_name, \
    credential_id, source, transport, action, event_name, event_source, read_only, \
    resources_json, request_json, outcome_json, error_code, error_message, replica, \
    prev_hash, hash";

/// The hash the first record chains onto.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A LIKE pattern matching `text` literally (`\` escapes).
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Store {
    /// Appends `records` to the chain, in order, in one transaction: each
    /// gets the next sequence number and the previous record's hash, then
    /// `seal` computes its own hash over it. Nothing is appended when any
    /// insert fails (a full disk: `StoreError::DiskFull`). Returns the
    /// records as stored.
    pub async fn append_audit(
        &self,
        records: Vec<AuditRecord>,
        seal: &Seal,
    ) -> Result<Vec<AuditRecord>> {
        if records.is_empty() {
            return Ok(records);
        }
        let mut tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        };
        let records = self.chain_in(&mut tx, records, seal).await?;
        tx.commit().await?;
        Ok(records)
    }

    /// Appends `records` to the chain inside `tx`, a transaction that
    /// already holds SQLite's write lock (on PostgreSQL this takes the
    /// chain's lock): what [`Store::append_audit`] does, and what a change
    /// written with its own records does in its transaction.
    pub(crate) async fn chain_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        mut records: Vec<AuditRecord>,
        seal: &Seal,
    ) -> Result<Vec<AuditRecord>> {
        if self.dialect == Dialect::Postgres {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT pg_advisory_xact_lock({AUDIT_LOCK})"
            )))
            .execute(&mut **tx)
            .await?;
        }
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut **tx)
                .await?;
        let (mut seq, mut prev) = head.unwrap_or((0, GENESIS_HASH.to_string()));
        for r in &mut records {
            seq += 1;
            r.seq = seq;
            r.prev_hash = std::mem::take(&mut prev);
            r.hash = seal(r);
            prev = r.hash.clone();
            sqlx::query(sql(
                self.dialect,
                format!(
                    "INSERT INTO audit_records ({COLUMNS}) \
                     VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                ),
            ))
            .bind(r.seq)
            .bind(&r.event_id)
            .bind(&r.request_id)
            .bind(r.time_ms)
            .bind(&r.kind)
            .bind(&r.principal_arn)
            .bind(&r.user_name)
            .bind(&r.credential_id)
            .bind(&r.source)
            .bind(&r.transport)
            .bind(&r.action)
            .bind(&r.event_name)
            .bind(&r.event_source)
            .bind(i64::from(r.read_only))
            .bind(&r.resources_json)
            .bind(&r.request_json)
            .bind(&r.outcome_json)
            .bind(&r.error_code)
            .bind(&r.error_message)
            .bind(&r.replica)
            .bind(&r.prev_hash)
            .bind(&r.hash)
            .execute(&mut **tx)
            .await?;
        }
        Ok(records)
    }

    /// Up to `limit` records after `after_seq`, in chain order (what
    /// verification walks).
    pub async fn audit_records_after(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        Ok(sqlx::query_as(sql(
            self.dialect,
            format!("SELECT {COLUMNS} FROM audit_records WHERE seq > ? ORDER BY seq LIMIT ?"),
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The newest record's sequence number and hash, if any.
    pub async fn audit_chain_head(&self) -> Result<Option<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Records for `LookupEvents`, newest first. An intent whose outcome is
    /// recorded is left out (the outcome stands for the request); one
    /// without (the coordinator stopped between them) is shown.
    pub async fn lookup_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let mut text = format!(
            "SELECT {COLUMNS} FROM audit_records r WHERE NOT (r.kind = 'intent' AND EXISTS \
             (SELECT 1 FROM audit_records o WHERE o.request_id = r.request_id AND o.kind = 'outcome'))"
        );
        let mut binds: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        if let Some((key, value)) = &q.attribute {
            use AuditAttribute as A;
            let clause = match key {
                A::EventId => "r.event_id = ?",
                A::EventName => "r.event_name = ?",
                A::Username => "r.user_name = ?",
                A::EventSource => "r.event_source = ?",
                A::AccessKeyId => "r.credential_id = ?",
                A::ReadOnly => "r.read_only = ?",
                A::ResourceType => "r.resources_json LIKE ? ESCAPE '\\'",
                A::ResourceName => {
                    "(r.resources_json LIKE ? ESCAPE '\\' OR r.resources_json LIKE ? ESCAPE '\\')"
                }
            };
            text.push_str(" AND ");
            text.push_str(clause);
            match key {
                A::ReadOnly => {
                    // Bound as a string below, compared as an integer.
                    text = text.replace("r.read_only = ?", "r.read_only = CAST(? AS INTEGER)");
                    binds.push(
                        if value.eq_ignore_ascii_case("true") {
                            "1"
                        } else {
                            "0"
                        }
                        .into(),
                    );
                }
                A::ResourceType => {
                    binds.push(format!("%\"ResourceType\":\"{}\"%", like_literal(value)))
                }
                A::ResourceName => {
                    binds.push(format!("%\"ResourceName\":\"{}\"%", like_literal(value)));
                    binds.push(format!("%/{}\"%", like_literal(value)));
                }
                _ => binds.push(value.clone()),
            }
        }
        if let Some(s) = q.start_ms {
            text.push_str(" AND r.time_ms >= ?");
            ints.push(s);
        }
        if let Some(e) = q.end_ms {
            text.push_str(" AND r.time_ms <= ?");
            ints.push(e);
        }
        if let Some(b) = q.before_seq {
            text.push_str(" AND r.seq < ?");
            ints.push(b);
        }
        text.push_str(" ORDER BY r.seq DESC LIMIT ?");
        ints.push(q.limit);
        let text = sql(self.dialect, text);
        let mut query = sqlx::query_as::<_, AuditRecord>(text);
        for b in &binds {
            query = query.bind(b);
        }
        for i in ints {
            query = query.bind(i);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// Keeps a signed head (a head already kept is left as it is).
    pub async fn insert_audit_head(&self, h: &AuditHead) -> Result<()> {
        sqlx::query(sql(
            self.dialect,
            "INSERT INTO audit_heads (seq, hash, signed_ms, replica, signature) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        ))
        .bind(h.seq)
        .bind(&h.hash)
        .bind(h.signed_ms)
        .bind(&h.replica)
        .bind(&h.signature)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest signed head in the database, if any.
    pub async fn latest_audit_head(&self) -> Result<Option<AuditHead>> {
        Ok(sqlx::query_as(
            "SELECT seq, hash, signed_ms, replica, signature FROM audit_heads \
             ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> AuditRecord {
        AuditRecord {
            seq: 0,
            event_id: format!("event-{n}"),
            request_id: format!("request-{n}"),
            time_ms: 1_000 + n as i64,
            kind: "outcome".into(),
            principal_arn: "arn:aws:iam::123456789012:root".into(),
            user_name: "root".into(),
            credential_id: None,
            source: Some("127.0.0.1".into()),
            transport: "grpc".into(),
            action: "ssm:SendCommand".into(),
            event_name: "SendCommand".into(),
            event_source: "ssm.amazonaws.com".into(),
            read_only: false,
            resources_json: r#"[{"ResourceType":"AWS::SSM::Document","ResourceName":"arn:aws:ssm:us-east-1:123456789012:document/AWS-RunShellScript"}]"#.into(),
            request_json: "{}".into(),
            outcome_json: "{}".into(),
            error_code: None,
            error_message: None,
            replica: "r1".into(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    fn seal(r: &AuditRecord) -> String {
        format!("{}:{}", r.seq, &r.prev_hash[..4])
    }

    #[tokio::test]
    async fn appends_chain_in_order_and_look_up_by_attribute() {
        let (_dir, store) = crate::tests::store().await;
        let first = store
            .append_audit(vec![record(1), record(2)], &seal)
            .await
            .unwrap();
        assert_eq!(first[0].seq, 1);
        assert_eq!(first[0].prev_hash, GENESIS_HASH);
        assert_eq!(first[1].prev_hash, first[0].hash);
        let more = store.append_audit(vec![record(3)], &seal).await.unwrap();
        assert_eq!(more[0].seq, 3);
        assert_eq!(more[0].prev_hash, first[1].hash);
        assert_eq!(store.audit_chain_head().await.unwrap().unwrap().0, 3);
        let all = store.audit_records_after(0, 10).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2], more[0]);

        let q = |attribute, limit| AuditQuery {
            attribute,
            limit,
            ..Default::default()
        };
        let by_id = store
            .lookup_audit(&q(Some((AuditAttribute::EventId, "event-2".into())), 10))
            .await
            .unwrap();
        assert_eq!(by_id.len(), 1);
        assert_eq!(by_id[0].seq, 2);
        let by_resource = store
            .lookup_audit(&q(
                Some((AuditAttribute::ResourceName, "AWS-RunShellScript".into())),
                2,
            ))
            .await
            .unwrap();
        assert_eq!(
            by_resource.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [3, 2]
        );
        let page2 = store
            .lookup_audit(&AuditQuery {
                before_seq: Some(2),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page2.iter().map(|r| r.seq).collect::<Vec<_>>(), [1]);
        let none = store
            .lookup_audit(&q(Some((AuditAttribute::ReadOnly, "true".into())), 10))
            .await
            .unwrap();
        assert!(none.is_empty());

        let head = AuditHead {
            seq: 3,
            hash: more[0].hash.clone(),
            signed_ms: 5,
            replica: "r1".into(),
            signature: "ab".into(),
        };
        store.insert_audit_head(&head).await.unwrap();
        assert_eq!(store.latest_audit_head().await.unwrap(), Some(head));
    }

    /// A command written with its intent and outcome records: both or
    /// neither, in chain order with appends from another replica meanwhile
    /// (on PostgreSQL the write lock, then the chain's: no deadlock).
    #[tokio::test]
    async fn a_command_and_its_records_are_stored_together_or_not_at_all() {
        let (_dir, a, b) = crate::tests::two_stores().await;
        let targets = [("mi-1".to_string(), "host".to_string())];
        let others = async {
            for i in 0..10 {
                b.append_audit(vec![record(100 + i)], &seal).await.unwrap();
            }
        };
        let mine = async {
            for i in 0..10 {
                let stored = a
                    .insert_command_recorded(
                        &crate::tests::command(&format!("c{i}")),
                        &targets,
                        vec![record(i), record(50 + i)],
                        &seal,
                    )
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(stored[1].prev_hash, stored[0].hash);
            }
        };
        tokio::join!(others, mine);
        let all = a.audit_records_after(0, 100).await.unwrap();
        assert_eq!(all.len(), 30);
        let mut prev = GENESIS_HASH.to_string();
        for r in &all {
            assert_eq!(r.prev_hash, prev, "record {}", r.seq);
            prev = r.hash.clone();
        }
        assert!(a.command("c9").await.unwrap().is_some());

        // The chain refuses appends (as a full disk would): nothing stored.
        let refuse = if a.dialect == Dialect::Postgres {
            "CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN \
             RAISE EXCEPTION 'no space left (test)'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER no_audit BEFORE INSERT ON audit_records \
             FOR EACH ROW EXECUTE FUNCTION no_audit()"
        } else {
            "CREATE TRIGGER no_audit BEFORE INSERT ON audit_records \
             BEGIN SELECT RAISE(FAIL, 'no space left (test)'); END"
        };
        sqlx::raw_sql(AssertSqlSafe(refuse))
            .execute(&a.pool)
            .await
            .unwrap();
        let refused = a
            .insert_command_recorded(
                &crate::tests::command("lost"),
                &targets,
                vec![record(99)],
                &seal,
            )
            .await
            .unwrap();
        assert!(refused.is_err(), "{refused:?}");
        assert!(a.command("lost").await.unwrap().is_none());
        assert_eq!(a.audit_records_after(0, 100).await.unwrap().len(), 30);
    }

    /// Two stores on one database (two replicas) appending at once: one
    /// order, no sequence number twice, every record chained onto the one
    /// before it.
    #[tokio::test]
    async fn replicas_appending_at_once_make_one_chain() {
        let (_dir, a, b) = crate::tests::two_stores().await;
        let seal = |r: &AuditRecord| format!("{}<{}", r.event_id, r.prev_hash);
        let run = |s: Store, who: &'static str| async move {
            for i in 0..20 {
                let mut r = record(i);
                r.event_id = format!("{who}-{i}");
                s.append_audit(
                    vec![r.clone(), {
                        let mut r2 = r;
                        r2.event_id.push('b');
                        r2
                    }],
                    &seal,
                )
                .await
                .unwrap();
            }
        };
        tokio::join!(run(a.clone(), "a"), run(b.clone(), "b"));
        let all = a.audit_records_after(0, 1000).await.unwrap();
        assert_eq!(all.len(), 80);
        let mut prev = GENESIS_HASH.to_string();
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.seq, i as i64 + 1);
            assert_eq!(r.prev_hash, prev, "record {}", r.seq);
            assert_eq!(r.hash, seal(r));
            prev = r.hash.clone();
        }
    }
}
