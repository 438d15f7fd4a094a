//! `remote verify`: reads every pack back and checks every seal and id,
//! then every manifest and the chunks its tree names, so a flipped byte
//! anywhere is reported with the snapshots it touches.

use std::collections::{HashMap, HashSet};

use super::crypto::Id;
use super::error::RemoteResult;
use super::manifest::decode_stream;
use super::pack::pack_key;
use super::read::read_manifest;
use super::repository::Repository;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub packs: u64,
    pub blobs: u64,
    pub bytes: u64,
    pub snapshots: u64,
    /// Each damaged or missing object, one line each.
    pub problems: Vec<String>,
    /// `container/snapshot (manifest id)` of each export that cannot be
    /// restored whole.
    pub damaged_snapshots: Vec<String>,
    /// Packs without an index (left by an interrupted export; prune removes
    /// them): not damage.
    pub unindexed_packs: u64,
}

impl VerifyReport {
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} packs, {} blobs, {} snapshots checked: {}",
            self.packs,
            self.blobs,
            self.snapshots,
            if self.problems.is_empty() {
                "no problems".to_owned()
            } else {
                format!("{} problems", self.problems.len())
            }
        );
        if !self.damaged_snapshots.is_empty() {
            text.push_str(&format!("; damaged snapshots: {}", self.damaged_snapshots.join(", ")));
        }
        text
    }
}

pub fn verify(repository: &Repository) -> RemoteResult<VerifyReport> {
    let mut report = VerifyReport::default();
    let packs: HashMap<String, u64> = repository
        .objects()
        .list("data")?
        .into_iter()
        .filter_map(|l| Some((l.key.rsplit('/').next()?.to_owned(), l.size)))
        .collect();
    let mut indexed = HashSet::new();
    // Blobs that opened and checked, and where tree blobs are.
    let mut good: HashMap<Id, Vec<u8>> = HashMap::new();
    let mut good_data: HashSet<Id> = HashSet::new();
    for listed in repository.objects().list("index")? {
        let Some(name) = listed.key.strip_prefix("index/") else { continue };
        let Some(pack) = Id::from_hex(name) else { continue };
        if !packs.contains_key(name) {
            continue; // collected pack: its index is ignored by every reader
        }
        indexed.insert(name.to_owned());
        let index = match repository.read_pack_index(&pack) {
            Ok(index) => index,
            Err(error) => {
                report.problems.push(error.to_string());
                continue;
            }
        };
        report.packs += 1;
        let bytes = match repository.objects().get(&pack_key(&pack)) {
            Ok(bytes) => bytes,
            Err(error) => {
                report.problems.push(error.to_string());
                continue;
            }
        };
        report.bytes += bytes.len() as u64;
        if repository.key().object_id(&bytes) != pack {
            report.problems.push(format!("{}: its bytes do not hash to its name", pack_key(&pack)));
        }
        for entry in &index.blobs {
            report.blobs += 1;
            match repository.open_blob_in(&pack, &bytes, entry) {
                Ok(plain) => {
                    if entry.kind == super::pack::BlobKind::Tree {
                        good.insert(entry.id, plain);
                    } else {
                        good_data.insert(entry.id);
                    }
                }
                Err(error) => report.problems.push(error.to_string()),
            }
        }
    }
    report.unindexed_packs = packs.keys().filter(|name| !indexed.contains(*name)).count() as u64;

    for listed in repository.objects().list("snapshots")? {
        let Some(id) = listed.key.strip_prefix("snapshots/").and_then(Id::from_hex) else { continue };
        report.snapshots += 1;
        let manifest = match read_manifest(repository, &id) {
            Ok(manifest) => manifest,
            Err(error) => {
                report.problems.push(error.to_string());
                report.damaged_snapshots.push(format!("? (manifest {})", id.short()));
                continue;
            }
        };
        let name = format!("{}/{} (manifest {})", manifest.container, manifest.snapshot, id.short());
        let mut stream = Vec::new();
        let mut whole = true;
        for chunk in &manifest.tree {
            match good.get(&chunk.id) {
                Some(plain) => stream.extend_from_slice(plain),
                None => whole = false,
            }
        }
        let mut damaged = !whole;
        if whole {
            match decode_stream(&stream) {
                Ok(records) => {
                    let missing = records
                        .iter()
                        .flat_map(|r| r.extents.iter().flat_map(|e| e.chunks.iter()))
                        .filter(|c| !good_data.contains(&c.id))
                        .count();
                    if missing > 0 {
                        report.problems.push(format!("{name}: {missing} chunks of its files are damaged or missing"));
                        damaged = true;
                    }
                }
                Err(message) => {
                    report.problems.push(format!("the tree of {name}: {message}"));
                    damaged = true;
                }
            }
        } else {
            report.problems.push(format!("the tree of {name}: some of its blobs are damaged or missing"));
        }
        if damaged {
            report.damaged_snapshots.push(name);
        }
    }
    Ok(report)
}
