//! Verifying a signed command envelope before anything runs. Pure: the caller
//! supplies the key, the instance ID, the time and what it has already seen.
//!
//! An envelope is accepted only if the Ed25519 signature over its payload
//! verifies with the coordinator's command-signing key, it is addressed to this
//! instance, it has not expired, its document matches its hash, and its command
//! ID is well formed (it names a spool directory).

use prost::Message;
use ring::signature::{ED25519, UnparsedPublicKey};
use sha2::{Digest, Sha256};
use tether_proto as pb;

/// Allowance for clock differences beyond the measured skew.
pub const CLOCK_TOLERANCE_MS: i64 = 60_000;

/// Why an envelope was refused; the message goes to the log and the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("envelope is not signed")]
    Unsigned,
    #[error(
        "envelope signature does not verify with the coordinator's command-signing key (altered in transit?)"
    )]
    BadSignature,
    #[error("envelope payload is not a signed command: {0}")]
    Malformed(String),
    #[error("envelope is addressed to {to}, not to this instance {me}")]
    Misaddressed { to: String, me: String },
    #[error(
        "envelope expired at {expired_ms} ms (now {now_ms} ms, after correcting for clock skew)"
    )]
    Expired { expired_ms: i64, now_ms: i64 },
    #[error("envelope was issued in the future ({issued_ms} ms, now {now_ms} ms)")]
    FromTheFuture { issued_ms: i64, now_ms: i64 },
    #[error("document hash {claimed} does not match the document's content ({actual})")]
    HashMismatch { claimed: String, actual: String },
    #[error("command ID {0:?} is not a UUID")]
    BadCommandId(String),
    #[error("envelope replayed: command {0} was already received in this exact envelope")]
    Replayed(String),
    /// It verified, but the node's own policy does not accept it.
    #[error(transparent)]
    NodePolicy(#[from] crate::policy::PolicyRefusal),
}

/// The best-effort command ID of an envelope, for refusal reports, even when it does not verify.
pub fn claimed_command_id(env: &pb::CommandEnvelope) -> Option<String> {
    pb::SignedCommand::decode(env.payload.as_slice())
        .ok()
        .map(|c| c.command_id)
        .filter(|id| is_command_id(id))
}

