//! Bearer tokens: made and revoked through `TokenService`, shown once, kept
//! only as a blake3 hash keyed with a per-daemon secret key (a file of the
//! state folder, mode 0600), so a copy of the store alone does not let
//! anyone in.
//!
//! A secret reads `rpt.<name>.<64 hex digits>`: the name finds the record,
//! the keyed hash (compared in constant time) proves the secret.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use super::{names, EngineError, EngineResult};
use crate::store::{Store, TokenRecord};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Snapshot,
    Restore,
    Schedule,
    Admin,
    /// `GET /metrics` over TCP, and nothing else.
    MetricsRead,
}

impl Scope {
    pub const ALL: [(&'static str, Scope); 6] = [
        ("read", Scope::Read),
        ("snapshot", Scope::Snapshot),
        ("restore", Scope::Restore),
        ("schedule", Scope::Schedule),
        ("admin", Scope::Admin),
        ("metrics:read", Scope::MetricsRead),
    ];

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.iter().find(|(name, _)| *name == text).map(|(_, scope)| *scope)
    }

    pub fn name(self) -> &'static str {
        Scope::ALL.iter().find(|(_, scope)| *scope == self).map(|(name, _)| *name).unwrap_or("?")
    }

    /// Whether holding `self` grants `wanted`: admin grants everything, and
    /// every scope but metrics:read (for a scraper) grants read.
    pub fn grants(self, wanted: Scope) -> bool {
        self == Scope::Admin || self == wanted || (wanted == Scope::Read && self != Scope::MetricsRead)
    }
}

pub struct TokenBook {
    store: Arc<Store>,
    key: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{path}: must be exactly 32 bytes")]
    Size { path: std::path::PathBuf },
}

impl TokenBook {
    /// Opens the book; the hashing key is read from `key_file`, or made
    /// (from /dev/urandom) when the file does not exist.
    pub fn open(store: Arc<Store>, key_file: &Path) -> Result<TokenBook, KeyError> {
        let io = |source| KeyError::Io { path: key_file.to_owned(), source };
        let key = match std::fs::read(key_file) {
            Ok(bytes) => bytes.try_into().map_err(|_| KeyError::Size { path: key_file.to_owned() })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = random_bytes().map_err(io)?;
                let mut file =
                    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(key_file).map_err(io)?;
                std::io::Write::write_all(&mut file, &key).map_err(io)?;
                file.sync_all().map_err(io)?;
                key
            }
            Err(error) => return Err(io(error)),
        };
        Ok(TokenBook { store, key })
    }

    /// Makes a token; returns its record and its secret (shown once).
    pub fn create(&self, name: &str, scopes: &[String], containers: &[String]) -> EngineResult<(TokenRecord, String)> {
        names::container_id("name", name)?;
        if scopes.is_empty() {
            return Err(EngineError::invalid(
                "scopes",
                "give at least one of read, snapshot, restore, schedule, admin, metrics:read",
            ));
        }
        for scope in scopes {
            if Scope::parse(scope).is_none() {
                return Err(EngineError::invalid(
                    "scopes",
                    format!("{scope:?} is not one of read, snapshot, restore, schedule, admin, metrics:read"),
                ));
            }
        }
        if containers.len() > 64 {
            return Err(EngineError::invalid("containers", "at most 64"));
        }
        for container in containers {
            names::container_id("containers", container)?;
        }
        let random =
            random_bytes().map_err(|e| EngineError::Internal { reason: format!("reading /dev/urandom: {e}") })?;
        let secret = format!("rpt.{name}.{}", crate::hex::encode(&random));
        let record = TokenRecord {
            name: name.to_owned(),
            scopes: scopes.to_vec(),
            containers: containers.to_vec(),
            secret_hash: blake3::keyed_hash(&self.key, secret.as_bytes()).to_hex().to_string(),
            create_time: chrono::Utc::now(),
        };
        if !self.store.insert_token(&record)? {
            return Err(EngineError::AlreadyExists { what: format!("token {name:?}") });
        }
        Ok((record, secret))
    }

    pub fn list(&self) -> EngineResult<Vec<TokenRecord>> {
        Ok(self.store.tokens()?)
    }

    pub fn revoke(&self, name: &str) -> EngineResult<()> {
        names::container_id("name", name)?;
        if self.store.remove_token(name)? {
            Ok(())
        } else {
            Err(EngineError::not_found(format!("token {name:?}")))
        }
    }

    /// The token a secret belongs to, if it is one.
    pub fn authenticate(&self, secret: &str) -> Option<TokenRecord> {
        let mut parts = secret.splitn(3, '.');
        let (Some("rpt"), Some(name), Some(_)) = (parts.next(), parts.next(), parts.next()) else { return None };
        let record = self.store.token(name).ok()??;
        let presented = blake3::keyed_hash(&self.key, secret.as_bytes());
        let stored = blake3::Hash::from_hex(&record.secret_hash).ok()?;
        // blake3::Hash equality is constant-time.
        (presented == stored).then_some(record)
    }
}

