//! Registration: an agent presents an activation ID and code with a CSR and
//! gets a managed-instance ID and a client certificate.
//!
//! An unknown activation ID and a wrong code get one answer, "activation ID
//! or code is wrong" (and the same work: a code is hashed either way), so
//! that nobody can learn which IDs exist without holding a code. Only a
//! holder of the right code learns that its activation expired, was deleted
//! or is used up.
//!
//! Failed attempts (an unknown ID or a wrong code: what a guess gets) are
//! counted per source address and per activation ID ([`FailureLimiter`]);
//! past either budget, such an attempt is answered
//! "too many failed registration attempts … retry in N s" and logged once per
//! window instead of each time. A right code is never refused for it: the
//! code is checked first, so nodes behind a NAT shared with a misconfigured
//! (or hostile) client, or on an activation someone is guessing at, still
//! register. Refusing before checking would bound guessing, but guessing is
//! already hopeless — a code is 20 characters of a 57-letter alphabet, about
//! 116 bits — while refusing the right code is an outage anyone could cause;
//! the budgets are there to tell clients to back off and to keep the log
//! readable. Unknown IDs are counted like known ones (any UUID-shaped ID), so
//! the budget itself says nothing about which IDs exist.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tether_ssm::limits;
use tether_store::{HostInfo, InstanceRow, StoreError};
use tether_util::time::{iso_ms, now_ms};
use tracing::{debug, info, warn};

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
    pub release_public_key: Vec<u8>,
}

/// Why a registration was refused; the message goes to the agent verbatim.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// No such activation, or not its code: one answer for both.
    #[error("activation ID or code is wrong")]
    WrongIdOrCode,
    #[error("activation {id} expired at {at}")]
    Expired { id: String, at: String },
    #[error("activation {0} was deleted")]
    Deleted(String),
    #[error("activation {id} has reached its registration limit of {limit}")]
    LimitReached { id: String, limit: i64 },
    #[error("too many failed registration attempts from {ip}; retry in {secs} s")]
    RateLimited { ip: IpAddr, secs: u64 },
    #[error("too many failed registration attempts for activation {id}; retry in {secs} s")]
    ActivationRateLimited { id: String, secs: u64 },
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

/// Failures counted in a fixed window.
#[derive(Debug, Clone, Copy)]
struct Window {
    failures: u32,
    since: Instant,
}

/// Which budget a failed attempt went past, and the seconds until its window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Over {
    Source(u64),
    Activation(u64),
}

/// Counts failed registration attempts per source address and per
/// activation ID, each in a window of [`limits::FAILED_REGISTRATION_WINDOW`].
#[derive(Debug, Default)]
pub(super) struct FailureLimiter {
    sources: HashMap<IpAddr, Window>,
    activations: HashMap<String, Window>,
}

/// Adds a failure to `key`'s window (a new window once the last one ended);
/// the failures in it and the seconds left, or None when the map is full of
/// live windows and `key` has none (a flood is not allowed to grow it).
fn count<K: Hash + Eq>(map: &mut HashMap<K, Window>, key: K, now: Instant) -> Option<(u32, u64)> {
    let window = limits::FAILED_REGISTRATION_WINDOW;
    let ended = |w: &Window| now.saturating_duration_since(w.since) >= window;
    if !map.contains_key(&key) && map.len() >= limits::MAX_FAILED_REGISTRATION_ENTRIES {
        map.retain(|_, w| !ended(w));
        if map.len() >= limits::MAX_FAILED_REGISTRATION_ENTRIES {
            return None;
        }
    }
    let w = map.entry(key).or_insert(Window {
        failures: 0,
        since: now,
    });
    if ended(w) {
        *w = Window {
            failures: 0,
            since: now,
        };
    }
    w.failures += 1;
    let left = window.saturating_sub(now.saturating_duration_since(w.since));
    Some((w.failures, left.as_secs().max(1)))
}

