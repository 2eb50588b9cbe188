//! The coordinator's key material: internal CA, server certificate, client
//! certificates for agents, the Ed25519 command-signing key, and the AES-256-GCM
//! key that seals the SigV4 access-key secrets stored in the database.
//!
//! Everything is created once, on first start, in the data directory with
//! owner-only permissions, and reused afterwards so that the CA pin agents were
//! given stays valid. This module never logs key material.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use sha2::{Digest, Sha256};

/// Errors creating or loading key material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file in the data directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation or parsing failed.
    #[error("certificate {what}: {source}")]
    Cert {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    /// The command-signing key file is not a valid Ed25519 PKCS#8 key.
    #[error("{path}: not a valid Ed25519 PKCS#8 key")]
    SigningKey { path: PathBuf },
    /// The sealing key file is not 32 bytes.
    #[error("{path}: not a 32-byte AES-256 key")]
    SealKey { path: PathBuf },
    /// A certificate signing request from an agent was unusable.
    #[error("certificate signing request rejected: {0}")]
    Csr(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path` atomically with mode 0600
/// ([`tether_util::fs::write_private`]).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    tether_util::fs::write_private(path, data).map_err(io_err(path))
}

/// Creates `dir` (and missing parents) owner-only, and restricts it to its
/// owner if it existed.
pub fn ensure_private_dir(dir: &Path) -> Result<(), PkiError> {
    tether_util::fs::create_private_dir_all(dir).map_err(io_err(dir))
}

/// The Ed25519 key (PKCS#8) at `path`, created owner-only when missing.
fn ed25519_key(path: &Path) -> Result<Ed25519KeyPair, PkiError> {
    let bad = || PkiError::SigningKey {
        path: path.to_path_buf(),
    };
    if path.exists() {
        let der = fs::read(path).map_err(io_err(path))?;
        return Ed25519KeyPair::from_pkcs8(&der).map_err(|_| bad());
    }
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| bad())?;
    write_private(path, doc.as_ref())?;
    Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| bad())
}

/// `sha256:<hex>` of a certificate's DER bytes: what agents pin.
pub fn ca_pin(ca_der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(ca_der)))
}

fn to_offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn cert_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Cert { what, source }
}

/// The coordinator's loaded key material.
pub struct Pki {
    pub ca_cert_pem: String,
    pub ca_cert_der: Vec<u8>,
    ca_key: KeyPair,
    /// Server certificate followed by the CA certificate, so that an agent that
    /// only knows the CA's pin can find the CA in the handshake.
    pub server_chain_pem: String,
    pub server_key_pem: String,
    signing_key: Ed25519KeyPair,
    /// Signs agent releases (`ReleaseManifest`); never commands.
    release_key: Ed25519KeyPair,
    seal_key: ring::aead::LessSafeKey,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("ca_pin", &self.pin()).finish()
    }
}

/// Paths of the key material inside the data directory.
struct Paths {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    signing_key: PathBuf,
    release_key: PathBuf,
    seal_key: PathBuf,
}

impl Paths {
    /// The coordinator's own files in `dir`; the ones every replica shares in `secrets`.
    fn new(dir: &Path, secrets: &Path) -> Self {
        Paths {
            ca_cert: secrets.join("ca.pem"),
            ca_key: secrets.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            signing_key: secrets.join("signing.key"),
            release_key: secrets.join("release.key"),
            seal_key: secrets.join("access-keys.key"),
        }
    }
}

impl Pki {
    /// Loads the key material from `dir`, creating whatever is missing. The
    /// server certificate is re-issued when the set of names changes.
    pub fn load_or_create(dir: &Path, server_names: &[String]) -> Result<Self, PkiError> {
        Self::load_or_create_shared(dir, dir, server_names)
    }

    /// As [`Pki::load_or_create`], with the CA, the command-signing key and
    /// the access-key sealing key in `secrets` — the directory replicas on one
    /// PostgreSQL database share (`tether serve --secrets-dir`), so that they
    /// are one coordinator to agents and operators. Whatever is missing there
    /// is created under an exclusive lock on `secrets/.lock`, so replicas
    /// starting together create it once. Each replica keeps its own server
    /// certificate (its own names), issued by the shared CA, in `dir`.
    pub fn load_or_create_shared(
        dir: &Path,
        secrets: &Path,
        server_names: &[String],
    ) -> Result<Self, PkiError> {
        ensure_private_dir(dir)?;
        ensure_private_dir(secrets)?;
        let lock_path = secrets.join(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        let p = Paths::new(dir, secrets);

        let (ca_cert_pem, ca_key) = if p.ca_cert.exists() && p.ca_key.exists() {
            let key_pem = fs::read_to_string(&p.ca_key).map_err(io_err(&p.ca_key))?;
            let cert_pem = fs::read_to_string(&p.ca_cert).map_err(io_err(&p.ca_cert))?;
            (
                cert_pem,
                KeyPair::from_pem(&key_pem).map_err(cert_err("CA key"))?,
            )
        } else {
            let key = KeyPair::generate().map_err(cert_err("CA key"))?;
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "Tether internal CA");
            dn.push(DnType::OrganizationName, "Tether");
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let now = SystemTime::now();
            params.not_before = to_offset(now - Duration::from_secs(3600));
            params.not_after = to_offset(now + Duration::from_secs(20 * 365 * 24 * 3600));
            params.serial_number = Some(random_serial());
            let cert = params.self_signed(&key).map_err(cert_err("CA"))?;
            write_private(&p.ca_key, key.serialize_pem().as_bytes())?;
            write_private(&p.ca_cert, cert.pem().as_bytes())?;
            (cert.pem(), key)
        };
        let ca_cert_der = pem_to_der(&ca_cert_pem).ok_or_else(|| {
            PkiError::Csr(format!("{}: not a PEM certificate", p.ca_cert.display()))
        })?;

        let names_file = dir.join("server.names");
        let names_line = server_names.join(",");
        let names_current = fs::read_to_string(&names_file).ok().as_deref() == Some(&names_line);
        let (server_cert_pem, server_key_pem) =
            if names_current && p.server_cert.exists() && p.server_key.exists() {
                (
                    fs::read_to_string(&p.server_cert).map_err(io_err(&p.server_cert))?,
                    fs::read_to_string(&p.server_key).map_err(io_err(&p.server_key))?,
                )
            } else {
                let key = KeyPair::generate().map_err(cert_err("server key"))?;
                let mut params = CertificateParams::default();
                let mut dn = DistinguishedName::new();
                dn.push(DnType::CommonName, "tether coordinator");
                params.distinguished_name = dn;
                params.subject_alt_names = server_names
                    .iter()
                    .map(|n| match n.parse::<std::net::IpAddr>() {
                        Ok(ip) => Ok(SanType::IpAddress(ip)),
                        Err(_) => n
                            .clone()
                            .try_into()
                            .map(SanType::DnsName)
                            .map_err(cert_err("server name")),
                    })
                    .collect::<Result<_, _>>()?;
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                let now = SystemTime::now();
                params.not_before = to_offset(now - Duration::from_secs(3600));
                params.not_after = to_offset(now + Duration::from_secs(5 * 365 * 24 * 3600));
                params.serial_number = Some(random_serial());
                let issuer =
                    Issuer::from_ca_cert_pem(&ca_cert_pem, &ca_key).map_err(cert_err("CA"))?;
                let cert = params
                    .signed_by(&key, &issuer)
                    .map_err(cert_err("server"))?;
                write_private(&p.server_key, key.serialize_pem().as_bytes())?;
                write_private(&p.server_cert, cert.pem().as_bytes())?;
                write_private(&names_file, names_line.as_bytes())?;
                (cert.pem(), key.serialize_pem())
            };

        let signing_key = ed25519_key(&p.signing_key)?;
        let release_key = ed25519_key(&p.release_key)?;

        let seal_bytes = if p.seal_key.exists() {
            fs::read(&p.seal_key).map_err(io_err(&p.seal_key))?
        } else {
            let key: [u8; 32] = rand::random();
            write_private(&p.seal_key, &key)?;
            key.to_vec()
        };
        let seal_key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &seal_bytes)
            .map(ring::aead::LessSafeKey::new)
            .map_err(|_| PkiError::SealKey {
                path: p.seal_key.clone(),
            })?;

        Ok(Pki {
            seal_key,
            server_chain_pem: format!("{server_cert_pem}{ca_cert_pem}"),
            server_key_pem,
            ca_cert_pem,
            ca_cert_der,
            ca_key,
            signing_key,
            release_key,
        })
    }

    /// Raw Ed25519 public key that verifies agent releases.
    pub fn release_public_key(&self) -> Vec<u8> {
        self.release_key.public_key().as_ref().to_vec()
    }

    /// Signs an encoded `ReleaseManifest` (under the release context).
    pub fn sign_release(&self, manifest: &[u8]) -> Vec<u8> {
        let mut covered = tether_proto::RELEASE_SIGNING_CONTEXT.to_vec();
        covered.extend_from_slice(manifest);
        self.release_key.sign(&covered).as_ref().to_vec()
    }

    /// `sha256:<hex>` fingerprint of the CA certificate.
    pub fn pin(&self) -> String {
        ca_pin(&self.ca_cert_der)
    }

    /// Raw Ed25519 public key that verifies command envelopes.
    pub fn signing_public_key(&self) -> Vec<u8> {
        self.signing_key.public_key().as_ref().to_vec()
    }

    /// Signs an envelope payload.
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        self.signing_key.sign(payload).as_ref().to_vec()
    }

    /// Seals `plaintext` with AES-256-GCM under the data directory's sealing
    /// key, bound to `aad`: a random 96-bit nonce followed by the ciphertext and tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; ring::aead::NONCE_LEN] = rand::random();
        let mut data = plaintext.to_vec();
        // Sealing fails only past the AEAD's size limit (gigabytes); the
        // secrets sealed here are tens of bytes.
        if self
            .seal_key
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(aad),
                &mut data,
            )
            .is_err()
        {
            return Vec::new();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        out
    }

    /// Opens what [`Pki::seal`] sealed with the same `aad`; `None` when it was
    /// sealed under another key, for another `aad`, or altered.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < ring::aead::NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(ring::aead::NONCE_LEN);
        let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = ciphertext.to_vec();
        let plain = self
            .seal_key
            .open_in_place(nonce, ring::aead::Aad::from(aad), &mut data)
            .ok()?;
        Some(plain.to_vec())
    }

    /// Issues a client certificate for `instance_id` over the key in `csr_pem`.
    /// Whatever names the request asks for are ignored: the subject is the
    /// instance ID and nothing else.
    pub fn issue_client_cert(
        &self,
        instance_id: &str,
        csr_pem: &str,
        lifetime: Duration,
    ) -> Result<String, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Csr(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, instance_id);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = SystemTime::now();
        params.not_before = to_offset(now - Duration::from_secs(300));
        params.not_after = to_offset(now + lifetime);
        params.serial_number = Some(random_serial());
        let issuer =
            Issuer::from_ca_cert_pem(&self.ca_cert_pem, &self.ca_key).map_err(cert_err("CA"))?;
        let cert = params
            .signed_by(&csr.public_key, &issuer)
            .map_err(cert_err("client"))?;
        Ok(cert.pem())
    }
}

/// DER bytes of the first certificate in a PEM string.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.as_ref().to_vec())
}

/// The common name of a DER certificate's subject: an agent's instance ID.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn created_once_then_reused_with_the_same_pin() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let a = Pki::load_or_create(dir.path(), &names).unwrap();
        let b = Pki::load_or_create(dir.path(), &names).unwrap();
        assert_eq!(a.pin(), b.pin());
        assert_eq!(a.signing_public_key(), b.signing_public_key());
        assert!(a.pin().starts_with("sha256:") && a.pin().len() == 7 + 64);
        let mode = fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_aad() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_string()];
        let a = Pki::load_or_create(dir.path(), &names).unwrap();
        let sealed = a.seal(b"TKIAEXAMPLE", b"secret");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let again = Pki::load_or_create(dir.path(), &names).unwrap();
        assert_eq!(
            again.open(b"TKIAEXAMPLE", &sealed).as_deref(),
            Some(&b"secret"[..])
        );
        assert_eq!(again.open(b"TKIAOTHER", &sealed), None);
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(again.open(b"TKIAEXAMPLE", &tampered), None);
        let other = tempfile::tempdir().unwrap();
        let stranger = Pki::load_or_create(other.path(), &names).unwrap();
        assert_eq!(stranger.open(b"TKIAEXAMPLE", &sealed), None);
        let mode = fs::metadata(dir.path().join("access-keys.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn client_cert_subject_is_the_instance_id_only() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["localhost".to_string()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "mi-00000000000000000");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let pem = pki
            .issue_client_cert("mi-0123456789abcdef0", &csr, Duration::from_secs(60))
            .unwrap();
        let der = pem_to_der(&pem).unwrap();
        assert_eq!(
            subject_common_name(&der).as_deref(),
            Some("mi-0123456789abcdef0")
        );
    }

    #[test]
    fn garbage_csr_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["localhost".to_string()]).unwrap();
        let err = pki
            .issue_client_cert("mi-0123456789abcdef0", "not a csr", Duration::from_secs(60))
            .unwrap_err();
        assert!(err.to_string().contains("signing request"));
    }
}
