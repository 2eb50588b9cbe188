//! The key-encryption keys of SecureString parameters, and envelope
//! encryption under them.
//!
//! Each SecureString version is encrypted (AES-256-GCM) under a fresh random
//! 256-bit data key; the data key is wrapped (AES-256-GCM again) under a
//! key-encryption key (KEK). Both are bound to the parameter's name and
//! version as associated data, so a ciphertext moved to another row does not
//! open. The database keeps only the ciphertext, the wrapped data key and the
//! KEK's name and generation.
//!
//! KEKs live in the secrets directory (`--secrets-dir`, shared by every
//! replica, as the CA and the signing key), one file per key under
//! `parameter-keys/`, never in the database: a dump or a read-only database
//! user carries no secret. A file holds every generation of its key (a
//! rotation appends one and re-wraps the data keys; older generations stay
//! so that a value is readable at every moment of a rotation). The database
//! names the keys and keeps a check value per generation (HMAC-SHA256 of a
//! fixed text under the key): a wrong or missing key file is a named error
//! at start, never a silent failure to decrypt later.
//!
//! Key files are read again when a replica meets a key or generation it has
//! not loaded (another replica created or rotated it in the shared
//! directory). This module never logs key material or values.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parking_lot::RwLock;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use tether_ssm::{ApiError, limits};
use tether_store::{ParameterKeyRow, Store, StoreError};

/// The directory under the secrets directory that holds the key files.
pub const KEY_DIR: &str = "parameter-keys";
/// The first line of a key file.
const HEADER: &str = "tether-parameter-key v1";
/// What the check value authenticates.
const CHECK_TEXT: &[u8] = b"tether parameter key check v1";

/// Why the keyring could not be opened or a key not used.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "parameter key {key_id}: its key file {path} is missing; the database holds SecureString values wrapped under it. Copy the secrets directory of the replica that created it (every replica must share --secrets-dir)"
    )]
    MissingKeyFile { key_id: String, path: PathBuf },
    #[error(
        "parameter key {key_id}: {path} does not hold generation {generation} as this database knows it (check value differs or the generation is absent): a wrong or stale key file. Restore the right file; nothing was decrypted with it"
    )]
    WrongKeyFile {
        key_id: String,
        path: PathBuf,
        generation: i64,
    },
    #[error("parameter key file {path}: {why}")]
    Malformed { path: PathBuf, why: String },
    #[error("parameter keys: {0}")]
    Store(#[from] StoreError),
}

/// One key's generations, as its file holds them.
#[derive(Clone)]
struct KeyFile {
    generations: BTreeMap<i64, [u8; 32]>,
}

/// A SecureString value as stored: the KEK's name and generation, the
/// wrapped data key and the ciphertext (base64, nonce first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub generation: i64,
    pub data_key: String,
    pub ciphertext: String,
}

impl Sealed {
    /// The sealed value of a stored SecureString version (`None` when a part is missing).
    pub fn of(row: &tether_store::ParameterVersionRow) -> Option<Sealed> {
        Some(Sealed {
            key_id: row.key_id.clone()?,
            generation: row.key_generation?,
            data_key: row.data_key.clone()?,
            ciphertext: row.ciphertext.clone()?,
        })
    }
}

/// The KEKs this replica has loaded.
pub struct Keyring {
    dir: PathBuf,
    keys: RwLock<HashMap<String, KeyFile>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("dir", &self.dir).finish()
    }
}

