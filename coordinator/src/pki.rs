//! The coordinator's key material: internal CA, server certificate, client
//! certificates for agents, the Ed25519 command-signing key, and the AES-256-GCM
//! key that seals the SigV4 access-key secrets stored in the database.
//!
//! Everything is created once, on first start, in the data directory with
//! owner-only permissions, and reused afterwards so that the CA pin agents were
//! given stays valid — until an operator rotates the CA and the signing key
//! ([`Pki::start_rotation`], [`Pki::switch_rotation`], [`Pki::finish_rotation`]:
//! generations of them in the secrets directory, `rotation.json` saying which
//! is in force, every replica reloading it with [`Pki::reload_if_changed`]).
//! This module never logs key material.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use tether_util::time::now_ms;

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
    /// `rotation.json` does not parse.
    #[error("{path}: not a rotation state: {detail}")]
    Rotation { path: PathBuf, detail: String },
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

/// The coordinator's key material: the sealing key, fixed, and the trust
/// keys ([`Keys`]: CA, server certificate, command-signing key), which a
/// rotation replaces and every replica reloads ([`Pki::reload_if_changed`]).
pub struct Pki {
    dir: PathBuf,
    secrets: PathBuf,
    server_names: Vec<String>,
    keys: RwLock<Arc<Keys>>,
    /// `rotation.json` as last loaded ("" = none).
    loaded: Mutex<String>,
    /// Bumped at every reload: TLS configurations built from older keys
    /// are built again.
    stamp: AtomicU64,
    /// Signs agent releases (`ReleaseManifest`); never commands. Not part
    /// of the trust rotation.
    release_key: Ed25519KeyPair,
    seal_key: ring::aead::LessSafeKey,
}

/// The trust keys in force on this replica.
pub struct Keys {
    /// The rotation state they were loaded from.
    pub rotation: Rotation,
    /// The CA that issues certificates now (self-signed).
    pub ca_cert_pem: String,
    pub ca_cert_der: Vec<u8>,
    ca_key: KeyPair,
    /// Server certificate, then the current CA cross-signed by the previous
    /// one (after a rotation), then the current CA: an agent that only
    /// knows the pin of either CA finds it in the handshake.
    pub server_chain_pem: String,
    pub server_key_pem: String,
    signing_key: Ed25519KeyPair,
    /// Every CA agents trust for the server certificate (DER): the current
    /// one, and the next or the previous during a rotation.
    pub trusted_ca_ders: Vec<Vec<u8>>,
    /// The CAs whose client certificates are accepted (PEM): the current
    /// one, the next while introduced, and the previous until every client
    /// certificate it issued has expired.
    pub client_ca_pems: Vec<String>,
    /// Signing keys agents accept besides the current one.
    pub accepted_signing_keys: Vec<Vec<u8>>,
    /// The previous signing key and its signature over the current one.
    pub endorsement: Option<(Vec<u8>, Vec<u8>)>,
}

/// Where a rotation of the CA and the command-signing key stands
/// (`rotation.json` in the secrets directory, shared by every replica).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rotation {
    /// The generation of the CA and signing key in force (1: the first).
    pub generation: u32,
    pub phase: Phase,
    /// The generation before this one, whose CA's client certificates are
    /// still accepted until `previous_accepted_until_ms`.
    pub previous: Option<u32>,
    pub previous_accepted_until_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub switched_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

/// The phases of a rotation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    /// No rotation under way.
    #[default]
    Settled,
    /// The next CA and signing key exist; agents learn them; nothing is
    /// issued or signed with them yet.
    Introduced,
    /// The next generation is in force; the previous one is still
    /// accepted until the rotation is finished.
    Switched,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Settled => "Settled",
            Phase::Introduced => "Introduced",
            Phase::Switched => "Switched",
        }
    }
}

/// A rotation step that cannot be taken now.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{step}: the rotation is {phase}, not {expected}; {hint}")]
    WrongPhase {
        step: &'static str,
        phase: &'static str,
        expected: &'static str,
        hint: &'static str,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("ca_pin", &self.pin()).finish()
    }
}

/// The rotation state file in the secrets directory.
pub const ROTATION_FILE: &str = "rotation.json";

