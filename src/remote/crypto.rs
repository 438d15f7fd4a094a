//! Keys, ids and seals of a repository.
//!
//! - A **key file** on the host (32 random bytes, hex, mode 0600) opens the
//!   repository's **master key**, which the repository keeps sealed in its
//!   `config` object. Losing every copy of the key file loses the data.
//! - The master key holds a data key (XChaCha20-Poly1305), an id key (keyed
//!   blake3: ids reveal nothing about the content) and the chunker's seed
//!   (boundaries depend on the repository, so they reveal nothing either).
//! - A **sealed object** is `nonce (24 bytes) || ciphertext || tag (16)` of
//!   the zstd-compressed plaintext, with the object's id or name as the
//!   associated data, so a sealed blob moved to another id fails to open.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::error::{RemoteError, RemoteResult};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a seal adds to the compressed plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// zstd level of sealed objects: restic's default speed, a good trade on
/// two cores.
const ZSTD_LEVEL: i32 = 3;

/// A 32-byte id (a blob's keyed hash, a pack's or a manifest's hash).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Id(pub [u8; 32]);

impl Id {
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    pub fn from_hex(text: &str) -> Option<Id> {
        let bytes = unhex(text)?;
        Some(Id(bytes.try_into().ok()?))
    }

    /// The first 8 hex digits, for messages.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

thread_local! {
    // One zstd context per thread, reused: making one per blob costs more
    // than compressing a small file.
    static COMPRESSOR: std::cell::RefCell<zstd::bulk::Compressor<'static>> = std::cell::RefCell::new(
        zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("a zstd context at a valid level"),
    );
    static DECOMPRESSOR: std::cell::RefCell<zstd::bulk::Decompressor<'static>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().expect("a zstd context"));
}

pub use crate::hex::{decode as unhex, encode as hex};

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the kernel's random source failed");
    bytes
}

/// The 32-byte secret in a key file.
#[derive(Clone)]
pub struct KeyFileKey([u8; 32]);

impl KeyFileKey {
    /// Reads a key file (64 hex digits).
    pub fn read(path: &Path) -> RemoteResult<KeyFileKey> {
        let text = std::fs::read_to_string(path).map_err(|source| RemoteError::Io { path: path.to_owned(), source })?;
        let bytes = unhex(text.trim()).and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| RemoteError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a rollpoint key file (64 hex digits)"),
        })?;
        Ok(KeyFileKey(bytes))
    }

    /// Creates a new key file, readable by root only; refuses to replace one.
    pub fn create(path: &Path) -> RemoteResult<KeyFileKey> {
        let io_error = |source| RemoteError::Io { path: path.to_owned(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let key = KeyFileKey(random_bytes());
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io_error)?;
        writeln!(file, "{}", hex(&key.0)).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        Ok(key)
    }
}

/// The repository's own keys, the same on every host that uses it.
#[derive(Clone)]
pub struct MasterKey {
    data: [u8; 32],
    id: [u8; 32],
    pub chunker_seed: u64,
}

const MASTER_KEY_LEN: usize = 72;