/// The file of `key_id` in `dir` (`alias/tether/default` →
/// `alias+tether+default.key`: names hold no `+`).
pub fn key_path(dir: &Path, key_id: &str) -> PathBuf {
    dir.join(format!("{}.key", key_id.replace('/', "+")))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyringError + '_ {
    move |source| KeyringError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn check_value(key: &[u8; 32]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    hex::encode(ring::hmac::sign(&k, CHECK_TEXT).as_ref())
}

fn read_key_file(path: &Path) -> Result<Option<KeyFile>, KeyringError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let malformed = |why: String| KeyringError::Malformed {
        path: path.to_path_buf(),
        why,
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(malformed(format!("the first line is not {HEADER:?}")));
    }
    let mut generations = BTreeMap::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let (g, k) = line
            .split_once(' ')
            .ok_or_else(|| malformed(format!("line {}: expected GENERATION HEX", n + 2)))?;
        let g: i64 = g
            .parse()
            .map_err(|_| malformed(format!("line {}: generation {g:?}", n + 2)))?;
        let bytes = hex::decode(k.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| malformed(format!("line {}: not 32 bytes of hex", n + 2)))?;
        generations.insert(g, bytes);
    }
    Ok(Some(KeyFile { generations }))
}

fn write_key_file(path: &Path, file: &KeyFile) -> Result<(), KeyringError> {
    let mut text = format!("{HEADER}\n");
    for (g, k) in &file.generations {
        text.push_str(&format!("{g} {}\n", hex::encode(k)));
    }
    tether_util::fs::write_private(path, text.as_bytes()).map_err(io_err(path))
}

/// The associated data of a value and of its data key.
fn value_aad(name: &str, version: i64) -> Vec<u8> {
    format!("tether-parameter-value v1\0{name}\0{version}").into_bytes()
}
fn data_key_aad(key_id: &str, name: &str, version: i64) -> Vec<u8> {
    format!("tether-parameter-data-key v1\0{key_id}\0{name}\0{version}").into_bytes()
}

fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
    let mut data = plain.to_vec();
    // Sealing fails only past the AEAD's size limit (gigabytes); values are
    // at most 4 KB.
    if k.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
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

fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let mut data = ct.to_vec();
    let plain = k
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).ok()?,
            Aad::from(aad),
            &mut data,
        )
        .ok()?;
    Some(plain.to_vec())
}

/// The lock every replica takes before it writes a key file.
struct DirLock(fs::File);

