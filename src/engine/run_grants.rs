//! What a fired command gets from the daemon: its environment (`SNAP_URL`,
//! `ROLLPOINT_*`, the entry's own variables) and, for an entry bound to a
//! container, a credential that lets exactly that run take snapshots of
//! that container through `$SNAP_URL`.
//!
//! A credential lives only in memory, from just before the command starts
//! until it ends or is killed ([`RunGrantGuard`] revokes it on drop). The
//! book keeps the blake3 hash of each secret, not the secret, and looks a
//! presented secret up by its hash, so the comparison leaks no timing about
//! the secrets it holds.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;

use super::error::{EngineError, EngineResult};
use crate::store::EntryRecord;

/// The user name a run credential is presented with (the URL's userinfo is
/// `run:SECRET`); any name is accepted, the secret decides.
pub const RUN_USER: &str = "run";
/// Most variables an entry may set.
pub const MAX_VARIABLES: usize = 64;
/// Longest variable name and value, in bytes.
pub const MAX_NAME: usize = 128;
pub const MAX_VALUE: usize = 4096;

/// Who a run credential speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunGrant {
    /// `users/{user}/entries/{id}` of the entry that fired.
    pub entry: String,
    /// The entry's user: the actor of what the run does.
    pub user: String,
    /// The only container the credential may take snapshots of.
    pub container: String,
    pub run_id: String,
}

/// The credentials of the runs in progress.
#[derive(Default)]
pub struct RunGrants {
    live: Mutex<HashMap<[u8; 32], RunGrant>>,
}

impl RunGrants {
    /// A fresh credential for `grant`, valid until the guard is dropped.
    pub fn mint(&self, grant: RunGrant) -> RunGrantGuard<'_> {
        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret).expect("the kernel's random source failed");
        let secret = crate::hex::encode(&secret);
        let key = *blake3::hash(secret.as_bytes()).as_bytes();
        self.live.lock().insert(key, grant);
        RunGrantGuard { grants: self, key, secret }
    }

    /// The grant a presented secret stands for, while its run lasts.
    pub fn find(&self, secret: &str) -> Option<RunGrant> {
        self.live.lock().get(blake3::hash(secret.as_bytes()).as_bytes()).cloned()
    }

    /// Runs in progress holding a credential.
    pub fn live(&self) -> usize {
        self.live.lock().len()
    }
}

/// A minted credential; revoked when dropped.
pub struct RunGrantGuard<'a> {
    grants: &'a RunGrants,
    key: [u8; 32],
    secret: String,
}

impl RunGrantGuard<'_> {
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl Drop for RunGrantGuard<'_> {
    fn drop(&mut self) {
        self.grants.live.lock().remove(&self.key);
    }
}

/// The id of one firing of an entry: the same for the same entry and due
/// time (so a retry of that firing keeps it), different for every other.
pub fn run_id(entry: &str, due: DateTime<Utc>) -> String {
    let seed = format!("{entry}\n{}", due.to_rfc3339_opts(SecondsFormat::Nanos, true));
    crate::hex::encode(&blake3::hash(seed.as_bytes()).as_bytes()[..8])
}

/// Names rollpoint sets itself; an entry may not set them.
fn reserved(name: &str) -> bool {
    name == "SNAP_URL" || name.starts_with("ROLLPOINT_")
}

/// Checks an entry's variables; the error names the variable.
pub fn check_environment(environment: &BTreeMap<String, String>) -> EngineResult<()> {
    if environment.len() > MAX_VARIABLES {
        return Err(EngineError::invalid("entry.environment", format!("at most {MAX_VARIABLES} variables")));
    }
    for (name, value) in environment {
        let well_formed = !name.is_empty()
            && name.len() <= MAX_NAME
            && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return Err(EngineError::invalid(
                "entry.environment",
                format!("{:?}: a name is 1-{MAX_NAME} of A-Z a-z 0-9 _, not starting with a digit", name),
            ));
        }
        if reserved(name) {
            return Err(EngineError::invalid(
                "entry.environment",
                format!("{name}: SNAP_URL and ROLLPOINT_* are set by rollpointd for each run"),
            ));
        }
        if value.len() > MAX_VALUE || value.contains('\0') {
            return Err(EngineError::invalid(
                "entry.environment",
                format!("{name}: a value is at most {MAX_VALUE} bytes, no NUL"),
            ));
        }
    }
    Ok(())
}

