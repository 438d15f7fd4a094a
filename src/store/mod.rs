//! Store layer: sled trees for containers, snapshots and intents.
//!
//! Two index trees sit beside `snapshots` so that a listing page and a look-up
//! by alias do not read every record of a container: `snapshots_by_time`
//! (`<container>\0<sort key>` -> name, the order of ListSnapshots) and
//! `snapshot_aliases` (`<container>\0<alias>` -> name). Every write of a
//! snapshot record updates them in the same sled transaction, so a crash
//! leaves the three trees in step; [`Store::open`] checks them against the
//! records and rebuilds them when they are not (a database written before
//! they existed, or by an older daemon since).
//!
//! sled 0.34 flushes with `sync_file_range`, which does not make data durable
//! on btrfs or across a power loss (sled issues #1351, #1452). Every write
//! that backs a reply is followed by [`Store::make_durable`], which flushes
//! sled and then `fsync`s each of its files and folders.

mod durable;
mod error;
pub mod export;
pub mod records;
pub mod sidecar;

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree, UnabortableTransactionError,
};

pub use error::StoreError;
pub use records::*;

/// Key of an intent in the intents tree.
pub type IntentId = u64;

pub struct Store {
    db: sled::Db,
    dir: PathBuf,
    containers: sled::Tree,
    snapshots: sled::Tree,
    /// `<container>\0<sort key>` -> snapshot name (see the module doc).
    snapshots_by_time: sled::Tree,
    /// `<container>\0<alias>` -> snapshot name.
    snapshot_aliases: sled::Tree,
    intents: sled::Tree,
    requests: sled::Tree,
    tokens: sled::Tree,
    events: sled::Tree,
    entries: sled::Tree,
    /// `generation` -> the count of changes mirrored in sidecars (u64 BE).
    meta: sled::Tree,
    /// Snapshot records written or removed since the store was opened, for
    /// readers that keep a summary of them (the metrics) to know when it is
    /// stale.
    snapshot_changes: std::sync::atomic::AtomicU64,
    /// How many events there are, once counted (see
    /// [`Store::prune_events_beyond`]); appends take it too, so the count
    /// and the tree move together.
    event_count: parking_lot::Mutex<Option<u64>>,
}

const GENERATION_KEY: &[u8] = b"generation";

/// sled's page cache by default (the daemon's `store_cache_mib`). sled's own
/// default, 1 GiB, lets a daemon with thousands of snapshots grow by
/// hundreds of MiB, and above a cgroup's memory limit sled logs an error at
/// every start; the store's hot set (the containers, one container's index
/// pages, the intents) is far smaller. sled holds more than this in memory
/// (its page table, nodes being rewritten): 8 MiB keeps the whole daemon
/// within 64 MiB under the soak of 50 clients.
pub const DEFAULT_CACHE_BYTES: u64 = 8 * 1024 * 1024;

