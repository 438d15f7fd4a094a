//! Manifests: one per exported snapshot, `snapshots/<id>`, sealed. A
//! manifest describes the snapshot and points at its **tree stream**: every
//! entry of the file tree (path, metadata, and for a regular file the chunks
//! of its data extents), encoded one record after another and cut into
//! content-defined tree blobs. An export of an unchanged tree produces the
//! same stream, hence the same blobs: it uploads only its small manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::crypto::Id;
use crate::fstree::Metadata;

pub const MANIFEST_VERSION: u32 = 1;

/// A chunk of file data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: Id,
    pub length: u32,
}

/// The chunks of one data extent (holes between extents stay holes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    pub offset: u64,
    pub chunks: Vec<ChunkRef>,
}

impl Extent {
    pub fn len(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.length)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeRecord {
    /// Relative path, bytes; b"" is the root.
    pub path: Vec<u8>,
    pub meta: Metadata,
    /// A hard link to the file recorded earlier at this path (its data is
    /// there; `extents` is empty here).
    pub hardlink_to: Option<Vec<u8>>,
    pub extents: Vec<Extent>,
}

/// A manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The host that exported it.
    pub host: String,
    pub container: String,
    pub snapshot: String,
    pub alias: String,
    /// RFC 3339.
    pub snapshot_created: String,
    pub exported: String,
    pub backend: String,
    pub source_uuid: String,
    pub source_generation: u64,
    /// The manifest this export was incremental from.
    pub parent: Option<Id>,
    /// The tree stream's blobs, in order, with their plaintext lengths.
    pub tree: Vec<ChunkRef>,
    pub entries: u64,
    pub files: u64,
    /// Sum of the regular files' sizes.
    pub logical_bytes: u64,
    /// What this export added to the repository: sealed bytes of the blobs
    /// that were new (the page's "delta"), and how many.
    pub added_bytes: u64,
    pub added_blobs: u64,
    /// Bytes read from the snapshot to produce it.
    pub read_bytes: u64,
}

impl Manifest {
    pub fn key(id: &Id) -> String {
        format!("snapshots/{}", id.to_hex())
    }
}

/// Appends one record to a tree stream: a little-endian u32 length, then
/// the record in postcard.
pub fn encode_record(record: &TreeRecord, stream: &mut Vec<u8>) {
    let bytes = postcard::to_stdvec(record).expect("a tree record always encodes");
    stream.extend_from_slice(&u32::try_from(bytes.len()).expect("a record is far below 4 GiB").to_le_bytes());
    stream.extend_from_slice(&bytes);
}

/// Decodes a whole tree stream.
pub fn decode_stream(stream: &[u8]) -> Result<Vec<TreeRecord>, String> {
    let mut records = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(4).ok_or("a record's length is cut short")?;
        let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
        let (bytes, tail) = tail.split_at_checked(len).ok_or("a record is cut short")?;
        records.push(postcard::from_bytes(bytes).map_err(|e| format!("a record does not decode: {e}"))?);
        rest = tail;
    }
    Ok(records)
}

/// A tree keyed by path: the order parents come before their children in.
pub type Tree = BTreeMap<Vec<u8>, TreeRecord>;

/// Whether `path` is `dir` or lies under it.
pub fn is_within(path: &[u8], dir: &[u8]) -> bool {
    path.starts_with(dir) && (path.len() == dir.len() || path.get(dir.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within() {
        assert!(is_within(b"a/b", b"a"));
        assert!(is_within(b"a", b"a"));
        assert!(!is_within(b"ab", b"a"));
        assert!(!is_within(b"a-c", b"a"));
    }

    fn sample(path: &[u8]) -> TreeRecord {
        TreeRecord {
            path: path.to_vec(),
            meta: Metadata {
                kind: crate::fstree::Kind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                atime_ns: 1,
                mtime_ns: 2,
                size: 3,
                rdev: 0,
                symlink_target: None,
                xattrs: vec![(b"user.a".to_vec(), b"b".to_vec())],
                ino: 5,
                nlink: 1,
                ctime_ns: 6,
            },
            hardlink_to: None,
            extents: vec![Extent { offset: 0, chunks: vec![ChunkRef { id: Id([7; 32]), length: 3 }] }],
        }
    }

    #[test]
    fn a_stream_round_trips_and_a_cut_one_is_an_error() {
        let mut stream = Vec::new();
        let records = vec![sample(b""), sample(b"x/\xff")];
        for record in &records {
            encode_record(record, &mut stream);
        }
        assert_eq!(decode_stream(&stream).unwrap(), records);
        assert!(decode_stream(&stream[..stream.len() - 1]).is_err());
    }
}