/// What one run of a command entry is told.
pub struct RunContext<'a> {
    pub entry: &'a EntryRecord,
    pub due: DateTime<Utc>,
    /// The container's snapshots URL with the run's credential in it, when
    /// the entry is bound to a container and run URLs are served.
    pub snap_url: Option<String>,
}

impl RunContext<'_> {
    /// The variables of the run, on top of the clean environment of the
    /// runner (HOME, USER, LOGNAME, SHELL, PATH): the entry's own first,
    /// then rollpoint's (which they cannot override: `check_environment`).
    pub fn environment(&self) -> Vec<(String, String)> {
        let name = self.entry.resource_name();
        let mut variables: Vec<(String, String)> =
            self.entry.environment.iter().map(|(name, value)| (name.clone(), value.clone())).collect();
        variables.push(("ROLLPOINT_RUN_ID".into(), run_id(&name, self.due)));
        variables.push(("ROLLPOINT_FIRE_TIME".into(), self.due.to_rfc3339_opts(SecondsFormat::Secs, true)));
        if !self.entry.container.is_empty() {
            variables.push(("ROLLPOINT_CONTAINER".into(), self.entry.container.clone()));
        }
        if let Some(url) = &self.snap_url {
            variables.push(("SNAP_URL".into(), url.clone()));
        }
        variables.push(("ROLLPOINT_ENTRY".into(), name));
        variables
    }
}

/// `http://run:SECRET@127.0.0.1:PORT/api/v1/containers/{id}/snapshots`.
pub fn snap_url(base: &str, secret: &str, container: &str) -> String {
    let authority = base.strip_prefix("http://").unwrap_or(base);
    format!("http://{RUN_USER}:{secret}@{authority}/api/v1/containers/{container}/snapshots")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
    }

    #[test]
    fn a_credential_lives_as_long_as_its_guard() {
        let grants = RunGrants::default();
        let grant = RunGrant {
            entry: "users/root/entries/e".into(),
            user: "root".into(),
            container: "db-1".into(),
            run_id: "1".into(),
        };
        let secret = {
            let guard = grants.mint(grant.clone());
            assert_eq!(grants.find(guard.secret()), Some(grant.clone()));
            assert_eq!(grants.find("not-it"), None);
            assert_eq!(guard.secret().len(), 48);
            guard.secret().to_owned()
        };
        assert_eq!(grants.find(&secret), None);
        assert_eq!(grants.live(), 0);
        // Two runs get two credentials.
        let (a, b) = (grants.mint(grant.clone()), grants.mint(grant));
        assert_ne!(a.secret(), b.secret());
    }

    #[test]
    fn run_ids_differ_by_firing_only() {
        let due = DateTime::parse_from_rfc3339("2026-05-04T02:55:00Z").unwrap().with_timezone(&Utc);
        let id = run_id("users/root/entries/e", due);
        assert_eq!(id, run_id("users/root/entries/e", due));
        assert_ne!(id, run_id("users/root/entries/f", due));
        assert_ne!(id, run_id("users/root/entries/e", due + chrono::TimeDelta::minutes(1)));
        assert_eq!(id.len(), 16);
    }

    #[test]
    fn variables_are_checked_by_name() {
        assert!(check_environment(&environment(&[("PGHOST", "/run/postgresql"), ("_X1", "")])).is_ok());
        for (name, value, field) in [
            ("1X", "v", "entry.environment: \"1X\""),
            ("A-B", "v", "entry.environment: \"A-B\""),
            ("SNAP_URL", "v", "entry.environment: SNAP_URL"),
            ("ROLLPOINT_RUN_ID", "v", "entry.environment: ROLLPOINT_RUN_ID"),
            ("BIG", &"x".repeat(MAX_VALUE + 1), "entry.environment: BIG"),
            ("NUL", "a\0b", "entry.environment: NUL"),
        ] {
            let error = check_environment(&environment(&[(name, value)])).unwrap_err();
            assert!(error.to_string().contains(field), "{name}: {error}");
        }
        let many: BTreeMap<String, String> = (0..=MAX_VARIABLES).map(|i| (format!("V{i}"), String::new())).collect();
        assert!(check_environment(&many).is_err());
    }

    #[test]
    fn the_url_carries_the_credential_as_userinfo() {
        assert_eq!(
            snap_url("http://127.0.0.1:4711", "s3cr3t", "db-1"),
            "http://run:s3cr3t@127.0.0.1:4711/api/v1/containers/db-1/snapshots"
        );
    }
}
