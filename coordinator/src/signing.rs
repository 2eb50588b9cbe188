//! The bytes that get signed, built in one place: a command's envelope, a
//! cancellation, an association. Each is a protobuf message of
//! `tether.proto` signed with the command-signing key (`pki`); a cancel and an
//! association are signed under their own context prefix, so that neither can
//! ever pass for a command.
//!
//! Beside the gRPC edge, this is the one module that knows protobuf: what is
//! signed must be exactly what the agent decodes and verifies.

use prost::Message;
use sha2::Digest as _;
use tether_proto as pb;
use tether_ssm::limits;
use tether_store::{AssociationRow, CommandRow};
use tracing::warn;

use crate::pki::Pki;

/// A signed message: its encoded payload and the Ed25519 signature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signed {
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Deliberately wrong envelopes, for end-to-end tests of the agent's checks.
/// Set with `TETHER_TEST_ENVELOPE_HOOK`; it can only make delivery fail, never
/// let anything unsigned through, because the agent verifies regardless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeHook {
    /// Change the parameters after signing.
    TamperParameters,
    /// Sign an envelope addressed to another instance.
    Misaddress,
    /// Sign an envelope that has already expired.
    Expired,
    /// Send no signature.
    Unsigned,
    /// After each invocation finishes, send its envelope again, byte for byte.
    Replay,
}

impl EnvelopeHook {
    pub fn from_env() -> Option<EnvelopeHook> {
        let v = std::env::var("TETHER_TEST_ENVELOPE_HOOK").ok()?;
        let hook = match v.as_str() {
            "tamper-parameters" => EnvelopeHook::TamperParameters,
            "misaddress" => EnvelopeHook::Misaddress,
            "expired" => EnvelopeHook::Expired,
            "unsigned" => EnvelopeHook::Unsigned,
            "replay" => EnvelopeHook::Replay,
            _ => return None,
        };
        warn!(hook = %v, "TEST HOOK ACTIVE: envelopes are deliberately corrupted");
        Some(hook)
    }
}

/// The envelope of one invocation: the command bound to the instance, the
/// document's content and hash, the resolved parameters, the principal that
/// sent it, the values of its `{{ssm-secure:…}}` references sealed to the
/// node (`secrets`), an expiry and a fresh nonce.
pub fn command(
    pki: &Pki,
    hook: Option<EnvelopeHook>,
    instance_id: &str,
    cmd: &CommandRow,
    secrets: Option<pb::SealedSecrets>,
    now: i64,
) -> Signed {
    let mut signed = pb::SignedCommand {
        instance_id: instance_id.to_string(),
        command_id: cmd.command_id.clone(),
        document_name: cmd.document_name.clone(),
        document_version: cmd.document_version.clone(),
        document_content: cmd.document_content.clone(),
        document_hash: cmd.document_hash.clone(),
        parameters_json: cmd.resolved_json.clone(),
        issued_at_ms: now,
        expires_at_ms: now + limits::ENVELOPE_LIFETIME.as_millis() as i64,
        nonce: hex::encode(rand::random::<[u8; 16]>()),
        requested_by: cmd.requested_by.clone(),
        secrets,
    };
    match hook {
        Some(EnvelopeHook::Misaddress) => signed.instance_id = "mi-00000000000000000".into(),
        Some(EnvelopeHook::Expired) => {
            signed.issued_at_ms = now - 2 * 3_600_000;
            signed.expires_at_ms = now - 3_600_000;
        }
        _ => {}
    }
    let payload = signed.encode_to_vec();
    let signature = pki.sign(&payload);
    match hook {
        Some(EnvelopeHook::TamperParameters) => {
            signed.parameters_json = r#"{"commands":["echo tampered"]}"#.into();
            Signed {
                payload: signed.encode_to_vec(),
                signature,
            }
        }
        Some(EnvelopeHook::Unsigned) => Signed {
            payload,
            signature: Vec::new(),
        },
        _ => Signed { payload, signature },
    }
}

/// The bytes a command's envelope takes, from its variable part (document,
/// resolved parameters, document name, version and hash), counting the fixed
/// fields (IDs, times, nonce, signature, framing) generously.
pub fn envelope_bytes(variable: usize) -> usize {
    variable.saturating_add(1024)
}

/// A cancellation of `command_id` on `instance_id`, valid for an envelope's
/// lifetime.
pub fn cancel(pki: &Pki, instance_id: &str, command_id: &str, now: i64) -> Signed {
    let payload = pb::SignedCancel {
        instance_id: instance_id.to_string(),
        command_id: command_id.to_string(),
        issued_at_ms: now,
        expires_at_ms: now + limits::ENVELOPE_LIFETIME.as_millis() as i64,
    }
    .encode_to_vec();
    let signature = pki.sign(&with_context(pb::CANCEL_SIGNING_CONTEXT, &payload));
    Signed { payload, signature }
}

/// One association for `instance_id`: bound to the instance and the
/// document's hash, without expiry (it runs while the coordinator is away).
pub fn association(pki: &Pki, instance_id: &str, a: &AssociationRow, now: i64) -> Signed {
    let payload = pb::SignedAssociation {
        instance_id: instance_id.to_string(),
        association_id: a.association_id.clone(),
        association_version: a.association_version.to_string(),
        association_name: a.association_name.clone(),
        document_name: a.document_name.clone(),
        document_version: a.document_version.clone(),
        document_content: a.document_content.clone(),
        document_hash: a.document_hash.clone(),
        parameters_json: a.resolved_json.clone(),
        schedule_expression: a.schedule_expression.clone(),
        apply_only_at_cron_interval: a.apply_only_at_cron_interval,
        created_at_ms: a.created_ms,
        issued_at_ms: now,
        requested_by: a.requested_by.clone(),
    }
    .encode_to_vec();
    let signature = pki.sign(&with_context(pb::ASSOCIATION_SIGNING_CONTEXT, &payload));
    Signed { payload, signature }
}

/// The trust bundle of one node (see `TrustEnvelope` in tether.proto), and
/// its digest: the SHA-256 of its payload, which is the same bytes for the
/// same content (no time or nonce in it), so an agent holding it is not
/// sent it again.
pub fn trust(pki: &Pki, instance_id: &str, sealing_public_key: &[u8]) -> (Signed, String) {
    let payload = pb::TrustBundle {
        instance_id: instance_id.to_string(),
        sealing_public_key: sealing_public_key.to_vec(),
        command_signing_public_key: pki.signing_public_key(),
        release_public_key: pki.release_public_key(),
    }
    .encode_to_vec();
    let digest = hex::encode(sha2::Sha256::digest(&payload));
    let signature = pki.sign(&with_context(pb::TRUST_SIGNING_CONTEXT, &payload));
    (Signed { payload, signature }, digest)
}

fn with_context(context: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut covered = Vec::with_capacity(context.len() + payload.len());
    covered.extend_from_slice(context);
    covered.extend_from_slice(payload);
    covered
}
