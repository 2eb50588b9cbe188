//! The chain's cryptography: a record's canonical encoding and SHA-256, and
//! the signed chain head (Ed25519 under `audit.key` in the secrets
//! directory, never in the database; the newest head is also kept beside
//! the key in `audit-head.json`).
//!
//! Canonical encoding (version 1): the domain `tether-audit-record-v1\n`,
//! then every stored column in a fixed order, each as its name, a 0x00, a
//! big-endian u64 length and its UTF-8 bytes; an absent optional value is
//! the name, 0x00 and the length u64::MAX. Integers are written in decimal,
//! the flag as `0`/`1`. `prev_hash` is included, so each hash covers the
//! whole chain before it.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tether_store::{AuditHead, AuditRecord};

/// Why the audit key or head file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not a valid Ed25519 PKCS#8 key")]
    BadKey(PathBuf),
    #[error("cannot generate the audit key")]
    Generate,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The hash of a record (hex SHA-256 over its canonical encoding).
pub fn hash(r: &AuditRecord) -> String {
    let mut h = Sha256::new();
    h.update(b"tether-audit-record-v1\n");
    let mut field = |name: &str, value: Option<&str>| {
        h.update(name.as_bytes());
        h.update([0u8]);
        match value {
            Some(v) => {
                h.update((v.len() as u64).to_be_bytes());
                h.update(v.as_bytes());
            }
            None => h.update(u64::MAX.to_be_bytes()),
        }
    };
    field("seq", Some(&r.seq.to_string()));
    field("event_id", Some(&r.event_id));
    field("request_id", Some(&r.request_id));
    field("time_ms", Some(&r.time_ms.to_string()));
    field("kind", Some(&r.kind));
    field("principal_arn", Some(&r.principal_arn));
    field("user_name", Some(&r.user_name));
    field("credential_id", r.credential_id.as_deref());
    field("source", r.source.as_deref());
    field("transport", Some(&r.transport));
    field("action", Some(&r.action));
    field("event_name", Some(&r.event_name));
    field("event_source", Some(&r.event_source));
    field("read_only", Some(if r.read_only { "1" } else { "0" }));
    field("resources_json", Some(&r.resources_json));
    field("request_json", Some(&r.request_json));
    field("outcome_json", Some(&r.outcome_json));
    field("error_code", r.error_code.as_deref());
    field("error_message", r.error_message.as_deref());
    field("replica", Some(&r.replica));
    field("prev_hash", Some(&r.prev_hash));
    hex::encode(h.finalize())
}

/// The bytes a head's signature covers.
fn head_message(seq: i64, hash: &str, signed_ms: i64, replica: &str) -> Vec<u8> {
    let mut m = b"tether-audit-head-v1\n".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&(hash.len() as u64).to_be_bytes());
    m.extend_from_slice(hash.as_bytes());
    m.extend_from_slice(&signed_ms.to_be_bytes());
    m.extend_from_slice(&(replica.len() as u64).to_be_bytes());
    m.extend_from_slice(replica.as_bytes());
    m
}

/// The audit key and where the newest signed head is kept beside it.
pub struct AuditKey {
    pair: Ed25519KeyPair,
    head_file: PathBuf,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("head_file", &self.head_file)
            .finish_non_exhaustive()
    }
}

/// The key's file name in the secrets directory.
pub const KEY_FILE: &str = "audit.key";
/// The newest signed head's file name beside it.
pub const HEAD_FILE: &str = "audit-head.json";

/// The head as kept in `audit-head.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HeadFile {
    seq: i64,
    hash: String,
    signed_ms: i64,
    replica: String,
    signature: String,
}

