//! `tether-agent register`: trust the coordinator through the pinned CA,
//! generate this node's key, and trade the activation for an instance ID and a
//! client certificate.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use tether_proto as pb;

use crate::state::{Registration, StateDir, StateError};
use crate::tls::{self, PinnedCaVerifier, TlsError};
use crate::{now_ms, sysinfo};

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
}

pub struct RegisterArgs {
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
    if let Some(m) = verifier
        .problem
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        return RegisterError::Untrusted(m);
    }
    RegisterError::Tls(TlsError::Unreachable {
        endpoint: endpoint.to_string(),
        detail: tls::error_chain(e),
    })
}

fn status_error(endpoint: &str, verifier: &PinnedCaVerifier, s: &tonic::Status) -> RegisterError {
    let transport = matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
    ) || (s.code() == tonic::Code::Unknown && s.message().contains("transport"));
    if transport {
        transport_error(endpoint, verifier, s)
    } else {
        RegisterError::Refused(s.message().to_string())
    }
}

/// Registers this node; returns the new instance ID.
pub async fn register(state: &StateDir, args: RegisterArgs) -> Result<String, RegisterError> {
    if !args.force
        && let Ok(existing) = state.load()
    {
        return Err(RegisterError::AlreadyRegistered(existing.instance_id));
    }
    let pin = tls::parse_pin(&args.ca_pin)?;
    let (host, port) = tls::split_endpoint(&args.endpoint)?;
    let verifier = Arc::new(PinnedCaVerifier::new(pin));
    let channel = tls::channel(&args.endpoint, tls::pinned_config(verifier.clone())?)?;
    let mut client = pb::registration_client::RegistrationClient::new(channel);

    let t0 = now_ms();
    let time = tokio::time::timeout(
        Duration::from_secs(20),
        client.server_time(pb::ServerTimeRequest {}),
    )
    .await
    .map_err(|_| {
        RegisterError::Tls(TlsError::Unreachable {
            endpoint: args.endpoint.clone(),
            detail: "no answer within 20 s".into(),
        })
    })?
    .map_err(|s| status_error(&args.endpoint, &verifier, &s))?
    .into_inner();
    let local_mid = (t0 + now_ms()) / 2;
    let skew = time.server_time_ms - local_mid;
    if skew.abs() > MAX_CLOCK_SKEW_MS {
        return Err(RegisterError::ClockSkew {
            secs: skew.abs() / 1000,
            direction: if skew > 0 { "behind" } else { "ahead of" },
        });
    }

    let (key, csr) = new_key_and_csr()?;
    let resp = client
        .register(pb::RegisterRequest {
            activation_id: args.activation_id.clone(),
            activation_code: args.activation_code,
            csr_pem: csr,
            name: args.name.unwrap_or_default(),
            info: Some(sysinfo::host_info(&host, port).await),
        })
        .await
        .map_err(|s| status_error(&args.endpoint, &verifier, &s))?
        .into_inner();

    let reg = Registration {
        instance_id: resp.instance_id.clone(),
        endpoint: args.endpoint,
        activation_id: args.activation_id,
        ca_pin: args.ca_pin,
        command_signing_key: hex::encode(&resp.command_signing_public_key),
        registered_at_ms: now_ms(),
    };
    // A registration replaced with --force starts with a clean spool.
    let _ = std::fs::remove_dir_all(state.spool());
    state.save(
        &reg,
        &key.serialize_pem(),
        &resp.client_certificate_pem,
        &resp.ca_certificate_pem,
    )?;
    Ok(resp.instance_id)
}