/// Lowercase UUID: safe as a directory name.
pub fn is_command_id(id: &str) -> bool {
    id.len() == 36
        && id.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

fn check_signature(payload: &[u8], signature: &[u8], key: &[u8]) -> Result<(), Refusal> {
    if signature.is_empty() {
        return Err(Refusal::Unsigned);
    }
    UnparsedPublicKey::new(&ED25519, key)
        .verify(payload, signature)
        .map_err(|_| Refusal::BadSignature)
}

/// Verifies `env` for `instance_id` at `now_ms` (already corrected for skew).
pub fn verify(
    env: &pb::CommandEnvelope,
    signing_key: &[u8],
    instance_id: &str,
    now_ms: i64,
) -> Result<pb::SignedCommand, Refusal> {
    check_signature(&env.payload, &env.signature, signing_key)?;
    let cmd = pb::SignedCommand::decode(env.payload.as_slice())
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
    if cmd.instance_id != instance_id {
        return Err(Refusal::Misaddressed {
            to: cmd.instance_id,
            me: instance_id.to_string(),
        });
    }
    if !is_command_id(&cmd.command_id) {
        return Err(Refusal::BadCommandId(cmd.command_id));
    }
    if cmd.expires_at_ms + CLOCK_TOLERANCE_MS < now_ms {
        return Err(Refusal::Expired {
            expired_ms: cmd.expires_at_ms,
            now_ms,
        });
    }
    if cmd.issued_at_ms - CLOCK_TOLERANCE_MS > now_ms {
        return Err(Refusal::FromTheFuture {
            issued_ms: cmd.issued_at_ms,
            now_ms,
        });
    }
    let actual = hex::encode(Sha256::digest(cmd.document_content.as_bytes()));
    if actual != cmd.document_hash {
        return Err(Refusal::HashMismatch {
            claimed: cmd.document_hash,
            actual,
        });
    }
    Ok(cmd)
}

/// Verifies a signed cancellation for `instance_id` at `now_ms`: the
/// signature covers [`pb::CANCEL_SIGNING_CONTEXT`] followed by the payload, so
/// no command signature can pass for a cancellation or the reverse.
pub fn verify_cancel(
    env: &pb::CommandEnvelope,
    signing_key: &[u8],
    instance_id: &str,
    now_ms: i64,
) -> Result<pb::SignedCancel, Refusal> {
    let mut signed = pb::CANCEL_SIGNING_CONTEXT.to_vec();
    signed.extend_from_slice(&env.payload);
    check_signature(&signed, &env.signature, signing_key)?;
    let cancel = pb::SignedCancel::decode(env.payload.as_slice())
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
    if cancel.instance_id != instance_id {
        return Err(Refusal::Misaddressed {
            to: cancel.instance_id,
            me: instance_id.to_string(),
        });
    }
    if !is_command_id(&cancel.command_id) {
        return Err(Refusal::BadCommandId(cancel.command_id));
    }
    if cancel.expires_at_ms + CLOCK_TOLERANCE_MS < now_ms {
        return Err(Refusal::Expired {
            expired_ms: cancel.expires_at_ms,
            now_ms,
        });
    }
    Ok(cancel)
}

/// Verifies the trust bundle a poll handed over (signed under
/// TRUST_SIGNING_CONTEXT) for `instance_id`; answers it and its digest (the
/// SHA-256 of its payload, which the next poll sends back).
pub fn verify_trust(
    env: &pb::TrustEnvelope,
    signing_key: &[u8],
    instance_id: &str,
) -> Result<(pb::TrustBundle, String), Refusal> {
    let mut signed = pb::TRUST_SIGNING_CONTEXT.to_vec();
    signed.extend_from_slice(&env.payload);
    check_signature(&signed, &env.signature, signing_key)?;
    let t = pb::TrustBundle::decode(env.payload.as_slice())
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
    if t.instance_id != instance_id {
        return Err(Refusal::Misaddressed {
            to: t.instance_id,
            me: instance_id.to_string(),
        });
    }
    Ok((t, hex::encode(Sha256::digest(&env.payload))))
}

/// Runs `verify` with each key in `keys` (the current command-signing key
/// first, then those the coordinator's trust bundle accepts besides it):
/// the first that verifies answers; a refusal other than a bad signature
/// is the same whatever the key, and answers at once.
pub fn with_any_key<T>(
    keys: &[Vec<u8>],
    verify: impl Fn(&[u8]) -> Result<T, Refusal>,
) -> Result<T, Refusal> {
    let mut last = Refusal::BadSignature;
    for key in keys {
        match verify(key) {
            Err(Refusal::BadSignature) => last = Refusal::BadSignature,
            Err(Refusal::Unsigned) => return Err(Refusal::Unsigned),
            done => return done,
        }
    }
    Err(last)
}

/// Verifies a trust bundle with the keys this node holds (`held`, see
/// [`with_any_key`]), or — for a node that was offline while the
/// coordinator rotated its signing key — with a new key that a key it holds
/// endorsed: the bundle names the endorsing key and carries its signature
/// over [`pb::KEY_ENDORSEMENT_CONTEXT`] followed by the new key, which must
/// verify before the bundle's own signature is checked with the new key.
pub fn verify_trust_rotating(
    env: &pb::TrustEnvelope,
    held: &[Vec<u8>],
    instance_id: &str,
) -> Result<(pb::TrustBundle, String), Refusal> {
    match with_any_key(held, |k| verify_trust(env, k, instance_id)) {
        Err(Refusal::BadSignature) => {}
        done => return done,
    }
    let claimed = pb::TrustBundle::decode(env.payload.as_slice())
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
    let by = &claimed.command_signing_key_endorsed_by;
    if by.is_empty() || !held.iter().any(|k| k == by) {
        return Err(Refusal::BadSignature);
    }
    let mut endorsed = pb::KEY_ENDORSEMENT_CONTEXT.to_vec();
    endorsed.extend_from_slice(&claimed.command_signing_public_key);
    check_signature(&endorsed, &claimed.command_signing_key_endorsement, by)?;
    verify_trust(env, &claimed.command_signing_public_key, instance_id)
}

/// Verifies a signed association for `instance_id`. Associations carry no
/// expiry (they run on schedule while the coordinator is unreachable); the
/// signature, the address, the document hash and the ID's form are checked.
pub fn verify_association(
    env: &pb::AssociationEnvelope,
    signing_key: &[u8],
    instance_id: &str,
) -> Result<pb::SignedAssociation, Refusal> {
    let mut signed = pb::ASSOCIATION_SIGNING_CONTEXT.to_vec();
    signed.extend_from_slice(&env.payload);
    check_signature(&signed, &env.signature, signing_key)?;
    let a = pb::SignedAssociation::decode(env.payload.as_slice())
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
    if a.instance_id != instance_id {
        return Err(Refusal::Misaddressed {
            to: a.instance_id,
            me: instance_id.to_string(),
        });
    }
    if !is_command_id(&a.association_id) {
        return Err(Refusal::BadCommandId(a.association_id));
    }
    let actual = hex::encode(Sha256::digest(a.document_content.as_bytes()));
    if actual != a.document_hash {
        return Err(Refusal::HashMismatch {
            claimed: a.document_hash,
            actual,
        });
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    pub(super) const ME: &str = "mi-0123456789abcdef0";
    const CMD: &str = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";

    pub(super) fn key() -> Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()
    }

    fn command() -> pb::SignedCommand {
        let content = r#"{"schemaVersion":"1.2"}"#.to_string();
        pb::SignedCommand {
            instance_id: ME.into(),
            command_id: CMD.into(),
            document_name: "AWS-RunShellScript".into(),
            document_version: "1".into(),
            document_hash: hex::encode(Sha256::digest(content.as_bytes())),
            document_content: content,
            parameters_json: r#"{"commands":["echo hi"]}"#.into(),
            issued_at_ms: 1_000_000,
            expires_at_ms: 1_600_000,
            nonce: "n".into(),
            requested_by: "arn:aws:iam::123456789012:user/alice".into(),
            secrets: None,
        }
    }

    fn seal(k: &Ed25519KeyPair, c: &pb::SignedCommand) -> pb::CommandEnvelope {
        let payload = c.encode_to_vec();
        pb::CommandEnvelope {
            signature: k.sign(&payload).as_ref().to_vec(),
            payload,
        }
    }

    #[test]
    fn good_envelope_verifies() {
        let k = key();
        let env = seal(&k, &command());
        let got = verify(&env, k.public_key().as_ref(), ME, 1_100_000).unwrap();
        assert_eq!(got, command());
    }

    #[test]
    fn each_kind_of_bad_envelope_is_refused() {
        let k = key();
        let pk = k.public_key().as_ref().to_vec();
        let now = 1_100_000;

        let mut unsigned = seal(&k, &command());
        unsigned.signature.clear();
        assert_eq!(verify(&unsigned, &pk, ME, now), Err(Refusal::Unsigned));

        let mut altered = seal(&k, &command());
        let mut c = command();
        c.parameters_json = r#"{"commands":["rm -rf /"]}"#.into();
        altered.payload = c.encode_to_vec();
        assert_eq!(verify(&altered, &pk, ME, now), Err(Refusal::BadSignature));

        let other = key();
        let forged = seal(&other, &command());
        assert_eq!(verify(&forged, &pk, ME, now), Err(Refusal::BadSignature));

        let mut c = command();
        c.instance_id = "mi-00000000000000000".into();
        assert!(matches!(
            verify(&seal(&k, &c), &pk, ME, now),
            Err(Refusal::Misaddressed { .. })
        ));

        assert!(matches!(
            verify(
                &seal(&k, &command()),
                &pk,
                ME,
                1_600_000 + CLOCK_TOLERANCE_MS + 1
            ),
            Err(Refusal::Expired { .. })
        ));

        let mut c = command();
        c.document_content.push(' ');
        assert!(matches!(
            verify(&seal(&k, &c), &pk, ME, now),
            Err(Refusal::HashMismatch { .. })
        ));

        let mut c = command();
        c.command_id = "../../etc".into();
        assert!(matches!(
            verify(&seal(&k, &c), &pk, ME, now),
            Err(Refusal::BadCommandId(_))
        ));
    }

    #[test]
    fn cancellations_verify_only_with_their_own_context() {
        let k = key();
        let pk = k.public_key().as_ref().to_vec();
        let cancel = pb::SignedCancel {
            instance_id: ME.into(),
            command_id: CMD.into(),
            issued_at_ms: 1_000_000,
            expires_at_ms: 1_600_000,
        };
        let payload = cancel.encode_to_vec();
        let mut signed = pb::CANCEL_SIGNING_CONTEXT.to_vec();
        signed.extend_from_slice(&payload);
        let good = pb::CommandEnvelope {
            signature: k.sign(&signed).as_ref().to_vec(),
            payload: payload.clone(),
        };
        assert_eq!(verify_cancel(&good, &pk, ME, 1_100_000), Ok(cancel));
        // Signed without the context (as a command would be): refused.
        let bare = pb::CommandEnvelope {
            signature: k.sign(&payload).as_ref().to_vec(),
            payload,
        };
        assert_eq!(
            verify_cancel(&bare, &pk, ME, 1_100_000),
            Err(Refusal::BadSignature)
        );
        // And a command envelope never verifies as a cancellation.
        let cmd = seal(&k, &command());
        assert_eq!(
            verify_cancel(&cmd, &pk, ME, 1_100_000),
            Err(Refusal::BadSignature)
        );
        assert!(matches!(
            verify_cancel(&good, &pk, "mi-00000000000000000", 1_100_000),
            Err(Refusal::Misaddressed { .. })
        ));
        assert!(matches!(
            verify_cancel(&good, &pk, ME, 1_600_000 + CLOCK_TOLERANCE_MS + 1),
            Err(Refusal::Expired { .. })
        ));
    }

    #[test]
    fn command_ids_must_be_lowercase_uuids() {
        assert!(is_command_id(CMD));
        assert!(!is_command_id(&CMD.to_uppercase()));
        assert!(!is_command_id("0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f"));
        assert!(!is_command_id("0b1c2d3e/4f50-4617-8293-a4b5c6d7e8f9"));
    }
}

#[cfg(test)]
mod association_tests {
    use super::tests::{ME, key};
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn association() -> pb::SignedAssociation {
        let content = r#"{"schemaVersion":"2.0"}"#.to_string();
        pb::SignedAssociation {
            instance_id: ME.into(),
            association_id: "6a1f3c2e-8b4d-4e5f-9a0b-1c2d3e4f5a6b".into(),
            association_version: "1".into(),
            document_name: "AWS-GatherSoftwareInventory".into(),
            document_hash: hex::encode(Sha256::digest(content.as_bytes())),
            document_content: content,
            schedule_expression: "rate(30 minutes)".into(),
            ..Default::default()
        }
    }

    fn seal(
        k: &Ed25519KeyPair,
        a: &pb::SignedAssociation,
        context: &[u8],
    ) -> pb::AssociationEnvelope {
        let payload = a.encode_to_vec();
        let mut covered = context.to_vec();
        covered.extend_from_slice(&payload);
        pb::AssociationEnvelope {
            signature: k.sign(&covered).as_ref().to_vec(),
            payload,
        }
    }

    #[test]
    fn associations_verify_only_when_signed_for_this_instance_as_associations() {
        let k = key();
        let public = k.public_key().as_ref().to_vec();
        let good = seal(&k, &association(), pb::ASSOCIATION_SIGNING_CONTEXT);
        assert_eq!(
            verify_association(&good, &public, ME).unwrap(),
            association()
        );
        // A signature made for another kind of message does not pass.
        let as_cancel = seal(&k, &association(), pb::CANCEL_SIGNING_CONTEXT);
        assert_eq!(
            verify_association(&as_cancel, &public, ME),
            Err(Refusal::BadSignature)
        );
        let bare = seal(&k, &association(), b"");
        assert_eq!(
            verify_association(&bare, &public, ME),
            Err(Refusal::BadSignature)
        );
        let mut unsigned = good.clone();
        unsigned.signature.clear();
        assert_eq!(
            verify_association(&unsigned, &public, ME),
            Err(Refusal::Unsigned)
        );
        assert!(matches!(
            verify_association(&good, &public, "mi-00000000000000000"),
            Err(Refusal::Misaddressed { .. })
        ));
        let mut altered = association();
        altered.document_content.push(' ');
        let altered = seal(&k, &altered, pb::ASSOCIATION_SIGNING_CONTEXT);
        assert!(matches!(
            verify_association(&altered, &public, ME),
            Err(Refusal::HashMismatch { .. })
        ));
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::tests::{ME, key};
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn bundle(signer: &Ed25519KeyPair, b: &pb::TrustBundle) -> pb::TrustEnvelope {
        let payload = b.encode_to_vec();
        let mut covered = pb::TRUST_SIGNING_CONTEXT.to_vec();
        covered.extend_from_slice(&payload);
        pb::TrustEnvelope {
            signature: signer.sign(&covered).as_ref().to_vec(),
            payload,
        }
    }

    #[test]
    fn a_new_signing_key_is_taken_only_when_a_held_key_endorsed_it() {
        let (old, new, stranger) = (key(), key(), key());
        let old_pub = old.public_key().as_ref().to_vec();
        let new_pub = new.public_key().as_ref().to_vec();
        let mut endorsement = pb::KEY_ENDORSEMENT_CONTEXT.to_vec();
        endorsement.extend_from_slice(&new_pub);
        let b = pb::TrustBundle {
            instance_id: ME.into(),
            command_signing_public_key: new_pub.clone(),
            command_signing_key_endorsed_by: old_pub.clone(),
            command_signing_key_endorsement: old.sign(&endorsement).as_ref().to_vec(),
            ..Default::default()
        };
        // Held: the old key alone (offline through the rotation).
        let (got, _) =
            verify_trust_rotating(&bundle(&new, &b), std::slice::from_ref(&old_pub), ME).unwrap();
        assert_eq!(got.command_signing_public_key, new_pub);
        // Held: the new key already (learnt while introduced).
        verify_trust_rotating(&bundle(&new, &b), &[old_pub.clone(), new_pub.clone()], ME).unwrap();
        // A key endorsed by no key held, or an endorsement forged by another key.
        let stranger_pub = stranger.public_key().as_ref().to_vec();
        assert_eq!(
            verify_trust_rotating(&bundle(&new, &b), std::slice::from_ref(&stranger_pub), ME),
            Err(Refusal::BadSignature)
        );
        let forged = pb::TrustBundle {
            command_signing_key_endorsement: stranger.sign(&endorsement).as_ref().to_vec(),
            ..b.clone()
        };
        assert_eq!(
            verify_trust_rotating(&bundle(&new, &forged), std::slice::from_ref(&old_pub), ME),
            Err(Refusal::BadSignature)
        );
        // Endorsed, but the bundle itself signed by someone else.
        assert_eq!(
            verify_trust_rotating(&bundle(&stranger, &b), &[old_pub], ME),
            Err(Refusal::BadSignature)
        );
    }
}