fn random_bytes() -> std::io::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> (tempfile::TempDir, TokenBook) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let book = TokenBook::open(store, &dir.path().join("token.key")).unwrap();
        (dir, book)
    }

    #[test]
    fn metrics_read_grants_the_scrape_and_nothing_else() {
        assert!(Scope::MetricsRead.grants(Scope::MetricsRead));
        assert!(!Scope::MetricsRead.grants(Scope::Read));
        assert!(Scope::Admin.grants(Scope::MetricsRead));
        assert!(!Scope::Read.grants(Scope::MetricsRead));
        assert!(Scope::Snapshot.grants(Scope::Read));
        assert_eq!(Scope::parse("metrics:read"), Some(Scope::MetricsRead));
    }

    #[test]
    fn a_secret_authenticates_only_its_token() {
        let (_dir, book) = book();
        let (record, secret) = book.create("ci", &["snapshot".into()], &["db-1".into()]).unwrap();
        assert!(!record.secret_hash.contains(&secret[7..]), "the secret is stored");
        assert_eq!(book.authenticate(&secret).unwrap().name, "ci");
        let mut wrong = secret.clone();
        wrong.pop();
        wrong.push('x');
        assert!(book.authenticate(&wrong).is_none());
        assert!(book.authenticate("rpt.ci").is_none());
        assert!(book.authenticate("Bearer nonsense").is_none());
        book.revoke("ci").unwrap();
        assert!(book.authenticate(&secret).is_none());
    }

    #[test]
    fn the_key_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let key = dir.path().join("token.key");
        let (_, secret) = TokenBook::open(store.clone(), &key).unwrap().create("ci", &["read".into()], &[]).unwrap();
        assert!(TokenBook::open(store, &key).unwrap().authenticate(&secret).is_some());
    }

    #[test]
    fn bad_scopes_and_names_are_named() {
        let (_dir, book) = book();
        assert!(matches!(
            book.create("ci", &["root".into()], &[]),
            Err(EngineError::InvalidArgument { field: "scopes", .. })
        ));
        assert!(matches!(
            book.create("C I", &["read".into()], &[]),
            Err(EngineError::InvalidArgument { field: "name", .. })
        ));
        book.create("ci", &["read".into()], &[]).unwrap();
        assert!(matches!(book.create("ci", &["read".into()], &[]), Err(EngineError::AlreadyExists { .. })));
    }

    #[test]
    fn scopes_grant_read_and_admin_grants_all() {
        assert!(Scope::Snapshot.grants(Scope::Read));
        assert!(!Scope::Snapshot.grants(Scope::Restore));
        assert!(Scope::Admin.grants(Scope::Restore));
        assert!(!Scope::Read.grants(Scope::Snapshot));
    }
}