/// File names of generation `g`'s key material in the secrets directory
/// (generation 1 keeps the names it had before rotation existed).
struct Generation {
    ca_cert: String,
    ca_key: String,
    signing_key: String,
    /// This generation's CA certificate signed by the previous CA's key.
    cross: String,
    /// The previous signing key (32 bytes) and its signature over this one.
    endorsement: String,
}

impl Generation {
    fn of(g: u32) -> Self {
        if g <= 1 {
            return Generation {
                ca_cert: "ca.pem".into(),
                ca_key: "ca.key".into(),
                signing_key: "signing.key".into(),
                cross: "ca.cross.pem".into(),
                endorsement: "signing.endorsement".into(),
            };
        }
        Generation {
            ca_cert: format!("ca.g{g}.pem"),
            ca_key: format!("ca.g{g}.key"),
            signing_key: format!("signing.g{g}.key"),
            cross: format!("ca.g{g}.cross.pem"),
            endorsement: format!("signing.g{g}.endorsement"),
        }
    }
}

fn read_text(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(io_err(path))
}

/// The parameters of generation `g`'s CA certificate (self-signed or cross-signed).
fn ca_params(g: u32) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let name = if g <= 1 {
        "Tether internal CA".to_string()
    } else {
        format!("Tether internal CA (generation {g})")
    };
    dn.push(DnType::CommonName, name);
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
    params
}

/// Makes generation `g`'s CA (key and self-signed certificate) in `secrets`.
fn create_ca(secrets: &Path, g: u32) -> Result<(String, KeyPair), PkiError> {
    let files = Generation::of(g);
    let key = KeyPair::generate().map_err(cert_err("CA key"))?;
    let cert = ca_params(g).self_signed(&key).map_err(cert_err("CA"))?;
    write_private(&secrets.join(&files.ca_key), key.serialize_pem().as_bytes())?;
    write_private(&secrets.join(&files.ca_cert), cert.pem().as_bytes())?;
    Ok((cert.pem(), key))
}

fn load_ca(secrets: &Path, g: u32) -> Result<(String, KeyPair), PkiError> {
    let files = Generation::of(g);
    let key_pem = read_text(&secrets.join(&files.ca_key))?;
    let cert_pem = read_text(&secrets.join(&files.ca_cert))?;
    Ok((
        cert_pem,
        KeyPair::from_pem(&key_pem).map_err(cert_err("CA key"))?,
    ))
}

fn create_signing_key(path: &Path) -> Result<Ed25519KeyPair, PkiError> {
    let bad = || PkiError::SigningKey {
        path: path.to_path_buf(),
    };
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| bad())?;
    write_private(path, doc.as_ref())?;
    Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| bad())
}

fn load_signing_key(path: &Path) -> Result<Ed25519KeyPair, PkiError> {
    let der = fs::read(path).map_err(io_err(path))?;
    Ed25519KeyPair::from_pkcs8(&der).map_err(|_| PkiError::SigningKey {
        path: path.to_path_buf(),
    })
}

