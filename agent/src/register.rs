//! `tether-agent register`: trust the coordinator through the pinned CA,
//! generate this node's key, and trade the activation for an instance ID and a
//! client certificate — at the first replica of the `--endpoint` list that
//! answers, keeping the whole list for the daemon.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use tether_proto as pb;
use tether_util::now_ms;

use crate::state::{Registration, StateDir, StateError};
use crate::tls::{self, PinnedCaVerifier, TlsError};
use crate::{endpoints, sysinfo};

/// Largest clock difference accepted at registration.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("this node is already registered as {0}; pass --force to register it again")]
    AlreadyRegistered(String),
    #[error("registration refused by the coordinator: {0}")]
    Refused(String),
    /// The coordinator could not be trusted (pin mismatch, clock).
    #[error("{0}")]
    Untrusted(String),
    #[error(
        "clock skew: this node's clock is {secs} s {direction} the coordinator's; sync the time (chrony, systemd-timesyncd or ntpdate) and retry"
    )]
    ClockSkew { secs: i64, direction: &'static str },
    #[error("generating the agent key: {0}")]
    Key(String),
    /// Every endpoint of the list failed to answer or to be trusted.
    #[error("no coordinator in --endpoint answered: {0}")]
    NoneAnswered(String),
}

pub struct RegisterArgs {
    /// One endpoint, or several comma-separated (replicas sharing one CA).
    pub endpoint: String,
    pub activation_id: String,
    pub activation_code: String,
    pub ca_pin: String,
    pub name: Option<String>,
    pub force: bool,
}

