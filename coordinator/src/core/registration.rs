//! Registration: an agent presents an activation ID and code with a CSR and
//! gets a managed-instance ID and a client certificate. Failed attempts are
//! counted per source address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tether_ssm::limits;
use tether_store::{HostInfo, InstanceRow, StoreError};
use tether_util::time::{iso_ms, now_ms};
use tracing::{info, warn};

use super::Coordinator;

/// What an agent asks with.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    pub activation_id: String,
    pub activation_code: String,
    /// The agent's own key, in a certificate request.
    pub csr_pem: String,
    /// The name it asks for (the activation's default when empty).
    pub name: String,
    pub host: HostInfo,
}

/// What a registered agent gets.
#[derive(Clone, Debug)]
pub struct Registered {
    pub instance_id: String,
    pub client_certificate_pem: String,
    pub ca_certificate_pem: String,
    pub command_signing_public_key: Vec<u8>,
}

/// Why a registration was refused; the message goes to the agent verbatim.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("activation {0} does not exist")]
    UnknownActivation(String),
    #[error("the activation code is wrong for activation {0}")]
    WrongCode(String),
    #[error("activation {id} expired at {at}")]
    Expired { id: String, at: String },
    #[error("activation {0} was deleted")]
    Deleted(String),
    #[error("activation {id} has reached its registration limit of {limit}")]
    LimitReached { id: String, limit: i64 },
    #[error("too many failed registration attempts from {ip}; retry in {secs} s")]
    RateLimited { ip: IpAddr, secs: u64 },
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Hex SHA-256 of an activation code under its salt.
pub fn code_hash(salt: &[u8], code: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(code.as_bytes());
    h.finalize().to_vec()
}

/// `mi-` followed by 17 lowercase hex digits.
pub fn new_instance_id() -> String {
    let bytes: [u8; 9] = rand::random();
    let hex = hex::encode(bytes);
    format!("mi-{}", &hex[..17])
}

/// Counts failed registration attempts per source address.
#[derive(Debug, Default)]
pub(super) struct FailureLimiter {
    failures: HashMap<IpAddr, (u32, Instant)>,
}

impl FailureLimiter {
    /// Seconds the source must wait, if it is over its budget.
    fn blocked_for(&mut self, ip: IpAddr) -> Option<u64> {
        let window = limits::FAILED_REGISTRATION_WINDOW;
        match self.failures.get(&ip) {
            Some((n, since)) if since.elapsed() < window => (*n
                >= limits::MAX_FAILED_REGISTRATIONS_PER_SOURCE)
                .then(|| (window - since.elapsed()).as_secs().max(1)),
            Some(_) => {
                self.failures.remove(&ip);
                None
            }
            None => None,
        }
    }

    fn record_failure(&mut self, ip: IpAddr) {
        let window = limits::FAILED_REGISTRATION_WINDOW;
        let entry = self.failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        if self.failures.len() > 100_000 {
            self.failures
                .retain(|_, (_, since)| since.elapsed() < window);
        }
    }
}

impl Coordinator {
    /// Registers an agent from `source`, or says why not.
    pub async fn register(
        &self,
        source: Option<IpAddr>,
        req: Registration,
    ) -> Result<Registered, RegisterError> {
        let ip = source.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if let Some(secs) = self.limiter.lock().blocked_for(ip) {
            return Err(RegisterError::RateLimited { ip, secs });
        }
        let result = self.try_register(req).await;
        if let Err(e) = &result
            && !matches!(e, RegisterError::Internal(_))
        {
            warn!(%ip, error = %e, "registration refused");
            self.limiter.lock().record_failure(ip);
        }
        result
    }

    async fn try_register(&self, req: Registration) -> Result<Registered, RegisterError> {
        let internal = |e: StoreError| RegisterError::Internal(e.to_string());
        let id = req.activation_id.trim().to_string();
        let Some(act) = self.store.activation(&id).await.map_err(internal)? else {
            return Err(RegisterError::UnknownActivation(id));
        };
        let expected = code_hash(&act.code_salt, req.activation_code.trim());
        let ok: bool =
            subtle::ConstantTimeEq::ct_eq(expected.as_slice(), act.code_hash.as_slice()).into();
        if !ok {
            return Err(RegisterError::WrongCode(id));
        }
        if act.deleted_ms.is_some() {
            return Err(RegisterError::Deleted(id));
        }
        let now = now_ms();
        if act.expiration_ms <= now {
            return Err(RegisterError::Expired {
                id,
                at: iso_ms(act.expiration_ms),
            });
        }
        if act.registrations_count >= act.registration_limit {
            return Err(RegisterError::LimitReached {
                id,
                limit: act.registration_limit,
            });
        }
        let instance_id = new_instance_id();
        let cert = self
            .pki
            .issue_client_cert(&instance_id, &req.csr_pem, limits::CLIENT_CERT_LIFETIME)
            .map_err(|e| RegisterError::BadRequest(e.to_string()))?;
        let name = if req.name.trim().is_empty() {
            act.default_instance_name.clone()
        } else {
            req.name.trim().to_string()
        };
        let host = req.host;
        let row = InstanceRow {
            instance_id: instance_id.clone(),
            activation_id: id.clone(),
            name,
            iam_role: act.iam_role.clone(),
            registration_ms: now,
            last_ping_ms: Some(now),
            platform_type: host.platform_type,
            platform_name: host.platform_name,
            platform_version: host.platform_version,
            computer_name: host.computer_name,
            ip_address: host.ip_address,
            agent_version: host.agent_version,
            deregistered_ms: None,
            tags_json: act.tags_json.clone(),
            aws: None,
        };
        match self.store.register_instance(&row, now).await {
            Ok(()) => {}
            Err(StoreError::Registration(_)) => {
                return Err(RegisterError::LimitReached {
                    id,
                    limit: act.registration_limit,
                });
            }
            Err(e) => return Err(internal(e)),
        }
        info!(%instance_id, activation_id = %id, "instance registered");
        Ok(Registered {
            instance_id,
            client_certificate_pem: cert,
            ca_certificate_pem: self.pki.ca_cert_pem.clone(),
            command_signing_public_key: self.pki.signing_public_key(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_have_the_ssm_shape() {
        for _ in 0..100 {
            let id = new_instance_id();
            assert_eq!(id.len(), 20);
            assert!(id.starts_with("mi-"));
            assert!(
                id[3..]
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn failures_beyond_the_budget_block_the_source_only() {
        let mut l = FailureLimiter::default();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..limits::MAX_FAILED_REGISTRATIONS_PER_SOURCE {
            assert!(l.blocked_for(a).is_none());
            l.record_failure(a);
        }
        assert!(l.blocked_for(a).is_some());
        assert!(l.blocked_for(b).is_none());
    }
}
