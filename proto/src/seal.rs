//! Secrets sealed to one node (`SealedSecrets` in a signed command).
//!
//! Each node holds an X25519 key pair of its own ([`NodeKey`]; the private
//! half never leaves it) and sends the public half on every poll. The
//! coordinator seals a command's secret values to it: a fresh ephemeral
//! X25519 key, their shared secret through HKDF-SHA256 into an AES-256-GCM
//! key, bound (HKDF info and AEAD associated data) to the node's instance ID
//! and to what the secrets belong to (a command ID), so a sealed blob moved
//! into another envelope, or to another node, does not open. The delivery
//! records, the agent's spool and a captured envelope carry only ciphertext.

#![warn(clippy::all)]

use prost::Message as _;
use ring::aead::{self, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::{SealedSecrets, SecretValue, SecretValues};

/// HKDF info prefix and AEAD associated data prefix.
const CONTEXT: &[u8] = b"tether-sealed-secrets-v1\0";

/// Why sealed secrets could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the node's sealing key is {0} bytes long, not 32")]
    BadNodeKey(usize),
    #[error("the sealed secrets are malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "the secrets were sealed to another key of this node ({sealed_to}, this node holds {held}): \
         the node's sealing key was replaced after the command was sent; send it again"
    )]
    OtherKey { sealed_to: String, held: String },
    #[error(
        "the sealed secrets do not open with this node's key (tampered with, or bound to another node or command)"
    )]
    DoesNotOpen,
    #[error("no randomness available to seal")]
    NoRandomness,
}

/// A node's X25519 sealing key.
pub struct NodeKey(StaticSecret);

impl NodeKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<NodeKey, SealError> {
        let mut bytes = [0_u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| SealError::NoRandomness)?;
        Ok(NodeKey(StaticSecret::from(bytes)))
    }

    /// The key as kept on the node (32 raw bytes).
    pub fn from_bytes(bytes: [u8; 32]) -> NodeKey {
        NodeKey(StaticSecret::from(bytes))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half, sent to the coordinator.
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.0).to_bytes()
    }
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey(public {})", short(&self.public()))
    }
}

/// The first bytes of a key in hex, to name it.
pub fn short(key: &[u8]) -> String {
    key.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The purpose a command's secrets are sealed for.
pub fn command_purpose(command_id: &str) -> String {
    format!("command/{command_id}")
}

/// The purpose an association run's secrets are sealed for.
pub fn association_purpose(association_id: &str, version: &str) -> String {
    format!("association/{association_id}/{version}")
}

/// What sealed secrets are bound to: the instance, and what they belong to
/// ([`command_purpose`], [`association_purpose`]).
fn info(instance_id: &str, purpose: &str) -> Vec<u8> {
    let mut v = CONTEXT.to_vec();
    v.extend_from_slice(instance_id.as_bytes());
    v.push(0);
    v.extend_from_slice(purpose.as_bytes());
    v
}

struct Len;

impl ring::hkdf::KeyType for Len {
    fn len(&self) -> usize {
        32
    }
}

fn aead_key(shared: &[u8; 32], salt: &[u8], info: &[u8]) -> Result<LessSafeKey, SealError> {
    let prk = Salt::new(HKDF_SHA256, salt).extract(shared);
    let info = [info];
    let okm = prk
        .expand(&info, Len)
        .map_err(|_| SealError::Malformed("key derivation"))?;
    let mut key = [0_u8; 32];
    okm.fill(&mut key)
        .map_err(|_| SealError::Malformed("key derivation"))?;
    let unbound = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| SealError::DoesNotOpen)?;
    Ok(LessSafeKey::new(unbound))
}

fn public_key(bytes: &[u8]) -> Result<PublicKey, SealError> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| SealError::BadNodeKey(bytes.len()))?;
    Ok(PublicKey::from(arr))
}

/// Seals `values` to the node whose sealing public key is `node_public`,
/// bound to `instance_id` and `purpose`.
pub fn seal(
    node_public: &[u8],
    instance_id: &str,
    purpose: &str,
    values: &[SecretValue],
) -> Result<SealedSecrets, SealError> {
    let node = public_key(node_public)?;
    let ephemeral = NodeKey::generate()?;
    let ephemeral_public = ephemeral.public();
    let shared = ephemeral.0.diffie_hellman(&node);
    if !shared.was_contributory() {
        return Err(SealError::BadNodeKey(32));
    }
    let mut salt = ephemeral_public.to_vec();
    salt.extend_from_slice(node.as_bytes());
    let info = info(instance_id, purpose);
    let key = aead_key(shared.as_bytes(), &salt, &info)?;
    let mut nonce = [0_u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| SealError::NoRandomness)?;
    let mut data = SecretValues {
        values: values.to_vec(),
    }
    .encode_to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&info),
        &mut data,
    )
    .map_err(|_| SealError::Malformed("sealing"))?;
    Ok(SealedSecrets {
        ephemeral_public_key: ephemeral_public.to_vec(),
        nonce: nonce.to_vec(),
        ciphertext: data,
        sealing_public_key: node.as_bytes().to_vec(),
    })
}