/// A new key and a CSR for it (the coordinator decides the subject).
pub fn new_key_and_csr() -> Result<(KeyPair, String), RegisterError> {
    let key = KeyPair::generate().map_err(|e| RegisterError::Key(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tether-agent");
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| RegisterError::Key(e.to_string()))?;
    Ok((key, csr))
}

fn transport_error(
    endpoint: &str,
    verifier: &PinnedCaVerifier,
    e: &dyn std::error::Error,
) -> RegisterError {
    if let Some(m) = verifier.problem.lock().clone() {
        return RegisterError::Untrusted(m);
    }
    RegisterError::Tls(TlsError::Unreachable {
        endpoint: endpoint.to_string(),
        detail: tls::error_chain(e),
    })
}

fn status_error(endpoint: &str, verifier: &PinnedCaVerifier, s: &tonic::Status) -> RegisterError {
    if tls::is_transport_failure(s) {
        return transport_error(endpoint, verifier, s);
    }
    RegisterError::Refused(refusal_text(s.code(), s.message()))
}

/// The coordinator's refusal, with what to do about it. An unknown
/// activation ID and a wrong code get one answer (so that IDs cannot be
/// probed), so the advice names both.
fn refusal_text(code: tonic::Code, message: &str) -> String {
    match code {
        tonic::Code::PermissionDenied => {
            format!("{message} (check --id and --code against what create-activation printed)")
        }
        _ => message.to_string(),
    }
}

impl RegisterError {
    /// Whether the coordinator at this endpoint could not be reached or
    /// trusted (so another replica may be tried), rather than it answering no.
    fn is_unreachable(&self) -> bool {
        matches!(
            self,
            RegisterError::Tls(TlsError::Unreachable { .. }) | RegisterError::Untrusted(_)
        )
    }
}

/// A registration made: the instance ID, the endpoint that answered, and why
/// each endpoint before it was passed over.
#[derive(Debug)]
pub struct Registered {
    pub instance_id: String,
    pub endpoint: String,
    pub skipped: Vec<(String, RegisterError)>,
}

/// Registers this node through the first of `args.endpoint`'s replicas that
/// answers: an endpoint that cannot be reached or trusted is passed over, a
/// refusal (wrong code, expired, limit reached) or a skewed clock ends it.
pub async fn register(state: &StateDir, args: RegisterArgs) -> Result<Registered, RegisterError> {
    // Keys are never written where someone else could read or swap them.
    state.check(&[])?;
    if !args.force
        && let Ok(existing) = state.load()
    {
        return Err(RegisterError::AlreadyRegistered(existing.instance_id));
    }
    let pin = tls::parse_pin(&args.ca_pin)?;
    let endpoints = endpoints::parse(&args.endpoint).map_err(TlsError::from)?;
    let (key, csr) = new_key_and_csr()?;
    let mut skipped: Vec<(String, RegisterError)> = Vec::new();
    for endpoint in &endpoints {
        match register_at(endpoint, pin, &args, &csr).await {
            Ok(resp) => {
                let reg = Registration {
                    instance_id: resp.instance_id.clone(),
                    endpoint: endpoints::join(&endpoints),
                    activation_id: args.activation_id,
                    ca_pin: args.ca_pin,
                    command_signing_key: hex::encode(&resp.command_signing_public_key),
                    registered_at_ms: now_ms(),
                    accepted_command_signing_keys: Vec::new(),
                };
                // A registration replaced with --force starts with a clean spool.
                let _ = std::fs::remove_dir_all(state.spool());
                // The release key: before registration.json, which is
                // written last. A coordinator without one (older) leaves
                // none, so an earlier coordinator's key is not kept.
                crate::state::ensure_dir(&state.dir)?;
                if resp.release_public_key.is_empty() {
                    let path = state.path(crate::state::RELEASE_KEY_FILE);
                    match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(crate::state::io(&path)(e).into());
                        }
                        _ => {}
                    }
                } else {
                    state.save_release_key(&resp.release_public_key)?;
                }
                state.save(
                    &reg,
                    &key.serialize_pem(),
                    &resp.client_certificate_pem,
                    &resp.ca_certificate_pem,
                )?;
                return Ok(Registered {
                    instance_id: resp.instance_id,
                    endpoint: endpoint.clone(),
                    skipped,
                });
            }
            Err(e) if e.is_unreachable() => skipped.push((endpoint.clone(), e)),
            Err(e) => return Err(e),
        }
    }
    if skipped.len() == 1 {
        let (_, only) = skipped.remove(0);
        return Err(only);
    }
    Err(RegisterError::NoneAnswered(
        skipped
            .iter()
            .map(|(endpoint, e)| {
                // Unreachable names its endpoint; a pin or clock verdict does not.
                let why = e.to_string();
                if why.contains(endpoint.as_str()) {
                    why
                } else {
                    format!("{endpoint}: {why}")
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
    ))
}

/// One registration attempt at one endpoint: the clock check, then the
/// activation traded for an instance ID and a certificate for `csr`.
async fn register_at(
    endpoint: &str,
    pin: [u8; 32],
    args: &RegisterArgs,
    csr: &str,
) -> Result<pb::RegisterResponse, RegisterError> {
    let (host, port) = endpoints::split_endpoint(endpoint).map_err(TlsError::from)?;
    let verifier = Arc::new(PinnedCaVerifier::new(pin));
    let channel = tls::channel(endpoint, tls::pinned_config(verifier.clone())?)?;
    let mut client = pb::registration_client::RegistrationClient::new(channel);

    let t0 = now_ms();
    let time = tokio::time::timeout(
        Duration::from_secs(20),
        client.server_time(pb::ServerTimeRequest {}),
    )
    .await
    .map_err(|_| {
        RegisterError::Tls(TlsError::Unreachable {
            endpoint: endpoint.to_string(),
            detail: "no answer within 20 s".into(),
        })
    })?
    .map_err(|s| status_error(endpoint, &verifier, &s))?
    .into_inner();
    let local_mid = (t0 + now_ms()) / 2;
    let skew = time.server_time_ms - local_mid;
    if skew.abs() > MAX_CLOCK_SKEW_MS {
        return Err(RegisterError::ClockSkew {
            secs: skew.abs() / 1000,
            direction: if skew > 0 { "behind" } else { "ahead of" },
        });
    }

    Ok(client
        .register(pb::RegisterRequest {
            activation_id: args.activation_id.clone(),
            activation_code: args.activation_code.clone(),
            csr_pem: csr.to_string(),
            name: args.name.clone().unwrap_or_default(),
            info: Some(sysinfo::host_info(&host, port).await),
        })
        .await
        .map_err(|s| status_error(endpoint, &verifier, &s))?
        .into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_the_coordinator_said_with_advice_for_a_wrong_id_or_code() {
        let wrong = refusal_text(
            tonic::Code::PermissionDenied,
            "activation ID or code is wrong",
        );
        assert_eq!(
            wrong,
            "activation ID or code is wrong (check --id and --code against what create-activation printed)"
        );
        let limited = "too many failed registration attempts from 10.0.0.1; retry in 42 s";
        assert_eq!(
            refusal_text(tonic::Code::ResourceExhausted, limited),
            limited
        );
        let expired =
            "activation 5e0c1f4a-0000-4000-8000-000000000001 expired at 2030-01-01T00:00:00.000Z";
        assert_eq!(
            refusal_text(tonic::Code::FailedPrecondition, expired),
            expired
        );
        let e = RegisterError::Refused(wrong).to_string();
        assert!(
            e.starts_with(
                "registration refused by the coordinator: activation ID or code is wrong"
            ),
            "{e}"
        );
    }
}