/// Reads `rotation.json` (its text, "" when absent, and what it says).
fn read_rotation(secrets: &Path) -> Result<(String, Rotation), PkiError> {
    let path = secrets.join(ROTATION_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let r: Rotation = serde_json::from_str(&text).map_err(|e| PkiError::Rotation {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            Ok((text, r))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((
            String::new(),
            Rotation {
                generation: 1,
                ..Rotation::default()
            },
        )),
        Err(e) => Err(io_err(&path)(e)),
    }
}

fn write_rotation(secrets: &Path, r: &Rotation) -> Result<(), PkiError> {
    let text = serde_json::to_vec_pretty(r).map_err(|e| PkiError::Rotation {
        path: secrets.join(ROTATION_FILE),
        detail: e.to_string(),
    })?;
    write_private(&secrets.join(ROTATION_FILE), &text)
}

/// The exclusive lock on `secrets/.lock`, held while key material is
/// created, loaded or rotated, so replicas never see half of a step.
fn lock_secrets(secrets: &Path) -> Result<fs::File, PkiError> {
    let lock_path = secrets.join(".lock");
    tether_util::fs::lock_exclusive(&lock_path).map_err(io_err(&lock_path))
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
        let _lock = lock_secrets(secrets)?;
        let seal_path = secrets.join("access-keys.key");
        let seal_bytes = if seal_path.exists() {
            fs::read(&seal_path).map_err(io_err(&seal_path))?
        } else {
            let key: [u8; 32] = rand::random();
            write_private(&seal_path, &key)?;
            key.to_vec()
        };
        let seal_key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &seal_bytes)
            .map(ring::aead::LessSafeKey::new)
            .map_err(|_| PkiError::SealKey {
                path: seal_path.clone(),
            })?;
        let release_path = secrets.join("release.key");
        let release_key = if release_path.exists() {
            load_signing_key(&release_path)?
        } else {
            create_signing_key(&release_path)?
        };
        let (text, rotation) = read_rotation(secrets)?;
        let first = Generation::of(1);
        if rotation.generation <= 1 {
            if !(secrets.join(&first.ca_cert).exists() && secrets.join(&first.ca_key).exists()) {
                create_ca(secrets, 1)?;
            }
            if !secrets.join(&first.signing_key).exists() {
                create_signing_key(&secrets.join(&first.signing_key))?;
            }
        }
        let keys = load_keys(dir, secrets, server_names, rotation, now_ms())?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            secrets: secrets.to_path_buf(),
            server_names: server_names.to_vec(),
            keys: RwLock::new(Arc::new(keys)),
            loaded: Mutex::new(text),
            stamp: AtomicU64::new(0),
            release_key,
            seal_key,
        })
    }

    /// The trust keys in force.
    pub fn keys(&self) -> Arc<Keys> {
        self.keys.read().clone()
    }

    /// Bumped at every reload of the trust keys.
    pub fn stamp(&self) -> u64 {
        self.stamp.load(Ordering::Acquire)
    }

    /// Loads the trust keys again when `rotation.json` changed (another
    /// replica, or this one, took a rotation step) or when the previous
    /// CA's client certificates stop being accepted; true when it did.
    /// Every replica calls it every [`limits::TRUST_RELOAD_INTERVAL`].
    pub fn reload_if_changed(&self) -> Result<bool, PkiError> {
        let now = now_ms();
        let (text, _) = read_rotation(&self.secrets)?;
        let keys = self.keys();
        // The previous CA's client certificates have all expired: stop accepting it.
        let lapsed = keys.rotation.phase == Phase::Settled
            && keys.client_ca_pems.len() > 1
            && !client_previous_due(&keys.rotation, now);
        if *self.loaded.lock() == text && !lapsed {
            return Ok(false);
        }
        let _lock = lock_secrets(&self.secrets)?;
        let (text, rotation) = read_rotation(&self.secrets)?;
        let keys = load_keys(&self.dir, &self.secrets, &self.server_names, rotation, now)?;
        tracing::info!(
            generation = keys.rotation.generation,
            phase = keys.rotation.phase.name(),
            ca_pin = %ca_pin(&keys.ca_cert_der),
            "trust keys loaded"
        );
        *self.keys.write() = Arc::new(keys);
        *self.loaded.lock() = text;
        self.stamp.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    /// Where the rotation stands, as the secrets directory says now.
    pub fn rotation(&self) -> Result<Rotation, PkiError> {
        Ok(read_rotation(&self.secrets)?.1)
    }

    /// Rotation, first step: makes the next CA (and its certificate
    /// cross-signed by the current CA) and the next command-signing key
    /// (endorsed by the current one). Agents learn both at their next poll;
    /// nothing is issued or signed with them yet.
    pub fn start_rotation(&self, now: i64) -> Result<Rotation, RotationError> {
        let rotation = self.step(|secrets, mut r| {
            if r.phase != Phase::Settled {
                return Err(RotationError::WrongPhase {
                    step: "StartTrustRotation",
                    phase: r.phase.name(),
                    expected: "Settled",
                    hint: "finish the rotation under way first (switch-trust-rotation, then finish-trust-rotation)",
                });
            }
            let (cur, next) = (r.generation, r.generation + 1);
            let (cur_ca_pem, cur_ca_key) = load_ca(secrets, cur)?;
            let cur_signing = load_signing_key(&secrets.join(Generation::of(cur).signing_key))?;
            let files = Generation::of(next);
            let (_, next_ca_key) = create_ca(secrets, next)?;
            let issuer =
                Issuer::from_ca_cert_pem(&cur_ca_pem, &cur_ca_key).map_err(cert_err("CA"))?;
            let cross = ca_params(next)
                .signed_by(&next_ca_key, &issuer)
                .map_err(cert_err("cross-signed CA"))?;
            write_private(&secrets.join(&files.cross), cross.pem().as_bytes())?;
            let next_signing = create_signing_key(&secrets.join(&files.signing_key))?;
            let next_public = next_signing.public_key().as_ref().to_vec();
            let mut endorsement = cur_signing.public_key().as_ref().to_vec();
            endorsement.extend_from_slice(
                cur_signing
                    .sign(&endorsed(&next_public))
                    .as_ref(),
            );
            write_private(&secrets.join(&files.endorsement), &endorsement)?;
            r.phase = Phase::Introduced;
            r.started_ms = Some(now);
            r.switched_ms = None;
            r.finished_ms = None;
            Ok(r)
        })?;
        Ok(rotation)
    }

    /// Rotation, second step: the next generation comes in force (client
    /// and server certificates from the new CA, commands signed with the new
    /// key); the previous one stays accepted. Client certificates the
    /// previous CA issued are accepted until `client_cert_lifetime` from now.
    pub fn switch_rotation(
        &self,
        now: i64,
        client_cert_lifetime: Duration,
    ) -> Result<Rotation, RotationError> {
        self.step(|_, mut r| {
            if r.phase != Phase::Introduced {
                return Err(RotationError::WrongPhase {
                    step: "SwitchTrustRotation",
                    phase: r.phase.name(),
                    expected: "Introduced",
                    hint: "start one with start-trust-rotation",
                });
            }
            r.previous = Some(r.generation);
            r.previous_accepted_until_ms = Some(now + client_cert_lifetime.as_millis() as i64);
            r.generation += 1;
            r.phase = Phase::Switched;
            r.switched_ms = Some(now);
            Ok(r)
        })
    }

    /// Rotation, last step: the previous CA's key and the previous signing
    /// key are deleted; agents are told to trust the new ones alone. The
    /// previous CA's certificate stays only to accept the client
    /// certificates it issued until they expire.
    pub fn finish_rotation(&self, now: i64) -> Result<Rotation, RotationError> {
        let previous = self.rotation()?.previous;
        let rotation = self.step(|_, mut r| {
            if r.phase != Phase::Switched {
                return Err(RotationError::WrongPhase {
                    step: "FinishTrustRotation",
                    phase: r.phase.name(),
                    expected: "Switched",
                    hint: "switch-trust-rotation comes first",
                });
            }
            r.phase = Phase::Settled;
            r.finished_ms = Some(now);
            Ok(r)
        })?;
        if let Some(p) = previous {
            let files = Generation::of(p);
            for name in [files.ca_key, files.signing_key] {
                let path = self.secrets.join(name);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io_err(&path)(e).into());
                    }
                    _ => {}
                }
            }
        }
        Ok(rotation)
    }

    /// One rotation step under the secrets lock: `f` sees the state as the
    /// secrets directory has it now and answers the next; the state file is
    /// written last (the step's commit), then this replica reloads at once.
    fn step(
        &self,
        f: impl FnOnce(&Path, Rotation) -> Result<Rotation, RotationError>,
    ) -> Result<Rotation, RotationError> {
        let next = {
            let _lock = lock_secrets(&self.secrets)?;
            let (_, r) = read_rotation(&self.secrets)?;
            let next = f(&self.secrets, r)?;
            write_rotation(&self.secrets, &next)?;
            next
        };
        self.reload_if_changed()?;
        Ok(next)
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

    /// `sha256:<hex>` fingerprint of the current CA certificate.
    pub fn pin(&self) -> String {
        ca_pin(&self.keys().ca_cert_der)
    }

    /// The current CA certificate (PEM).
    pub fn ca_cert_pem(&self) -> String {
        self.keys().ca_cert_pem.clone()
    }

    /// Every CA certificate agents trust now (PEM, one after the other).
    pub fn trusted_ca_pem(&self) -> String {
        self.keys()
            .trusted_ca_ders
            .iter()
            .map(|d| der_to_pem(d))
            .collect()
    }

    /// Raw Ed25519 public key that verifies command envelopes.
    pub fn signing_public_key(&self) -> Vec<u8> {
        self.keys().signing_key.public_key().as_ref().to_vec()
    }

    /// Signs an envelope payload.
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        self.keys().signing_key.sign(payload).as_ref().to_vec()
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
        // Backdated for clocks a little behind, by at most a tenth of the
        // lifetime: the agent renews at half of not_before..not_after, which
        // must stay ahead of now however short the lifetime.
        let now = SystemTime::now();
        params.not_before = to_offset(now - (lifetime / 10).min(Duration::from_secs(300)));
        params.not_after = to_offset(now + lifetime);
        params.serial_number = Some(random_serial());
        let keys = self.keys();
        let issuer =
            Issuer::from_ca_cert_pem(&keys.ca_cert_pem, &keys.ca_key).map_err(cert_err("CA"))?;
        let cert = params
            .signed_by(&csr.public_key, &issuer)
            .map_err(cert_err("client"))?;
        Ok(cert.pem())
    }
}