impl AuditKey {
    /// Loads `secrets/audit.key`, creating it (0600) on first start under
    /// the secrets directory's lock, so replicas starting together make one.
    pub fn load_or_create(secrets: &Path) -> Result<AuditKey, KeyError> {
        let lock_path = secrets.join(".lock");
        // Held until the key is loaded or made.
        let _lock = tether_util::fs::lock_exclusive(&lock_path).map_err(io(&lock_path))?;
        let path = secrets.join(KEY_FILE);
        let der = if path.exists() {
            fs::read(&path).map_err(io(&path))?
        } else {
            let rng = ring::rand::SystemRandom::new();
            let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Generate)?;
            tether_util::fs::write_private(&path, doc.as_ref()).map_err(io(&path))?;
            doc.as_ref().to_vec()
        };
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| KeyError::BadKey(path.clone()))?;
        Ok(AuditKey {
            pair,
            head_file: secrets.join(HEAD_FILE),
        })
    }

    /// Signs the head `(seq, hash)` now, for `replica`.
    pub fn sign(&self, seq: i64, hash: &str, signed_ms: i64, replica: &str) -> AuditHead {
        let sig = self.pair.sign(&head_message(seq, hash, signed_ms, replica));
        AuditHead {
            seq,
            hash: hash.to_string(),
            signed_ms,
            replica: replica.to_string(),
            signature: hex::encode(sig.as_ref()),
        }
    }

    /// Whether `head`'s signature verifies under this key.
    pub fn verifies(&self, head: &AuditHead) -> bool {
        let Ok(sig) = hex::decode(&head.signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, self.pair.public_key().as_ref())
            .verify(
                &head_message(head.seq, &head.hash, head.signed_ms, &head.replica),
                &sig,
            )
            .is_ok()
    }

    /// Keeps `head` as the newest beside the key (atomically, 0600).
    pub fn write_head(&self, head: &AuditHead) -> Result<(), KeyError> {
        let file = HeadFile {
            seq: head.seq,
            hash: head.hash.clone(),
            signed_ms: head.signed_ms,
            replica: head.replica.clone(),
            signature: head.signature.clone(),
        };
        let mut text = serde_json::to_vec_pretty(&file).unwrap_or_default();
        let _ = text.write_all(b"\n");
        tether_util::fs::write_private(&self.head_file, &text).map_err(io(&self.head_file))
    }

    /// The head kept beside the key: `Ok(None)` when there is none yet.
    pub fn read_head(&self) -> Result<Option<AuditHead>, String> {
        let text = match fs::read(&self.head_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.head_file.display())),
        };
        let f: HeadFile = serde_json::from_slice(&text)
            .map_err(|e| format!("{}: not a signed head: {e}", self.head_file.display()))?;
        Ok(Some(AuditHead {
            seq: f.seq,
            hash: f.hash,
            signed_ms: f.signed_ms,
            replica: f.replica,
            signature: f.signature,
        }))
    }

    pub fn head_file(&self) -> &Path {
        &self.head_file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            seq: 1,
            event_id: "e".into(),
            request_id: "r".into(),
            time_ms: 5,
            kind: "outcome".into(),
            principal_arn: "arn:aws:iam::123456789012:root".into(),
            user_name: "root".into(),
            credential_id: None,
            source: None,
            transport: "grpc".into(),
            action: "ssm:SendCommand".into(),
            event_name: "SendCommand".into(),
            event_source: "ssm.amazonaws.com".into(),
            read_only: false,
            resources_json: "[]".into(),
            request_json: "{}".into(),
            outcome_json: "{}".into(),
            error_code: None,
            error_message: None,
            replica: "r1".into(),
            prev_hash: tether_store::GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn every_field_is_covered_and_absent_differs_from_empty() {
        let base = hash(&record());
        assert_eq!(base.len(), 64);
        assert_eq!(base, hash(&record()), "deterministic");
        type Change = Box<dyn Fn(&mut AuditRecord)>;
        let changed: Vec<Change> = vec![
            Box::new(|r| r.seq = 2),
            Box::new(|r| r.event_id.push('x')),
            Box::new(|r| r.time_ms += 1),
            Box::new(|r| r.credential_id = Some(String::new())),
            Box::new(|r| r.source = Some("::1".into())),
            Box::new(|r| r.read_only = true),
            Box::new(|r| r.request_json = "{ }".into()),
            Box::new(|r| r.error_code = Some("X".into())),
            Box::new(|r| r.replica.push('x')),
            Box::new(|r| r.prev_hash = "1".repeat(64)),
        ];
        for (i, change) in changed.iter().enumerate() {
            let mut r = record();
            change(&mut r);
            assert_ne!(hash(&r), base, "change {i} is seen");
        }
        // The boundary between two fields cannot be moved.
        let (mut a, mut b) = (record(), record());
        a.event_name = "ab".into();
        a.event_source = "c".into();
        b.event_name = "a".into();
        b.event_source = "bc".into();
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn heads_are_signed_and_kept_beside_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = AuditKey::load_or_create(dir.path()).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let head = key.sign(7, &"a".repeat(64), 1_000, "r1");
        assert!(key.verifies(&head));
        let mut forged = head.clone();
        forged.seq = 6;
        assert!(!key.verifies(&forged), "the sequence number is signed");
        assert_eq!(key.read_head().unwrap(), None);
        key.write_head(&head).unwrap();
        assert_eq!(key.read_head().unwrap(), Some(head.clone()));
        // The same key on the next start.
        let again = AuditKey::load_or_create(dir.path()).unwrap();
        assert!(again.verifies(&head));
        // Another key does not verify it.
        let other = AuditKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(!other.verifies(&head));
    }
}
