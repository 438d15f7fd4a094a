//! Store layer: sled trees for containers, snapshots and intents.
//!
//! sled 0.34 flushes with `sync_file_range`, which does not make data durable
//! on btrfs or across a power loss (sled issues #1351, #1452). Every write
//! that backs a reply is followed by [`Store::make_durable`], which flushes
//! sled and then `fsync`s each of its files and folders.

mod durable;
mod error;
pub mod records;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use error::StoreError;
pub use records::*;

/// Key of an intent in the intents tree.
pub type IntentId = u64;

pub struct Store {
    db: sled::Db,
    dir: PathBuf,
    containers: sled::Tree,
    snapshots: sled::Tree,
    intents: sled::Tree,
    requests: sled::Tree,
    tokens: sled::Tree,
    events: sled::Tree,
    entries: sled::Tree,
}

impl Store {
    /// Opens (creating when missing) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { op: "create", path: dir.to_owned(), source })?;
        let db = sled::Config::new().path(dir.join("db")).open()?;
        Ok(Store {
            containers: db.open_tree("containers")?,
            snapshots: db.open_tree("snapshots")?,
            intents: db.open_tree("intents")?,
            requests: db.open_tree("requests")?,
            tokens: db.open_tree("tokens")?,
            events: db.open_tree("events")?,
            entries: db.open_tree("entries")?,
            dir: dir.join("db"),
            db,
        })
    }

    /// Flushes every write so far and makes it durable (see the module doc).
    pub fn make_durable(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        durable::fsync_tree(&self.dir)
    }

    // ---------------------------------------------------------- containers

    pub fn container(&self, id: &str) -> Result<Option<ContainerRecord>, StoreError> {
        get(&self.containers, id.as_bytes())
    }

    /// Inserts a container unless one with that id exists; false if it did.
    pub fn insert_container(&self, record: &ContainerRecord) -> Result<bool, StoreError> {
        let value = encode(record)?;
        Ok(self.containers.compare_and_swap(record.id.as_bytes(), None as Option<&[u8]>, Some(value))?.is_ok())
    }

    pub fn put_container(&self, record: &ContainerRecord) -> Result<(), StoreError> {
        put(&self.containers, record.id.as_bytes(), record)
    }

    pub fn remove_container(&self, id: &str) -> Result<(), StoreError> {
        self.containers.remove(id.as_bytes())?;
        Ok(())
    }

    /// Every container, ordered by id.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        scan(&self.containers, b"")
    }

    // ----------------------------------------------------------- snapshots

    pub fn snapshot(&self, container: &str, name: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        get(&self.snapshots, &snapshot_key(container, name))
    }

    /// The snapshots of one container, in no particular order.
    pub fn snapshots_of(&self, container: &str) -> Result<Vec<SnapshotRecord>, StoreError> {
        scan(&self.snapshots, &snapshot_key(container, ""))
    }

    pub fn all_snapshots(&self) -> Result<Vec<SnapshotRecord>, StoreError> {
        scan(&self.snapshots, b"")
    }

    /// Writes several snapshot records atomically (e.g. an alias moving from
    /// one snapshot to another).
    pub fn put_snapshots(&self, records: &[&SnapshotRecord]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for record in records {
            batch.insert(snapshot_key(&record.container, &record.name), encode(*record)?);
        }
        self.snapshots.apply_batch(batch)?;
        Ok(())
    }

    pub fn remove_snapshot(&self, container: &str, name: &str) -> Result<(), StoreError> {
        self.snapshots.remove(snapshot_key(container, name))?;
        Ok(())
    }

    // ------------------------------------------------------------- intents

    /// Records an intent; it is durable when this returns.
    pub fn begin_intent(&self, intent: &Intent) -> Result<IntentId, StoreError> {
        let id = self.db.generate_id()?;
        put(&self.intents, &id.to_be_bytes(), intent)?;
        self.make_durable()?;
        Ok(id)
    }

    /// Replaces an intent (a restore moving on a step); durable on return.
    pub fn advance_intent(&self, id: IntentId, intent: &Intent) -> Result<(), StoreError> {
        put(&self.intents, &id.to_be_bytes(), intent)?;
        self.make_durable()
    }

    /// Drops an intent. Not durable by itself: the caller makes the outcome
    /// durable together with it (recovery copes with either order).
    pub fn end_intent(&self, id: IntentId) -> Result<(), StoreError> {
        self.intents.remove(id.to_be_bytes())?;
        Ok(())
    }

    /// Every intent left, oldest first.
    pub fn intents(&self) -> Result<Vec<(IntentId, Intent)>, StoreError> {
        self.intents
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let id = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| StoreError::CorruptKey)?);
                Ok((id, decode(&value)?))
            })
            .collect()
    }

    // -------------------------------------------------- request idempotency

    /// The answer recorded for a client's request id, if any.
    pub fn request_answer<T: DeserializeOwned>(&self, request_id: &str) -> Result<Option<T>, StoreError> {
        get(&self.requests, request_id.as_bytes())
    }

    pub fn record_request_answer<T: Serialize>(&self, request_id: &str, answer: &T) -> Result<(), StoreError> {
        put(&self.requests, request_id.as_bytes(), answer)
    }
}