/// What a previous command-signing key signs to endorse `next` (raw key).
pub fn endorsed(next: &[u8]) -> Vec<u8> {
    let mut v = tether_proto::KEY_ENDORSEMENT_CONTEXT.to_vec();
    v.extend_from_slice(next);
    v
}

/// Whether the previous CA's client certificates are still accepted at
/// `now` once a rotation is finished: until the last one it issued expires.
fn client_previous_due(r: &Rotation, now: i64) -> bool {
    r.previous.is_some() && r.previous_accepted_until_ms.is_some_and(|t| now < t)
}

/// The trust keys `rotation` puts in force, with this replica's server
/// certificate (in `dir`) issued again when its names changed or another
/// CA issued it.
fn load_keys(
    dir: &Path,
    secrets: &Path,
    server_names: &[String],
    rotation: Rotation,
    now: i64,
) -> Result<Keys, PkiError> {
    let g = rotation.generation.max(1);
    let files = Generation::of(g);
    let (ca_cert_pem, ca_key) = load_ca(secrets, g)?;
    let ca_cert_der = pem_to_der(&ca_cert_pem).ok_or_else(|| {
        PkiError::Csr(format!(
            "{}: not a PEM certificate",
            secrets.join(&files.ca_cert).display()
        ))
    })?;
    let signing_key = load_signing_key(&secrets.join(&files.signing_key))?;
    let ca_der_of = |generation: u32| -> Result<Vec<u8>, PkiError> {
        let path = secrets.join(Generation::of(generation).ca_cert);
        pem_to_der(&read_text(&path)?)
            .ok_or_else(|| PkiError::Csr(format!("{}: not a PEM certificate", path.display())))
    };
    let mut trusted_ca_ders = vec![ca_cert_der.clone()];
    let mut accepted_signing_keys = Vec::new();
    match rotation.phase {
        Phase::Introduced => {
            trusted_ca_ders.push(ca_der_of(g + 1)?);
            let next = load_signing_key(&secrets.join(Generation::of(g + 1).signing_key))?;
            accepted_signing_keys.push(next.public_key().as_ref().to_vec());
        }
        Phase::Switched => {
            if let Some(p) = rotation.previous {
                trusted_ca_ders.push(ca_der_of(p)?);
                let previous = load_signing_key(&secrets.join(Generation::of(p).signing_key))?;
                accepted_signing_keys.push(previous.public_key().as_ref().to_vec());
            }
        }
        Phase::Settled => {}
    }
    let mut client_ca_pems: Vec<String> = trusted_ca_ders.iter().map(|d| der_to_pem(d)).collect();
    if rotation.phase == Phase::Settled
        && let Some(p) = rotation.previous
        && client_previous_due(&rotation, now)
    {
        client_ca_pems.push(der_to_pem(&ca_der_of(p)?));
    }
    let endorsement = match fs::read(secrets.join(&files.endorsement)) {
        Ok(b) if b.len() == 32 + 64 => Some((b[..32].to_vec(), b[32..].to_vec())),
        _ => None,
    };
    let cross = if g > 1 {
        fs::read_to_string(secrets.join(&files.cross)).unwrap_or_default()
    } else {
        String::new()
    };

    let server_cert = dir.join("server.pem");
    let server_key = dir.join("server.key");
    let names_file = dir.join("server.names");
    let issuer_file = dir.join("server.issuer");
    let names_line = server_names.join(",");
    let pin = ca_pin(&ca_cert_der);
    let names_current = fs::read_to_string(&names_file).ok().as_deref() == Some(&names_line);
    let issuer_current = fs::read_to_string(&issuer_file).ok().as_deref() == Some(pin.as_str())
        || (g == 1 && !issuer_file.exists());
    let (server_cert_pem, server_key_pem) =
        if names_current && issuer_current && server_cert.exists() && server_key.exists() {
            (read_text(&server_cert)?, read_text(&server_key)?)
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
            let start = SystemTime::now();
            params.not_before = to_offset(start - Duration::from_secs(3600));
            params.not_after = to_offset(start + Duration::from_secs(5 * 365 * 24 * 3600));
            params.serial_number = Some(random_serial());
            let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, &ca_key).map_err(cert_err("CA"))?;
            let cert = params
                .signed_by(&key, &issuer)
                .map_err(cert_err("server"))?;
            write_private(&server_key, key.serialize_pem().as_bytes())?;
            write_private(&server_cert, cert.pem().as_bytes())?;
            write_private(&names_file, names_line.as_bytes())?;
            write_private(&issuer_file, pin.as_bytes())?;
            (cert.pem(), key.serialize_pem())
        };
    Ok(Keys {
        rotation,
        server_chain_pem: format!("{server_cert_pem}{cross}{ca_cert_pem}"),
        server_key_pem,
        ca_cert_pem,
        ca_cert_der,
        ca_key,
        signing_key,
        trusted_ca_ders,
        client_ca_pems,
        accepted_signing_keys,
        endorsement,
    })
}

