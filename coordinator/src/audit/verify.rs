//! Verifying the trail: every record's hash over its content, the chain of
//! previous-record hashes from 1 without a gap, and the newest signed head
//! (in the database and in the file beside the key, whichever is newer)
//! against the record it signed. The first record that does not hold is
//! named — its sequence number, event ID and what failed.
//!
//! The signer ([`super::Trail::sign_head`]) walks the same way from the last
//! signed head before it signs a new one, so a chain cut or rewritten since
//! is never signed over.

use tether_store::{AuditHead, AuditRecord, GENESIS_HASH, Store, StoreError};

use super::chain::{self, AuditKey};

/// Records read per query while walking.
const PAGE: i64 = 1_000;

/// The first record that does not hold, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub seq: i64,
    /// The event ID of that record, when it exists.
    pub event_id: Option<String>,
    pub what: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.event_id {
            Some(id) => write!(
                f,
                "audit record {} (event ID {id}) does not hold: {}",
                self.seq, self.what
            ),
            None => write!(f, "audit record {} does not hold: {}", self.seq, self.what),
        }
    }
}

/// A trail that holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: i64,
    /// The newest record checked: (seq, event ID).
    pub head: Option<(i64, String)>,
    /// The newest signed head, checked against its record.
    pub signed: Option<AuditHead>,
}

/// Where a walk ended: the last record's seq and hash, and how many it read.
#[derive(Clone, Debug)]
pub struct Walked {
    pub seq: i64,
    pub hash: String,
    pub event_id: Option<String>,
    pub records: i64,
}

/// Walks the chain after `(seq, hash)` up to `until` (or its end), checking
/// each record. `Ok(Err(failure))` names the first record that does not
/// hold.
pub async fn walk(
    store: &Store,
    from_seq: i64,
    from_hash: &str,
    until: Option<i64>,
) -> Result<Result<Walked, Failure>, StoreError> {
    let mut at = Walked {
        seq: from_seq,
        hash: from_hash.to_string(),
        event_id: None,
        records: 0,
    };
    loop {
        let rows = store.audit_records_after(at.seq, PAGE).await?;
        let full = rows.len() as i64 == PAGE;
        for r in rows {
            if until.is_some_and(|u| r.seq > u) {
                return Ok(Ok(at));
            }
            if let Err(f) = check(&r, at.seq, &at.hash) {
                return Ok(Err(f));
            }
            at = Walked {
                seq: r.seq,
                hash: r.hash,
                event_id: Some(r.event_id),
                records: at.records + 1,
            };
        }
        if !full {
            return Ok(Ok(at));
        }
    }
}

/// One record against the one before it.
fn check(r: &AuditRecord, prev_seq: i64, prev_hash: &str) -> Result<(), Failure> {
    let fail = |what: String| Failure {
        seq: r.seq,
        event_id: Some(r.event_id.clone()),
        what,
    };
    if r.seq != prev_seq + 1 {
        let missing = if r.seq == prev_seq + 2 {
            format!("record {} before it is missing", prev_seq + 1)
        } else {
            format!(
                "records {} to {} before it are missing",
                prev_seq + 1,
                r.seq - 1
            )
        };
        return Err(fail(format!("{missing} (deleted from the database)")));
    }
    if r.prev_hash != prev_hash {
        return Err(fail(format!(
            "its previous-record hash {} is not record {prev_seq}'s hash {prev_hash}",
            r.prev_hash
        )));
    }
    let computed = chain::hash(r);
    if computed != r.hash {
        return Err(fail(format!(
            "its content does not match its hash (stored {}, computed {computed}): it was changed after it was written",
            r.hash
        )));
    }
    Ok(())
}

/// The newest signed head: the one in the database or the one beside the
/// key, whichever is newer; each must verify under the key. A head in the
/// file that the database lacks means heads were deleted there.
pub async fn newest_head(
    store: &Store,
    key: &AuditKey,
) -> Result<Result<Option<AuditHead>, Failure>, StoreError> {
    let db = store.latest_audit_head().await?;
    let file = match key.read_head() {
        Ok(f) => f,
        Err(why) => {
            return Ok(Err(Failure {
                seq: 0,
                event_id: None,
                what: format!("the signed head beside the audit key cannot be read: {why}"),
            }));
        }
    };
    for (h, whence) in [
        (&db, "in the database"),
        (&file, "in the file beside the audit key"),
    ] {
        if let Some(h) = h
            && !key.verifies(h)
        {
            return Ok(Err(Failure {
                seq: h.seq,
                event_id: None,
                what: format!(
                    "the signed head of record {} {whence} does not verify under the audit key (forged or altered)",
                    h.seq
                ),
            }));
        }
    }
    Ok(Ok(match (db, file) {
        (Some(d), Some(f)) if f.seq > d.seq => Some(f),
        (Some(d), _) => Some(d),
        (None, f) => f,
    }))
}

/// Verifies the whole trail.
pub async fn verify(
    store: &Store,
    key: Option<&AuditKey>,
) -> Result<Result<Verified, Failure>, StoreError> {
    // Heads first: records a head signed existed before it was signed, so
    // records appended while this walks never make a head look cut.
    let signed = match key {
        Some(k) => match newest_head(store, k).await? {
            Ok(h) => h,
            Err(f) => return Ok(Err(f)),
        },
        None => None,
    };
    let walked = match walk(store, 0, GENESIS_HASH, None).await? {
        Ok(w) => w,
        Err(f) => return Ok(Err(f)),
    };
    if let Some(h) = &signed {
        if walked.seq < h.seq {
            return Ok(Err(Failure {
                seq: walked.seq + 1,
                event_id: None,
                what: format!(
                    "records {} to {} are missing: the chain ends at {} but a head signed at {} covers record {} (newest records cut)",
                    walked.seq + 1,
                    h.seq,
                    walked.seq,
                    tether_util::time::iso_ms(h.signed_ms),
                    h.seq
                ),
            }));
        }
        let at = store.audit_records_after(h.seq - 1, 1).await?;
        let Some(r) = at.into_iter().next().filter(|r| r.seq == h.seq) else {
            return Ok(Err(Failure {
                seq: h.seq,
                event_id: None,
                what: "the record a signed head covers is missing".into(),
            }));
        };
        if r.hash != h.hash {
            return Ok(Err(Failure {
                seq: r.seq,
                event_id: Some(r.event_id),
                what: format!(
                    "its hash {} is not the hash {} signed at {}: the chain was rewritten up to here",
                    r.hash,
                    h.hash,
                    tether_util::time::iso_ms(h.signed_ms)
                ),
            }));
        }
    }
    Ok(Ok(Verified {
        records: walked.records,
        head: walked.event_id.map(|e| (walked.seq, e)),
        signed,
    }))
}
