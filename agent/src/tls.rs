//! TLS for the agent: the pinned-CA verifier used once at registration, the
//! mutual-TLS configuration used afterwards, and the connector that puts either
//! under a tonic channel.
//!
//! The agent never trusts the system's roots and never trusts on first use: at
//! registration the coordinator's CA must be in the handshake and hash to the
//! pin given on the command line; afterwards only the stored CA is trusted.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tonic::transport::{Channel, Endpoint};

use crate::endpoints::{self, EndpointsError};

/// Errors building TLS configuration or connecting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--ca-pin {0:?} is not sha256: followed by 64 hex digits")]
    BadPin(String),
    #[error("{what}: {detail}")]
    BadPem { what: &'static str, detail: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot reach the coordinator at {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error(transparent)]
    Endpoints(#[from] EndpointsError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses `sha256:<64 hex>`.
pub fn parse_pin(pin: &str) -> Result<[u8; 32], TlsError> {
    let hex_part = pin
        .strip_prefix("sha256:")
        .ok_or_else(|| TlsError::BadPin(pin.to_string()))?;
    let bytes = hex::decode(hex_part).map_err(|_| TlsError::BadPin(pin.to_string()))?;
    bytes
        .try_into()
        .map_err(|_| TlsError::BadPin(pin.to_string()))
}

/// `sha256:<hex>` of DER bytes.
pub fn pin_of(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Accepts the server only if its chain carries a CA whose fingerprint is the
/// pin, and the server certificate verifies against that CA for the name.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    /// Why the handshake was refused (pin mismatch, a clock that makes the
    /// certificate look not yet valid or expired), for the error message.
    pub problem: Mutex<Option<String>>,
}

impl PinnedCaVerifier {
    pub fn new(pin: [u8; 32]) -> Self {
        PinnedCaVerifier {
            pin,
            provider: provider(),
            problem: Mutex::new(None),
        }
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref())[..] == self.pin[..])
        else {
            let presented: Vec<String> = intermediates.iter().map(|c| pin_of(c)).collect();
            let msg = format!(
                "CA pin mismatch: the coordinator presented {}, expected sha256:{}",
                if presented.is_empty() {
                    "no CA certificate".to_string()
                } else {
                    presented.join(", ")
                },
                hex::encode(self.pin)
            );
            *self.problem.lock() = Some(msg.clone());
            return Err(rustls::Error::General(msg));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verified = inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now);
        if let Err(rustls::Error::InvalidCertificate(e)) = &verified
            && let Some(what) = clock_verdict(e)
        {
            *self.problem.lock() = Some(clock_message(now.as_secs() as i64, what));
        }
        verified
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Client configuration for registration: pinned CA, no client certificate.
pub fn pinned_config(verifier: Arc<PinnedCaVerifier>) -> Result<ClientConfig, TlsError> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Client configuration for every call after registration: the stored CA as
/// the only root, and the agent's certificate and key.
pub fn mtls_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let c = c.map_err(|e| TlsError::BadPem {
            what: "CA certificate",
            detail: e.to_string(),
        })?;
        roots.add(c)?;
    }
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what: "client certificate",
            detail: e.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::BadPem {
        what: "agent key",
        detail: e.to_string(),
    })?;
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// A lazily connecting channel to `endpoint` over TLS with `config`.
pub fn channel(endpoint: &str, config: ClientConfig) -> Result<Channel, TlsError> {
    let (host, port) = endpoints::split_endpoint(endpoint)?;
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| EndpointsError::Bad(endpoint.to_string()))?
        .to_owned();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    // The TLS is ours; the URI only names the authority for HTTP/2.
    let ep = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| EndpointsError::Bad(endpoint.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let svc = tower::service_fn(move |_: http::Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let host = host.clone();
        async move {
            let tcp = crate::net::connect(&host, port).await?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(ep.connect_with_connector_lazy(svc))
}

/// Whether a call failed on the way to the coordinator (no connection, TLS
/// refused, connection reset or closed, no answer in time) rather than being
/// answered by it: such a failure says nothing about the request, so it may go
/// to another replica. Statuses the coordinator sends carry no source error;
/// those made in this process from a transport error do.
pub fn is_transport_failure(s: &tonic::Status) -> bool {
    match s.code() {
        tonic::Code::Ok => false,
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => true,
        tonic::Code::Unknown if s.message().contains("transport") => true,
        _ => std::error::Error::source(s).is_some(),
    }
}

/// (not_before, not_after) of a PEM certificate, in epoch seconds.
pub fn cert_validity(pem: &str) -> Option<(i64, i64)> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

/// PEM of a DER certificate.
pub fn der_to_pem(der: &[u8]) -> String {
    tether_proto::certificate_pem(der)
}

/// Whether the PEM certificate `cert_pem` names the DER CA certificate
/// `ca_der` as its issuer; None when either does not parse.
pub fn issued_by(cert_pem: &str, ca_der: &[u8]) -> Option<bool> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).ok()?;
    Some(cert.issuer().as_raw() == ca.subject().as_raw())
}