impl Store {
    /// Opens (creating when missing) the store in `dir`, and rebuilds the
    /// snapshot indexes if they are out of step with the records.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with a page cache of at most `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { op: "create", path: dir.to_owned(), source })?;
        let db = sled::Config::new().path(dir.join("db")).cache_capacity(cache_bytes).open()?;
        let store = Store {
            containers: db.open_tree("containers")?,
            snapshots: db.open_tree("snapshots")?,
            snapshots_by_time: db.open_tree("snapshots_by_time")?,
            snapshot_aliases: db.open_tree("snapshot_aliases")?,
            intents: db.open_tree("intents")?,
            requests: db.open_tree("requests")?,
            tokens: db.open_tree("tokens")?,
            events: db.open_tree("events")?,
            entries: db.open_tree("entries")?,
            meta: db.open_tree("meta")?,
            dir: dir.join("db"),
            db,
            snapshot_changes: std::sync::atomic::AtomicU64::new(0),
            event_count: parking_lot::Mutex::new(None),
        };
        store.check_snapshot_indexes()?;
        Ok(store)
    }

    /// Bytes the store's files take on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Flushes every write so far and makes it durable (see the module doc).
    pub fn make_durable(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        durable::fsync_tree(&self.dir)
    }

    /// Where the store's files are (`<state dir>/db`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    // ---------------------------------------------------------- generation

    /// How many changes the store has mirrored in sidecars (see
    /// `sidecar`): a sidecar with a higher count was written by a newer
    /// store than this one.
    pub fn generation(&self) -> Result<u64, StoreError> {
        Ok(self.meta.get(GENERATION_KEY)?.map_or(0, |value| decode_generation(&value)))
    }

    /// Counts one more change and returns its generation. Durable with the
    /// next [`Store::make_durable`], which must come before the sidecar
    /// carrying it is written.
    pub fn next_generation(&self) -> Result<u64, StoreError> {
        self.raise_generation_by(|current| current + 1)
    }

    /// Raises the generation to at least `floor` (a store rebuilt from
    /// sidecars carries their generation on).
    pub fn raise_generation(&self, floor: u64) -> Result<u64, StoreError> {
        self.raise_generation_by(|current| current.max(floor))
    }

    fn raise_generation_by(&self, next: impl Fn(u64) -> u64) -> Result<u64, StoreError> {
        let value = self.meta.update_and_fetch(GENERATION_KEY, |old| {
            Some(next(old.map_or(0, decode_generation)).to_be_bytes().to_vec())
        })?;
        Ok(value.map_or(0, |value| decode_generation(&value)))
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

    /// The snapshot of `container` that holds `alias`, through the alias
    /// index.
    pub fn snapshot_by_alias(&self, container: &str, alias: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        // Reads are not isolated from a write that moves the alias between
        // the two look-ups; the record says whether it still holds it.
        for _ in 0..3 {
            let Some(name) = self.snapshot_aliases.get(index_key(container, alias))? else { return Ok(None) };
            match get::<SnapshotRecord>(&self.snapshots, &snapshot_key_bytes(container, &name))? {
                Some(record) if record.alias.as_deref() == Some(alias) => return Ok(Some(record)),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// Whether `container` has a snapshot called `name` (aliases aside).
    pub fn has_snapshot(&self, container: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self.snapshots.contains_key(snapshot_key(container, name))?)
    }

    /// Whether `name` is the name or the alias of a snapshot of `container`.
    pub fn snapshot_name_in_use(&self, container: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self.has_snapshot(container, name)? || self.snapshot_aliases.contains_key(index_key(container, name))?)
    }

    /// Every name and alias of `container`'s snapshots that begins with
    /// `prefix` (`snap-2026-05-04` for the default names of that day), read
    /// from keys alone.
    pub fn snapshot_names_starting_with(&self, container: &str, prefix: &str) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        for (tree, container_part) in
            [(&self.snapshots, snapshot_key(container, "")), (&self.snapshot_aliases, index_key(container, ""))]
        {
            let mut key_prefix = container_part.clone();
            key_prefix.extend_from_slice(prefix.as_bytes());
            for key in tree.scan_prefix(&key_prefix).keys() {
                let key = key?;
                // Names are checked ASCII when written.
                found.insert(String::from_utf8_lossy(&key[container_part.len()..]).into_owned());
            }
        }
        Ok(found)
    }

    /// How many snapshots `container` has, counted from keys alone.
    pub fn snapshot_count(&self, container: &str) -> Result<usize, StoreError> {
        let mut count = 0;
        for key in self.snapshots.scan_prefix(snapshot_key(container, "")).keys() {
            key?;
            count += 1;
        }
        Ok(count)
    }

    /// The snapshots of one container, ordered by name.
    pub fn snapshots_of(&self, container: &str) -> Result<Vec<SnapshotRecord>, StoreError> {
        scan(&self.snapshots, &snapshot_key(container, ""))
    }

    /// At most `limit` snapshots of `container` in [`SnapshotRecord::sort_key`]
    /// order (oldest first), starting after the sort key `after` (from the
    /// first when empty): one page of a listing, read through the time
    /// index, so its cost does not grow with the container's snapshots.
    pub fn snapshots_after(
        &self,
        container: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        let start = index_key(container, after);
        let lower = if after.is_empty() { Bound::Included(start) } else { Bound::Excluded(start) };
        let mut page = Vec::with_capacity(limit.min(1024));
        for item in self.snapshots_by_time.range((lower, Bound::Excluded(index_end(container)))) {
            if page.len() == limit {
                break;
            }
            let (key, name) = item?;
            // A record deleted or rewritten between the two reads (listings
            // take no lock) is skipped: it is no longer at this place.
            let Some(record) = get::<SnapshotRecord>(&self.snapshots, &snapshot_key_bytes(container, &name))? else {
                continue;
            };
            if &key[container.len() + 1..] == record.sort_key().as_bytes() {
                page.push(record);
            }
        }
        Ok(page)
    }

    pub fn all_snapshots(&self) -> Result<Vec<SnapshotRecord>, StoreError> {
        scan(&self.snapshots, b"")
    }

    /// Writes several snapshot records atomically (e.g. an alias moving from
    /// one snapshot to another), with their index entries.
    pub fn put_snapshots(&self, records: &[&SnapshotRecord]) -> Result<(), StoreError> {
        let encoded = records.iter().map(|record| encode(*record)).collect::<Result<Vec<Vec<u8>>, StoreError>>()?;
        (&self.snapshots, &self.snapshots_by_time, &self.snapshot_aliases)
            .transaction(|(snapshots, by_time, aliases)| {
                for (record, value) in records.iter().zip(&encoded) {
                    let previous = snapshots.insert(snapshot_key(&record.container, &record.name), value.as_slice())?;
                    if let Some(previous) = previous {
                        let previous: SnapshotRecord =
                            decode(&previous).map_err(ConflictableTransactionError::Abort)?;
                        unindex(by_time, aliases, &previous)?;
                    }
                    by_time.insert(index_key(&record.container, &record.sort_key()), record.name.as_bytes())?;
                    if let Some(alias) = &record.alias {
                        aliases.insert(index_key(&record.container, alias), record.name.as_bytes())?;
                    }
                }
                Ok(())
            })
            .map_err(from_transaction)?;
        self.snapshot_changed();
        Ok(())
    }

    pub fn remove_snapshot(&self, container: &str, name: &str) -> Result<(), StoreError> {
        (&self.snapshots, &self.snapshots_by_time, &self.snapshot_aliases)
            .transaction(|(snapshots, by_time, aliases)| {
                if let Some(previous) = snapshots.remove(snapshot_key(container, name))? {
                    let previous: SnapshotRecord = decode(&previous).map_err(ConflictableTransactionError::Abort)?;
                    unindex(by_time, aliases, &previous)?;
                }
                Ok(())
            })
            .map_err(from_transaction)?;
        self.snapshot_changed();
        Ok(())
    }

    fn snapshot_changed(&self) {
        self.snapshot_changes.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// How many snapshot records were written or removed since the store
    /// was opened: read it before reading the records, and a summary made
    /// from them is current while the count stays the same.
    pub fn snapshot_changes(&self) -> u64 {
        self.snapshot_changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Compares the snapshot indexes with what the records say and rebuilds
    /// them when they differ; true if it did. One pass over the records, at
    /// open only.
    fn check_snapshot_indexes(&self) -> Result<bool, StoreError> {
        let mut by_time = BTreeMap::new();
        let mut aliases = BTreeMap::new();
        for item in self.snapshots.iter() {
            let record: SnapshotRecord = decode(&item?.1)?;
            by_time.insert(index_key(&record.container, &record.sort_key()), record.name.clone().into_bytes());
            if let Some(alias) = &record.alias {
                // Two records claiming one alias should not exist; if they
                // do, the first by name keeps it, as a scan would find.
                aliases.entry(index_key(&record.container, alias)).or_insert_with(|| record.name.clone().into_bytes());
            }
        }
        if tree_holds(&self.snapshots_by_time, &by_time)? && tree_holds(&self.snapshot_aliases, &aliases)? {
            return Ok(false);
        }
        tracing::warn!(
            records = by_time.len(),
            "the snapshot indexes are out of step with the records (written by an older rollpointd?); rebuilding them"
        );
        // Not atomic, and need not be: an interrupted rebuild is found out of
        // step at the next open and done again.
        for (tree, entries) in [(&self.snapshots_by_time, by_time), (&self.snapshot_aliases, aliases)] {
            tree.clear()?;
            let mut batch = sled::Batch::default();
            for (key, value) in entries {
                batch.insert(key, value);
            }
            tree.apply_batch(batch)?;
        }
        Ok(true)
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
        let mut count = self.event_count.lock();
        put(&self.events, &event.sequence.to_be_bytes(), event)?;
        if let Some(count) = count.as_mut() {
            *count += 1;
        }
        Ok(())
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

    /// Removes all but the newest `keep` events, oldest first; how many went.
    /// (Sequence numbers jump by a large step after a crash, so the count
    /// is kept, not derived from them: counted once, on first use, then
    /// followed by every append and removal.)
    pub fn prune_events_beyond(&self, keep: u64) -> Result<usize, StoreError> {
        let excess = {
            let mut count = self.event_count.lock();
            let known = match *count {
                Some(known) => known,
                None => *count.insert(self.events.len() as u64),
            };
            usize::try_from(known.saturating_sub(keep)).unwrap_or(usize::MAX)
        };
        // Appends go on meanwhile (they are newer than what goes).
        let mut removed = 0;
        for key in self.events.iter().keys().take(excess) {
            self.events.remove(key?)?;
            removed += 1;
        }
        if let Some(count) = self.event_count.lock().as_mut() {
            *count = count.saturating_sub(removed as u64);
        }
        Ok(removed)
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
        if let Some(count) = self.event_count.lock().as_mut() {
            *count = count.saturating_sub(removed as u64);
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

/// [`snapshot_key`] for a name read from an index.
fn snapshot_key_bytes(container: &str, name: &[u8]) -> Vec<u8> {
    let mut key = snapshot_key(container, "");
    key.extend_from_slice(name);
    key
}

/// Key of an index entry: `<container>\0<rest>`. Container ids never hold
/// NUL, so `<container>\0` selects exactly one container's entries.
fn index_key(container: &str, rest: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(container.len() + 1 + rest.len());
    key.extend_from_slice(container.as_bytes());
    key.push(0);
    key.extend_from_slice(rest.as_bytes());
    key
}

/// The first key after every index entry of `container`.
fn index_end(container: &str) -> Vec<u8> {
    let mut key = container.as_bytes().to_vec();
    key.push(1);
    key
}

/// Removes the index entries of a record being replaced or removed, inside
/// the write's transaction. An alias entry is left alone when it already
/// names another snapshot (the alias moved to it in the same write).
fn unindex(
    by_time: &TransactionalTree,
    aliases: &TransactionalTree,
    previous: &SnapshotRecord,
) -> Result<(), UnabortableTransactionError> {
    by_time.remove(index_key(&previous.container, &previous.sort_key()))?;
    if let Some(alias) = &previous.alias {
        let key = index_key(&previous.container, alias);
        if aliases.get(&key)?.is_some_and(|holder| holder == previous.name.as_bytes()) {
            aliases.remove(key)?;
        }
    }
    Ok(())
}

fn from_transaction(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => StoreError::Sled(error),
    }
}

/// Whether `tree` holds exactly `entries`.
fn tree_holds(tree: &sled::Tree, entries: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<bool, StoreError> {
    if tree.len() != entries.len() {
        return Ok(false);
    }
    for (item, (key, value)) in tree.iter().zip(entries) {
        let (tree_key, tree_value) = item?;
        if tree_key != key.as_slice() || tree_value != value.as_slice() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::Encode)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(StoreError::Decode)
}

fn decode_generation(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_be_bytes)
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