/// Opens secrets sealed to `key`, checking they are bound to `instance_id`
/// and `purpose`.
pub fn open(
    key: &NodeKey,
    instance_id: &str,
    purpose: &str,
    sealed: &SealedSecrets,
) -> Result<Vec<SecretValue>, SealError> {
    let held = key.public();
    if !sealed.sealing_public_key.is_empty() && sealed.sealing_public_key != held {
        return Err(SealError::OtherKey {
            sealed_to: short(&sealed.sealing_public_key),
            held: short(&held),
        });
    }
    let ephemeral = public_key(&sealed.ephemeral_public_key)
        .map_err(|_| SealError::Malformed("ephemeral key"))?;
    let nonce: [u8; 12] = sealed
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| SealError::Malformed("nonce"))?;
    let shared = key.0.diffie_hellman(&ephemeral);
    if !shared.was_contributory() {
        return Err(SealError::Malformed("ephemeral key"));
    }
    let mut salt = ephemeral.as_bytes().to_vec();
    salt.extend_from_slice(&held);
    let info = info(instance_id, purpose);
    let aead_key = aead_key(shared.as_bytes(), &salt, &info)?;
    let mut data = sealed.ciphertext.clone();
    let plain = aead_key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&info),
            &mut data,
        )
        .map_err(|_| SealError::DoesNotOpen)?;
    let values = SecretValues::decode(&plain[..]).map_err(|_| SealError::Malformed("content"));
    // The plaintext copy goes; the decoded values are the caller's to keep short-lived.
    data.iter_mut().for_each(|b| *b = 0);
    Ok(values?.values)
}

/// The bytes sealing adds to `values`' own (keys, nonce, tag, framing).
pub fn overhead(values: usize) -> usize {
    values + 32 + 32 + 12 + aead::MAX_TAG_LEN + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(reference: &str, v: &str) -> SecretValue {
        SecretValue {
            reference: reference.into(),
            value: v.into(),
            name: "/adjoin/password".into(),
            version: 3,
        }
    }

    #[test]
    fn sealed_values_open_only_for_their_node_instance_and_purpose() {
        let node = NodeKey::generate().unwrap();
        let values = vec![value("{{ssm-secure:/adjoin/password}}", "Pa55 w0rd!")];
        let sealed = seal(&node.public(), "mi-1", "command/c1", &values).unwrap();
        assert!(
            !sealed
                .ciphertext
                .windows(b"Pa55".len())
                .any(|w| w == b"Pa55")
        );
        assert_eq!(open(&node, "mi-1", "command/c1", &sealed).unwrap(), values);
        // Kept and restored from its bytes (as the agent does after a restart).
        let again = NodeKey::from_bytes(node.to_bytes());
        assert_eq!(open(&again, "mi-1", "command/c1", &sealed).unwrap(), values);
        assert_eq!(
            open(&node, "mi-2", "command/c1", &sealed),
            Err(SealError::DoesNotOpen)
        );
        assert_eq!(
            open(&node, "mi-1", "command/c2", &sealed),
            Err(SealError::DoesNotOpen)
        );
        let other = NodeKey::generate().unwrap();
        assert!(matches!(
            open(&other, "mi-1", "command/c1", &sealed),
            Err(SealError::OtherKey { .. })
        ));
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            open(&node, "mi-1", "command/c1", &tampered),
            Err(SealError::DoesNotOpen)
        );
        let mut short_nonce = sealed;
        short_nonce.nonce.pop();
        assert_eq!(
            open(&node, "mi-1", "command/c1", &short_nonce),
            Err(SealError::Malformed("nonce"))
        );
    }

    #[test]
    fn two_seals_of_one_value_differ_and_bad_keys_are_named() {
        let node = NodeKey::generate().unwrap();
        let values = vec![value("{{ssm-secure:/a}}", "x")];
        let a = seal(&node.public(), "mi-1", "command/c1", &values).unwrap();
        let b = seal(&node.public(), "mi-1", "command/c1", &values).unwrap();
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_ne!(a.ephemeral_public_key, b.ephemeral_public_key);
        let plain = SecretValues {
            values: values.clone(),
        }
        .encoded_len();
        assert!(
            a.encoded_len() <= overhead(plain),
            "{} > {}",
            a.encoded_len(),
            overhead(plain)
        );
        assert_eq!(
            seal(&[1, 2, 3], "mi-1", "command/c1", &values),
            Err(SealError::BadNodeKey(3))
        );
        // A low-order point (all zeros) gives no shared secret: refused.
        assert_eq!(
            seal(&[0; 32], "mi-1", "command/c1", &values),
            Err(SealError::BadNodeKey(32))
        );
    }
}