impl DirLock {
    fn take(dir: &Path) -> Result<DirLock, KeyringError> {
        let path = dir.join(".lock");
        tether_util::fs::lock_exclusive(&path)
            .map(DirLock)
            .map_err(io_err(&path))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn internal(what: String) -> ApiError {
    tracing::error!(error = %what, "parameter key");
    ApiError::new("InternalServerError", what)
}

impl Keyring {
    /// Opens the keys of `secrets_dir/parameter-keys`, checking every key
    /// and generation the database names against its file, and creating
    /// the default key on first start (under the directory's lock, so
    /// replicas starting together create it once).
    pub async fn load(
        secrets_dir: &Path,
        store: &Store,
        now_ms: i64,
    ) -> Result<Keyring, KeyringError> {
        let dir = secrets_dir.join(KEY_DIR);
        if !dir.exists() {
            fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&dir)
                .map_err(io_err(&dir))?;
        }
        let ring = Keyring {
            dir,
            keys: RwLock::new(HashMap::new()),
        };
        let default = limits::DEFAULT_PARAMETER_KEY;
        if !store
            .parameter_keys()
            .await?
            .iter()
            .any(|k| k.key_id == default)
        {
            ring.create_or_adopt(
                store,
                default,
                "The default key of SecureString parameters",
                now_ms,
            )
            .await?;
        }
        for key in store.parameter_keys().await? {
            ring.verify(store, &key.key_id).await?;
        }
        Ok(ring)
    }

    /// Creates `key_id`'s file and row; a file already there (the database
    /// was replaced, or another replica wrote the file but had not yet
    /// recorded it) is adopted with its generations. False when the database
    /// already names the key.
    async fn create_or_adopt(
        &self,
        store: &Store,
        key_id: &str,
        description: &str,
        now_ms: i64,
    ) -> Result<bool, KeyringError> {
        let path = key_path(&self.dir, key_id);
        let file = {
            let _lock = DirLock::take(&self.dir)?;
            match read_key_file(&path)? {
                Some(f) if !f.generations.is_empty() => f,
                _ => {
                    let f = KeyFile {
                        generations: BTreeMap::from([(1, rand::random::<[u8; 32]>())]),
                    };
                    write_key_file(&path, &f)?;
                    f
                }
            }
        };
        // Adopting a file with several generations records the first; the
        // others are recorded as rotations below.
        let mut gens = file.generations.iter();
        let Some((&first, first_key)) = gens.next() else {
            return Err(KeyringError::Malformed {
                path,
                why: "no generation".into(),
            });
        };
        let created = store
            .insert_parameter_key(
                &ParameterKeyRow {
                    key_id: key_id.to_string(),
                    description: description.to_string(),
                    generation: first,
                    created_ms: now_ms,
                    rotated_ms: None,
                },
                &check_value(first_key),
            )
            .await?;
        if created {
            for (&g, k) in gens {
                store
                    .advance_parameter_key(key_id, g, &check_value(k), now_ms)
                    .await?;
            }
        }
        self.keys.write().insert(key_id.to_string(), file);
        Ok(created)
    }

    /// Loads `key_id`'s file and checks every generation the database knows.
    async fn verify(&self, store: &Store, key_id: &str) -> Result<(), KeyringError> {
        let path = key_path(&self.dir, key_id);
        let file = read_key_file(&path)?.ok_or_else(|| KeyringError::MissingKeyFile {
            key_id: key_id.to_string(),
            path: path.clone(),
        })?;
        for (generation, check) in store.parameter_key_checks(key_id).await? {
            let ok = file
                .generations
                .get(&generation)
                .is_some_and(|k| check_value(k) == check);
            if !ok {
                return Err(KeyringError::WrongKeyFile {
                    key_id: key_id.to_string(),
                    path,
                    generation,
                });
            }
        }
        self.keys.write().insert(key_id.to_string(), file);
        Ok(())
    }

    /// The material of `key_id` at `generation`, reading its file again if
    /// this replica has not seen that generation yet.
    async fn material(
        &self,
        store: &Store,
        key_id: &str,
        generation: i64,
    ) -> Result<[u8; 32], ApiError> {
        if let Some(k) = self
            .keys
            .read()
            .get(key_id)
            .and_then(|f| f.generations.get(&generation))
        {
            return Ok(*k);
        }
        self.verify(store, key_id)
            .await
            .map_err(|e| internal(e.to_string()))?;
        self.keys
            .read()
            .get(key_id)
            .and_then(|f| f.generations.get(&generation))
            .copied()
            .ok_or_else(|| {
                internal(format!(
                    "parameter key {key_id}: generation {generation} is not in {} on this replica",
                    key_path(&self.dir, key_id).display()
                ))
            })
    }

    /// The key's current generation, as the database says.
    async fn current(
        &self,
        store: &Store,
        key_id: &str,
    ) -> Result<Option<ParameterKeyRow>, ApiError> {
        Ok(store
            .parameter_keys()
            .await?
            .into_iter()
            .find(|k| k.key_id == key_id))
    }

    /// Encrypts `value` for version `version` of `name` under a fresh data
    /// key wrapped by `key_id`'s current generation; `InvalidKeyId` when no
    /// such key exists.
    pub async fn seal(
        &self,
        store: &Store,
        key_id: &str,
        name: &str,
        version: i64,
        value: &str,
    ) -> Result<Sealed, ApiError> {
        let key = self.current(store, key_id).await?.ok_or_else(|| {
            ApiError::new(
                "InvalidKeyId",
                format!(
                    "KeyId {key_id:?} names no parameter key (tether list-parameter-keys; tether create-parameter-key --key-id {key_id})"
                ),
            )
        })?;
        let kek = self.material(store, key_id, key.generation).await?;
        let data_key: [u8; 32] = rand::random();
        let ciphertext = seal(&data_key, &value_aad(name, version), value.as_bytes());
        let wrapped = seal(&kek, &data_key_aad(key_id, name, version), &data_key);
        Ok(Sealed {
            key_id: key_id.to_string(),
            generation: key.generation,
            data_key: B64.encode(wrapped),
            ciphertext: B64.encode(ciphertext),
        })
    }

    /// Decrypts what [`Keyring::seal`] sealed for version `version` of `name`.
    pub async fn unseal(
        &self,
        store: &Store,
        name: &str,
        version: i64,
        sealed: &Sealed,
    ) -> Result<String, ApiError> {
        let corrupt = |what: &str| {
            internal(format!(
                "parameter {name} version {version}: {what} does not open under key {} generation {}",
                sealed.key_id, sealed.generation
            ))
        };
        let kek = self
            .material(store, &sealed.key_id, sealed.generation)
            .await?;
        let wrapped = B64
            .decode(&sealed.data_key)
            .map_err(|_| corrupt("the data key"))?;
        let data_key = open(&kek, &data_key_aad(&sealed.key_id, name, version), &wrapped)
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| corrupt("the data key"))?;
        let ct = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| corrupt("the value"))?;
        let plain =
            open(&data_key, &value_aad(name, version), &ct).ok_or_else(|| corrupt("the value"))?;
        String::from_utf8(plain).map_err(|_| corrupt("the value"))
    }

    /// The value of version `version` of the SecureString `name`, decrypted;
    /// `None` when that version no longer exists.
    pub async fn open_version(
        &self,
        store: &Store,
        name: &str,
        version: i64,
    ) -> Result<Option<String>, ApiError> {
        let Some(row) = store.parameter_version(name, version).await? else {
            return Ok(None);
        };
        let sealed = Sealed::of(&row).ok_or_else(|| {
            internal(format!(
                "parameter {name} version {version} is not a SecureString, or its encrypted value is incomplete"
            ))
        })?;
        self.unseal(store, name, version, &sealed).await.map(Some)
    }

    /// Creates a new key (`CreateParameterKey`): `AlreadyExistsException`
    /// when the database names it already.
    pub async fn create(
        &self,
        store: &Store,
        key_id: &str,
        description: &str,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        if self.current(store, key_id).await?.is_some() {
            return Err(ApiError::new(
                "AlreadyExistsException",
                format!("parameter key {key_id} already exists"),
            ));
        }
        let created = self
            .create_or_adopt(store, key_id, description, now_ms)
            .await
            .map_err(|e| internal(e.to_string()))?;
        if !created {
            return Err(ApiError::new(
                "AlreadyExistsException",
                format!("parameter key {key_id} already exists"),
            ));
        }
        Ok(())
    }

    /// Rotates `key_id` (`RotateParameterKey`): a new generation is
    /// appended to its file and made current, then every data key wrapped
    /// under an older generation is re-wrapped under it, row by row (a value
    /// stays readable throughout: its old generation stays in the file).
    /// Answers the new generation and how many data keys were re-wrapped.
    pub async fn rotate(
        &self,
        store: &Store,
        key_id: &str,
        now_ms: i64,
    ) -> Result<(i64, usize), ApiError> {
        let key = self.current(store, key_id).await?.ok_or_else(|| {
            ApiError::new(
                "InvalidKeyId",
                format!("KeyId {key_id:?} names no parameter key"),
            )
        })?;
        let path = key_path(&self.dir, key_id);
        let generation = key.generation + 1;
        let fresh: [u8; 32] = rand::random();
        {
            let _lock = DirLock::take(&self.dir).map_err(|e| internal(e.to_string()))?;
            let mut file = read_key_file(&path)
                .map_err(|e| internal(e.to_string()))?
                .ok_or_else(|| {
                    internal(
                        KeyringError::MissingKeyFile {
                            key_id: key_id.to_string(),
                            path: path.clone(),
                        }
                        .to_string(),
                    )
                })?;
            // A generation left in the file by a rotation whose database
            // write failed is replaced: the database never named it.
            file.generations.insert(generation, fresh);
            write_key_file(&path, &file).map_err(|e| internal(e.to_string()))?;
            self.keys.write().insert(key_id.to_string(), file);
        }
        if !store
            .advance_parameter_key(key_id, generation, &check_value(&fresh), now_ms)
            .await?
        {
            return Err(ApiError::new(
                "TooManyUpdates",
                format!("parameter key {key_id} was rotated by another request; try again"),
            ));
        }
        let rewrapped = self.rewrap(store, key_id, generation, &fresh).await?;
        Ok((generation, rewrapped))
    }

    /// Re-wraps every data key of `key_id` older than `generation`.
    async fn rewrap(
        &self,
        store: &Store,
        key_id: &str,
        generation: i64,
        kek: &[u8; 32],
    ) -> Result<usize, ApiError> {
        let mut done = 0usize;
        loop {
            let batch = store
                .data_keys_below(key_id, generation, limits::PARAMETER_KEY_REWRAP_BATCH)
                .await?;
            if batch.is_empty() {
                return Ok(done);
            }
            let mut progressed = false;
            for row in &batch {
                let old = self.material(store, key_id, row.key_generation).await?;
                let aad = data_key_aad(key_id, &row.name, row.version);
                let data_key = B64
                    .decode(&row.data_key)
                    .ok()
                    .and_then(|w| open(&old, &aad, &w))
                    .ok_or_else(|| {
                        internal(format!(
                            "parameter {} version {}: its data key does not open under {key_id} generation {}",
                            row.name, row.version, row.key_generation
                        ))
                    })?;
                let wrapped = B64.encode(seal(kek, &aad, &data_key));
                if store.rewrap_data_key(row, generation, &wrapped).await? {
                    done += 1;
                    progressed = true;
                }
            }
            if !progressed {
                // Every row of the batch changed under us (deleted, or
                // re-wrapped by a concurrent rotation): read again.
                tokio::task::yield_now().await;
            }
        }
    }

    /// Paths of every key file (StrictModes checks them as secrets).
    pub fn files(secrets_dir: &Path) -> Vec<PathBuf> {
        let dir = secrets_dir.join(KEY_DIR);
        fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "key"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_open_only_for_their_row() {
        let dk: [u8; 32] = rand::random();
        let sealed = seal(&dk, &value_aad("/a", 1), b"hunter2");
        assert_eq!(
            open(&dk, &value_aad("/a", 1), &sealed).as_deref(),
            Some(&b"hunter2"[..])
        );
        assert_eq!(open(&dk, &value_aad("/a", 2), &sealed), None);
        assert_eq!(open(&dk, &value_aad("/b", 1), &sealed), None);
        let other: [u8; 32] = rand::random();
        assert_eq!(open(&other, &value_aad("/a", 1), &sealed), None);
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn key_files_round_trip_and_refuse_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path(), "alias/tether/x");
        assert!(path.ends_with("alias+tether+x.key"));
        let f = KeyFile {
            generations: BTreeMap::from([(1, [7u8; 32]), (2, [9u8; 32])]),
        };
        write_key_file(&path, &f).unwrap();
        let back = read_key_file(&path).unwrap().unwrap();
        assert_eq!(back.generations, f.generations);
        std::fs::write(&path, "nonsense\n").unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(KeyringError::Malformed { .. })
        ));
        std::fs::write(&path, format!("{HEADER}\n1 abcd\n")).unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(KeyringError::Malformed { .. })
        ));
        assert!(
            read_key_file(&dir.path().join("none.key"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn check_values_tell_keys_apart() {
        assert_ne!(check_value(&[1u8; 32]), check_value(&[2u8; 32]));
        assert_eq!(check_value(&[1u8; 32]), check_value(&[1u8; 32]));
    }
}