/// PEM of a DER certificate.
pub fn der_to_pem(der: &[u8]) -> String {
    tether_proto::certificate_pem(der)
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
    fn a_rotation_introduces_switches_and_retires_the_ca_and_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_string()];
        let pki = Pki::load_or_create(dir.path(), &names).unwrap();
        let other = Pki::load_or_create(dir.path(), &names).unwrap();
        let (old_pin, old_key) = (pki.pin(), pki.signing_public_key());
        assert!(matches!(
            pki.switch_rotation(1, Duration::from_secs(60)),
            Err(RotationError::WrongPhase { .. })
        ));

        let r = pki.start_rotation(1).unwrap();
        assert_eq!((r.generation, r.phase), (1, Phase::Introduced));
        let k = pki.keys();
        assert_eq!(k.trusted_ca_ders.len(), 2);
        assert_eq!(k.accepted_signing_keys.len(), 1);
        assert_eq!(pki.pin(), old_pin, "nothing is issued by the next CA yet");
        let next_key = k.accepted_signing_keys[0].clone();
        // Another replica on the same secrets picks the step up.
        assert!(other.reload_if_changed().unwrap());
        assert!(!other.reload_if_changed().unwrap());
        assert_eq!(other.keys().accepted_signing_keys, vec![next_key.clone()]);

        let r = pki
            .switch_rotation(now_ms(), Duration::from_secs(60))
            .unwrap();
        assert_eq!((r.generation, r.phase), (2, Phase::Switched));
        assert_ne!(pki.pin(), old_pin);
        assert_eq!(pki.signing_public_key(), next_key);
        let k = pki.keys();
        assert_eq!(k.accepted_signing_keys, vec![old_key.clone()]);
        // The new key, endorsed by the old one.
        let (by, sig) = k.endorsement.clone().unwrap();
        assert_eq!(by, old_key);
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &old_key)
            .verify(&endorsed(&next_key), &sig)
            .unwrap();
        // The server chain: leaf, the new CA cross-signed by the old, the new CA.
        assert_eq!(k.server_chain_pem.matches("BEGIN CERTIFICATE").count(), 3);
        assert_eq!(k.client_ca_pems.len(), 2);

        let r = pki.finish_rotation(3).unwrap();
        assert_eq!((r.generation, r.phase), (2, Phase::Settled));
        let k = pki.keys();
        assert_eq!(k.trusted_ca_ders.len(), 1);
        assert!(k.accepted_signing_keys.is_empty());
        assert!(k.endorsement.is_some(), "returning agents still need it");
        assert!(!dir.path().join("ca.key").exists());
        assert!(!dir.path().join("signing.key").exists());
        // The old CA's client certificates, until they have all expired.
        assert_eq!(k.client_ca_pems.len(), 2);
        assert!(matches!(
            pki.finish_rotation(4),
            Err(RotationError::WrongPhase { .. })
        ));
        // A restart loads the generation in force.
        let again = Pki::load_or_create(dir.path(), &names).unwrap();
        assert_eq!(again.pin(), pki.pin());
        assert_eq!(again.signing_public_key(), next_key);
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