/// Whether `id` could be an activation ID (a UUID): only those are counted
/// per activation, so made-up strings cannot fill the map with long keys.
fn uuid_shaped(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl FailureLimiter {
    /// Counts a failed attempt from `ip` on `activation_id`; which budget
    /// it is past, if any (the source's first).
    fn fail(&mut self, now: Instant, ip: IpAddr, activation_id: &str) -> Option<Over> {
        let source = count(&mut self.sources, ip, now);
        let id = activation_id.to_ascii_lowercase();
        let activation = uuid_shaped(&id)
            .then(|| count(&mut self.activations, id, now))
            .flatten();
        match (source, activation) {
            (Some((n, secs)), _) if n > limits::MAX_FAILED_REGISTRATIONS_PER_SOURCE => {
                Some(Over::Source(secs))
            }
            (_, Some((n, secs))) if n > limits::MAX_FAILED_REGISTRATIONS_PER_ACTIVATION => {
                Some(Over::Activation(secs))
            }
            _ => None,
        }
    }
}

/// Whether this failure is the first past a budget (logged at warn; later
/// ones at debug, so that a flood does not flood the log).
fn first_over(over: Over, limiter: &FailureLimiter, ip: IpAddr, id: &str) -> bool {
    match over {
        Over::Source(_) => limiter
            .sources
            .get(&ip)
            .is_some_and(|w| w.failures == limits::MAX_FAILED_REGISTRATIONS_PER_SOURCE + 1),
        Over::Activation(_) => limiter
            .activations
            .get(&id.to_ascii_lowercase())
            .is_some_and(|w| w.failures == limits::MAX_FAILED_REGISTRATIONS_PER_ACTIVATION + 1),
    }
}

impl Coordinator {
    /// Registers an agent from `source`, or says why not (and counts which).
    pub async fn register(
        &self,
        source: Option<IpAddr>,
        req: Registration,
    ) -> Result<Registered, RegisterError> {
        let outcome = self.register_counted(source, req).await;
        self.metrics.registration(outcome.as_ref().err());
        outcome
    }

    async fn register_counted(
        &self,
        source: Option<IpAddr>,
        req: Registration,
    ) -> Result<Registered, RegisterError> {
        let ip = source.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let activation_id = req.activation_id.trim().to_string();
        let name = req.name.trim().to_string();
        // A refused registration is an audit event too (in the background:
        // refusals past their budget are not recorded one by one).
        let refused = |e: &RegisterError| {
            let mut draft = crate::audit::Draft::registration(
                &self.account,
                source,
                &activation_id,
                None,
                &name,
            );
            draft.error = Some(("RegistrationRefused".into(), e.to_string()));
            self.audit.later(draft, "refused");
        };
        let (e, why) = match self.try_register(source, req).await {
            Ok(done) => return Ok(done),
            Err((e @ RegisterError::Internal(_), why)) => {
                warn!(%ip, activation_id = %activation_id, error = %e, why, "registration failed");
                return Err(e);
            }
            Err((e @ RegisterError::WrongIdOrCode, why)) => (e, why),
            // Only a holder of the right code gets here (expired, deleted,
            // used up, a malformed CSR): not a guess, so not counted, and
            // always told what it is.
            Err((e, why)) => {
                warn!(%ip, activation_id = %activation_id, error = %e, why, "registration refused");
                refused(&e);
                return Err(e);
            }
        };
        let over = {
            let mut limiter = self.limiter.lock();
            limiter
                .fail(Instant::now(), ip, &activation_id)
                .map(|over| (over, first_over(over, &limiter, ip, &activation_id)))
        };
        match over {
            None => {
                warn!(%ip, activation_id = %activation_id, error = %e, why, "registration refused");
                refused(&e);
                Err(e)
            }
            Some((over, first)) => {
                let limited = match over {
                    Over::Source(secs) => RegisterError::RateLimited { ip, secs },
                    Over::Activation(secs) => RegisterError::ActivationRateLimited {
                        id: activation_id.clone(),
                        secs,
                    },
                };
                if first {
                    warn!(%ip, activation_id = %activation_id, error = %limited, why, "registration failures past their budget; further ones are logged at debug level until the window ends");
                } else {
                    debug!(%ip, activation_id = %activation_id, error = %limited, why, "registration refused");
                }
                Err(limited)
            }
        }
    }

    /// The registration itself; a refusal comes with what the log says of it.
    async fn try_register(
        &self,
        source: Option<IpAddr>,
        req: Registration,
    ) -> Result<Registered, (RegisterError, &'static str)> {
        let internal = |e: StoreError| (RegisterError::Internal(e.to_string()), "storage error");
        let id = req.activation_id.trim().to_string();
        let code = req.activation_code.trim();
        let Some(act) = self.store.activation(&id).await.map_err(internal)? else {
            // The same work as for a known ID, and the same answer.
            let _ = subtle::ConstantTimeEq::ct_eq(
                code_hash(&[0; 16], code).as_slice(),
                [0u8; 32].as_slice(),
            );
            return Err((RegisterError::WrongIdOrCode, "unknown activation ID"));
        };
        let expected = code_hash(&act.code_salt, code);
        let ok: bool =
            subtle::ConstantTimeEq::ct_eq(expected.as_slice(), act.code_hash.as_slice()).into();
        if !ok {
            return Err((RegisterError::WrongIdOrCode, "wrong code"));
        }
        if act.deleted_ms.is_some() {
            return Err((RegisterError::Deleted(id), "deleted"));
        }
        let now = now_ms();
        if act.expiration_ms <= now {
            return Err((
                RegisterError::Expired {
                    id,
                    at: iso_ms(act.expiration_ms),
                },
                "expired",
            ));
        }
        if act.registrations_count >= act.registration_limit {
            return Err((
                RegisterError::LimitReached {
                    id,
                    limit: act.registration_limit,
                },
                "limit reached",
            ));
        }
        let instance_id = new_instance_id();
        let cert = self
            .pki
            .issue_client_cert(&instance_id, &req.csr_pem, self.client_cert_lifetime)
            .map_err(|e| (RegisterError::BadRequest(e.to_string()), "bad request"))?;
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
        // The audit record comes first: a registration that cannot be
        // recorded is refused before it is stored.
        let mut draft = crate::audit::Draft::registration(
            &self.account,
            source,
            &id,
            Some(&instance_id),
            &row.name,
        );
        self.audit.required(&draft, "agent").await.map_err(|e| {
            (
                RegisterError::Internal(e.message),
                "the audit trail cannot be written",
            )
        })?;
        let stored = self.store.register_instance(&row, now).await;
        if let Err(e) = &stored {
            draft.error = Some(("InternalServerError".into(), e.to_string()));
            draft.outcome = serde_json::json!({});
            self.audit.later(draft, "outcome");
        }
        match stored {
            Ok(()) => {}
            Err(StoreError::Registration(_)) => {
                return Err((
                    RegisterError::LimitReached {
                        id,
                        limit: act.registration_limit,
                    },
                    "limit reached",
                ));
            }
            Err(e) => return Err(internal(e)),
        }
        info!(%instance_id, activation_id = %id, "instance registered");
        Ok(Registered {
            instance_id,
            client_certificate_pem: cert,
            ca_certificate_pem: self.pki.trusted_ca_pem(),
            command_signing_public_key: self.pki.signing_public_key(),
            release_public_key: self.pki.release_public_key(),
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

    const ID: &str = "5e0c1f4a-0000-4000-8000-000000000001";

    #[test]
    fn failures_past_the_source_budget_are_answered_for_that_source_only() {
        let mut l = FailureLimiter::default();
        let t = Instant::now();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for i in 0..limits::MAX_FAILED_REGISTRATIONS_PER_SOURCE {
            // Each on its own activation: only the source's budget fills.
            let id = format!("5e0c1f4a-0000-4000-8000-{i:012}");
            assert_eq!(l.fail(t, a, &id), None);
        }
        assert!(matches!(l.fail(t, a, ID), Some(Over::Source(60))));
        assert_eq!(l.fail(t, b, ID), None);
        // A new window forgives.
        let later = t + limits::FAILED_REGISTRATION_WINDOW;
        assert_eq!(l.fail(later, a, ID), None);
    }

    #[test]
    fn failures_on_one_activation_from_many_sources_pass_its_budget() {
        let mut l = FailureLimiter::default();
        let t = Instant::now();
        for i in 0..limits::MAX_FAILED_REGISTRATIONS_PER_ACTIVATION {
            let ip = IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]);
            assert_eq!(l.fail(t, ip, ID), None);
        }
        let e = l.fail(t, "10.9.9.9".parse().unwrap(), &ID.to_uppercase());
        assert!(matches!(e, Some(Over::Activation(_))), "{e:?}");
        // Another activation is untouched; made-up IDs count per source only.
        assert_eq!(l.fail(t, "10.9.9.8".parse().unwrap(), "not-an-id"), None);
        assert!(!l.activations.contains_key("not-an-id"));
    }

    #[test]
    fn the_counters_stay_bounded_under_a_flood() {
        let mut map = HashMap::new();
        let t = Instant::now();
        for i in 0..limits::MAX_FAILED_REGISTRATION_ENTRIES as u32 {
            assert!(count(&mut map, i, t).is_some());
        }
        assert_eq!(count(&mut map, u32::MAX, t), None, "full of live windows");
        assert_eq!(
            count(&mut map, 7, t),
            Some((2, 60)),
            "known keys still count"
        );
        let later = t + limits::FAILED_REGISTRATION_WINDOW;
        assert_eq!(count(&mut map, u32::MAX, later), Some((1, 60)));
        assert_eq!(map.len(), 1, "ended windows were dropped");
    }

    #[test]
    fn only_uuid_shaped_ids_are_counted_per_activation() {
        assert!(uuid_shaped(ID));
        assert!(!uuid_shaped("5e0c1f4a00000-4000-8000-000000000001"));
        assert!(!uuid_shaped(&format!("{ID}0")));
        assert!(!uuid_shaped("5e0c1f4a-0000-4000-8000-00000000000g"));
    }
}
