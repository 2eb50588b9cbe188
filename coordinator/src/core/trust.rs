//! Keys between the coordinator and each node, over the node's mutual-TLS
//! channel — the one path by which keys reach nodes already registered:
//!
//! - **Up**: every poll carries the node's X25519 sealing public key. The
//!   coordinator keeps it per instance (the instance is the client
//!   certificate's, never the request's), and seals the secrets of the
//!   commands it sends that node to it ([`Coordinator::sealed_secrets`]).
//! - **Down**: the node's signed trust bundle (`TrustEnvelope`: the sealing
//!   key as held, the command-signing key), handed over at the next poll
//!   whenever it differs from the one the agent holds (by digest). The agent
//!   lifecycle (release key, rotated CA and signing key) adds to this bundle.

use std::collections::HashMap;

use parking_lot::Mutex;
use tether_proto as pb;
use tether_store::CommandRow;
use tether_util::time::now_ms;

use super::{AgentError, Coordinator};
use crate::signing::{self, Signed};

/// What this replica knows of each node's sealing key: the key (raw), the
/// digest of the trust bundle that acknowledges it and the trust keys it
/// was made with (`Pki::stamp`: a rotation makes every bundle anew). A poll
/// with the same key costs no query; a new or changed key is written once.
#[derive(Debug, Default)]
pub struct SealingKeys {
    known: Mutex<HashMap<String, Noted>>,
}

/// A node's sealing key (raw), its bundle's digest, and the `Pki::stamp`
/// of the keys the bundle was made with.
type Noted = (Vec<u8>, String, u64);

/// One parameter reference of a command, as kept with it
/// (`CommandRow::references_json`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Pinned {
    /// The reference as written, braces and all.
    pub reference: String,
    pub name: String,
    /// The version it resolved to when the command was sent.
    pub version: i64,
    /// `{{ssm-secure:…}}`: its value travels sealed to each node.
    pub secure: bool,
}

impl Coordinator {
    /// Keeps the sealing key a node's poll carried, and answers the digest of
    /// the trust bundle that goes with it. An empty key (an agent that
    /// predates sealing) is not kept and gets no bundle.
    pub(super) async fn note_sealing_key(
        &self,
        instance_id: &str,
        key: &[u8],
    ) -> Result<Option<String>, AgentError> {
        if key.is_empty() {
            return Ok(None);
        }
        let stamp = self.pki.stamp();
        if let Some((held, digest, made)) = self.sealing_keys.known.lock().get(instance_id)
            && held == key
            && *made == stamp
        {
            return Ok(Some(digest.clone()));
        }
        if key.len() != 32 {
            return Err(AgentError::BadRequest(format!(
                "the sealing public key is {} bytes long, not 32",
                key.len()
            )));
        }
        // After a restart every node's first poll lands here: a read, and a
        // write only for a key that is new or changed.
        let key_hex = hex::encode(key);
        let noted = self
            .sealing_keys
            .known
            .lock()
            .get(instance_id)
            .is_some_and(|(held, _, _)| held == key);
        if !noted && self.store.sealing_key(instance_id).await?.as_deref() != Some(key_hex.as_str())
        {
            self.store
                .set_sealing_key(instance_id, &key_hex, now_ms())
                .await?;
        }
        let (_, digest) = signing::trust(&self.pki, instance_id, key);
        let answer = digest.clone();
        self.sealing_keys
            .known
            .lock()
            .insert(instance_id.to_string(), (key.to_vec(), digest, stamp));
        Ok(Some(answer))
    }

    /// The node's signed trust bundle.
    pub(super) fn trust_bundle(&self, instance_id: &str, key: &[u8]) -> Signed {
        signing::trust(&self.pki, instance_id, key).0
    }

    /// The values of a command's `{{ssm-secure:…}}` references, at the
    /// versions pinned when it was sent, sealed to the node's key: `Ok(None)`
    /// when it has none; `Ok(Err(why))` when they cannot go to this node
    /// (its agent has sent no key, a version was deleted since), which ends
    /// the invocation Failed with the reason.
    pub(super) async fn sealed_secrets(
        &self,
        instance_id: &str,
        cmd: &CommandRow,
    ) -> Result<Result<Option<pb::SealedSecrets>, String>, AgentError> {
        let pinned: Vec<Pinned> = serde_json::from_str(&cmd.references_json).map_err(|e| {
            AgentError::Internal(format!(
                "command {}: stored references do not parse: {e}",
                cmd.command_id
            ))
        })?;
        let secure: Vec<Pinned> = pinned.into_iter().filter(|p| p.secure).collect();
        let purpose = pb::seal::command_purpose(&cmd.command_id);
        self.seal_pinned(instance_id, &purpose, &secure).await
    }

    /// The values of `secure` (SecureString references at their pinned
    /// versions), decrypted and sealed to the node for `purpose`: `Ok(None)`
    /// when there are none; `Ok(Err(why))` when they cannot go to it.
    pub async fn seal_pinned(
        &self,
        instance_id: &str,
        purpose: &str,
        secure: &[Pinned],
    ) -> Result<Result<Option<pb::SealedSecrets>, String>, AgentError> {
        let Some(first) = secure.first() else {
            return Ok(Ok(None));
        };
        let Some(key_hex) = self.store.sealing_key(instance_id).await? else {
            return Ok(Err(format!(
                "SecureString parameters ({}) are used, and the agent on this node has sent no \
                 sealing key to receive them: it predates sealed secrets; upgrade the agent",
                first.reference
            )));
        };
        let key = hex::decode(&key_hex).map_err(|_| {
            AgentError::Internal(format!(
                "instance {instance_id}: stored sealing key is not hex"
            ))
        })?;
        let Some(keyring) = self.parameter_keys.as_deref() else {
            return Ok(Err(
                "this coordinator has no parameter keys loaded: SecureString parameters are unavailable"
                    .into(),
            ));
        };
        let mut values = Vec::with_capacity(secure.len());
        for p in secure {
            match keyring.open_version(&self.store, &p.name, p.version).await {
                Ok(Some(value)) => values.push(pb::SecretValue {
                    reference: p.reference.clone(),
                    value,
                    name: p.name.clone(),
                    version: p.version,
                }),
                Ok(None) => {
                    return Ok(Err(format!(
                        "{}: version {} of parameter {} was deleted since it was resolved",
                        p.reference, p.version, p.name
                    )));
                }
                Err(e) => {
                    return Ok(Err(format!("{}: {}", p.reference, e.message)));
                }
            }
        }
        match pb::seal::seal(&key, instance_id, purpose, &values) {
            Ok(sealed) => Ok(Ok(Some(sealed))),
            Err(e) => Ok(Err(format!("cannot seal the secrets to this node: {e}"))),
        }
    }
}