/// Epoch seconds as RFC 3339.
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| secs.to_string())
}

/// What to do when this node's client certificate (`path`) expired at
/// `not_after` (the agent was offline past it, so it could not renew it):
/// the coordinator refuses it, and only a new registration — with an
/// activation, which the agent does not hold — mends that.
pub fn expired_advice(
    path: &std::path::Path,
    not_after: i64,
    reg: &crate::state::Registration,
) -> String {
    format!(
        "the client certificate {} of instance {} expired at {} by this node's clock (this \
         node was offline past its renewal, or its clock is off: if so, sync the time first); \
         the coordinator refuses it. Register the node again with an activation, then restart \
         the agent: tether-agent register --endpoint {} --ca-pin {} --id ACTIVATION_ID \
         --code ACTIVATION_CODE --force",
        path.display(),
        reg.instance_id,
        rfc3339(not_after),
        reg.endpoint,
        reg.ca_pin,
    )
}

/// The whole error chain of a failed call, for messages.
/// "not valid yet" or "expired" when a certificate was refused for a
/// reason the verifying clock decides.
fn clock_verdict(e: &rustls::CertificateError) -> Option<&'static str> {
    use rustls::CertificateError as E;
    match e {
        E::NotValidYet | E::NotValidYetContext { .. } => Some("not valid yet"),
        E::Expired | E::ExpiredContext { .. } => Some("expired"),
        _ => None,
    }
}

/// The advice for a coordinator certificate refused by this node's clock
/// (`now_secs`, Unix time).
pub fn clock_message(now_secs: i64, what: &str) -> String {
    let now_text = chrono::DateTime::from_timestamp(now_secs, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    format!(
        "clock skew: by this node's clock ({now_text}) the coordinator's certificate is {what}; \
         sync the time (chrony, systemd-timesyncd or ntpdate) and retry"
    )
}

/// The clock advice ([`clock_message`]) when `e`, or an error under it, is
/// a handshake refused because by this node's clock the coordinator's
/// certificate is not valid yet or expired (the daemon's calls, whose
/// verifier is rustls' own).
pub fn clock_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        // An io::Error's source() skips the error it wraps: look inside.
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(c)) = tls
            && let Some(what) = clock_verdict(c)
        {
            return Some(clock_message(tether_util::now_ms() / 1000, what));
        }
        cur = err.source();
    }
    None
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_strictly() {
        let pin = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(parse_pin(&pin).unwrap(), [0xab; 32]);
        assert!(parse_pin("sha256:abcd").is_err());
        assert!(parse_pin(&"ab".repeat(32)).is_err());
    }

    #[test]
    fn failures_on_the_way_are_told_from_the_coordinators_answers() {
        use tonic::{Code, Status};
        // Made in this process from a transport error (they carry its source).
        let reset = Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        )));
        assert!(is_transport_failure(&reset), "{reset:?}");
        for local in [
            Status::unavailable("error trying to connect: tcp connect error"),
            Status::deadline_exceeded("deadline"),
            Status::unknown("transport error"),
        ] {
            assert!(is_transport_failure(&local), "{local:?}");
        }
        // Sent by the coordinator: the request reached it.
        for answered in [
            Status::permission_denied("this instance is deregistered"),
            Status::internal("database is locked"),
            Status::invalid_argument("bad report"),
            Status::new(Code::Cancelled, "cancelled by the server"),
            Status::new(Code::Ok, ""),
        ] {
            assert!(!is_transport_failure(&answered), "{answered:?}");
        }
    }
}