impl MasterKey {
    pub fn generate() -> MasterKey {
        let bytes: [u8; MASTER_KEY_LEN] = random_bytes();
        MasterKey::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8; MASTER_KEY_LEN]) -> MasterKey {
        let mut data = [0u8; 32];
        let mut id = [0u8; 32];
        let mut seed = [0u8; 8];
        data.copy_from_slice(&bytes[..32]);
        id.copy_from_slice(&bytes[32..64]);
        seed.copy_from_slice(&bytes[64..]);
        MasterKey { data, id, chunker_seed: u64::from_le_bytes(seed) }
    }

    fn to_bytes(&self) -> [u8; MASTER_KEY_LEN] {
        let mut bytes = [0u8; MASTER_KEY_LEN];
        bytes[..32].copy_from_slice(&self.data);
        bytes[32..64].copy_from_slice(&self.id);
        bytes[64..].copy_from_slice(&self.chunker_seed.to_le_bytes());
        bytes
    }

    /// The master key sealed under the key file's key, bound to the
    /// repository's id.
    pub fn wrap(&self, key_file: &KeyFileKey, repository_id: &str) -> Vec<u8> {
        encrypt(&key_file.0, &self.to_bytes(), repository_id.as_bytes())
    }

    /// Opens a wrapped master key; `None` when the key file is not the one
    /// it was wrapped with.
    pub fn unwrap(wrapped: &[u8], key_file: &KeyFileKey, repository_id: &str) -> Option<MasterKey> {
        let bytes = decrypt(&key_file.0, wrapped, repository_id.as_bytes())?;
        Some(MasterKey::from_bytes(&bytes.try_into().ok()?))
    }

    /// The id of a blob: keyed blake3 of its plaintext.
    pub fn blob_id(&self, plain: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id, plain).as_bytes())
    }

    /// The id of a stored object (pack, manifest): keyed blake3 of its bytes,
    /// under a key derived for that purpose, so object names and blob ids
    /// never coincide.
    pub fn object_id(&self, bytes: &[u8]) -> Id {
        let key = blake3::derive_key("rollpoint repository object id v1", &self.id);
        Id(*blake3::keyed_hash(&key, bytes).as_bytes())
    }

    /// Compresses and seals `plain`, bound to `context` (the blob id or the
    /// object name).
    pub fn seal(&self, plain: &[u8], context: &[u8]) -> Vec<u8> {
        let compressed = COMPRESSOR.with(|compressor| {
            compressor.borrow_mut().compress(plain).expect("zstd compression of a buffer cannot fail")
        });
        encrypt(&self.data, &compressed, context)
    }

    /// Opens a sealed object; the error says which check failed.
    pub fn open(&self, sealed: &[u8], context: &[u8], max_len: usize) -> Result<Vec<u8>, String> {
        let compressed =
            decrypt(&self.data, sealed, context).ok_or("its seal does not verify (altered or not ours)")?;
        DECOMPRESSOR
            .with(|decompressor| decompressor.borrow_mut().decompress(&compressed, max_len))
            .map_err(|e| format!("does not decompress: {e}"))
    }

    /// Opens a sealed blob and checks that its plaintext has id `id`.
    pub fn open_blob(&self, sealed: &[u8], id: &Id, raw_len: usize) -> Result<Vec<u8>, String> {
        let plain = self.open(sealed, &id.0, raw_len)?;
        if plain.len() != raw_len {
            return Err(format!("holds {} bytes, the index says {raw_len}", plain.len()));
        }
        if self.blob_id(&plain) != *id {
            return Err("its content does not match its id".into());
        }
        Ok(plain)
    }
}

fn encrypt(key: &[u8; 32], plain: &[u8], context: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let ciphertext = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad: context })
        .expect("XChaCha20-Poly1305 encryption of a buffer cannot fail");
    let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    sealed
}

fn decrypt(key: &[u8; 32], sealed: &[u8], context: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: context }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_blob_opens_only_under_its_id() {
        let key = MasterKey::generate();
        let plain = b"hello hello hello hello".repeat(100);
        let id = key.blob_id(&plain);
        let sealed = key.seal(&plain, &id.0);
        assert!(sealed.len() < plain.len(), "compressed");
        assert_eq!(key.open_blob(&sealed, &id, plain.len()).unwrap(), plain);
        let other = key.blob_id(b"other");
        assert!(key.open_blob(&sealed, &other, plain.len()).unwrap_err().contains("seal"));
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN + 3] ^= 1;
        assert!(key.open_blob(&flipped, &id, plain.len()).is_err());
        assert!(MasterKey::generate().open_blob(&sealed, &id, plain.len()).is_err(), "another repository's key");
    }

    #[test]
    fn ids_are_keyed() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), a.object_id(b"x"));
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
    }

    #[test]
    fn the_master_key_opens_with_its_key_file_and_repository_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key_file = KeyFileKey::create(&path).unwrap();
        assert!(KeyFileKey::create(&path).is_err(), "never replaces a key file");
        let master = MasterKey::generate();
        let wrapped = master.wrap(&key_file, "repo-1");
        let reread = KeyFileKey::read(&path).unwrap();
        let opened = MasterKey::unwrap(&wrapped, &reread, "repo-1").unwrap();
        assert_eq!(opened.to_bytes(), master.to_bytes());
        assert!(MasterKey::unwrap(&wrapped, &reread, "repo-2").is_none());
        let other = KeyFileKey::create(&dir.path().join("other.key")).unwrap();
        assert!(MasterKey::unwrap(&wrapped, &other, "repo-1").is_none());
    }

    #[test]
    fn hex_round_trips() {
        let id = Id(random_bytes());
        assert_eq!(Id::from_hex(&id.to_hex()), Some(id));
        assert_eq!(Id::from_hex("zz"), None);
    }
}