impl Store {
    // -------------------------------------------------------------- tokens

    pub fn token(&self, name: &str) -> Result<Option<TokenRecord>, StoreError> {
        get(&self.tokens, name.as_bytes())
    }

    /// Inserts a token unless one with that name exists; false if it did.
    /// Durable on return.
    pub fn insert_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        let value = encode(token)?;
        let inserted = self.tokens.compare_and_swap(token.name.as_bytes(), None as Option<&[u8]>, Some(value))?.is_ok();
        self.make_durable()?;
        Ok(inserted)
    }

    /// Every token, ordered by name.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        scan(&self.tokens, b"")
    }

    /// Removes a token; false if there was none. Durable on return.
    pub fn remove_token(&self, name: &str) -> Result<bool, StoreError> {
        let removed = self.tokens.remove(name.as_bytes())?.is_some();
        self.make_durable()?;
        Ok(removed)
    }
}

impl Store {
    // -------------------------------------------------------------- events

    /// Appends an event, giving it the next sequence number (from 1).
    /// Not durable by itself: it is made durable with the operation it
    /// records, or by [`Store::make_durable`].
    pub fn append_event(&self, event: &mut EventRecord) -> Result<(), StoreError> {
        event.sequence = self.db.generate_id()? + 1;
        put(&self.events, &event.sequence.to_be_bytes(), event)
    }

    /// Events after `after` in sequence order, at most `limit`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        self.events.range(start..).take(limit).map(|item| decode(&item?.1)).collect()
    }

    /// Events before `before` (exclusive), newest first, at most `limit`.
    pub fn events_before(&self, before: u64, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let end = before.to_be_bytes();
        self.events.range(..end).rev().take(limit).map(|item| decode(&item?.1)).collect()
    }

    /// Removes events older than `cutoff`; returns how many.
    pub fn prune_events(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut removed = 0;
        for item in self.events.iter() {
            let (key, value) = item?;
            let event: EventRecord = decode(&value)?;
            if event.time >= cutoff {
                break;
            }
            self.events.remove(key)?;
            removed += 1;
        }
        Ok(removed)
    }
}

impl Store {
    // ------------------------------------------------------------- entries

    pub fn entry(&self, user: &str, id: &str) -> Result<Option<EntryRecord>, StoreError> {
        get(&self.entries, &entry_key(user, id))
    }

    /// Inserts an entry unless one with that name exists; false if it did.
    pub fn insert_entry(&self, entry: &EntryRecord) -> Result<bool, StoreError> {
        let value = encode(entry)?;
        Ok(self
            .entries
            .compare_and_swap(entry_key(&entry.user, &entry.id), None as Option<&[u8]>, Some(value))?
            .is_ok())
    }

    pub fn put_entry(&self, entry: &EntryRecord) -> Result<(), StoreError> {
        put(&self.entries, &entry_key(&entry.user, &entry.id), entry)
    }

    pub fn remove_entry(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self.entries.remove(entry_key(user, id))?.is_some())
    }

    /// Every entry of `user` (every entry when empty), ordered by name.
    pub fn entries(&self, user: &str) -> Result<Vec<EntryRecord>, StoreError> {
        let prefix = if user.is_empty() { Vec::new() } else { entry_key(user, "") };
        scan(&self.entries, &prefix)
    }
}

fn entry_key(user: &str, id: &str) -> Vec<u8> {
    // User names never hold '/'.
    format!("{user}/{id}").into_bytes()
}

fn snapshot_key(container: &str, name: &str) -> Vec<u8> {
    // Container ids and snapshot names never hold '/', so the prefix
    // "<container>/" selects exactly one container's snapshots.
    format!("{container}/{name}").into_bytes()
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::Encode)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(StoreError::Decode)
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>, StoreError> {
    tree.get(key)?.map(|value| decode(&value)).transpose()
}

fn put<T: Serialize>(tree: &sled::Tree, key: &[u8], value: &T) -> Result<(), StoreError> {
    tree.insert(key, encode(value)?)?;
    Ok(())
}

fn scan<T: DeserializeOwned>(tree: &sled::Tree, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
    tree.scan_prefix(prefix).map(|item| decode(&item?.1)).collect()
}

#[cfg(test)]
mod tests;
