//! Packs: sealed blobs gathered into objects of tens of MiB, so a tree of
//! 200,000 small files is a few dozen PUTs, not 200,000. A pack is the
//! blobs one after another and nothing else; its index (`index/<pack id>`,
//! sealed) says where each blob is. A pack is written before its index, and
//! an index before any manifest that needs it, so a repository read through
//! its indexes never points at a missing pack.

use serde::{Deserialize, Serialize};

use super::crypto::{Id, MasterKey};

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobKind {
    /// A chunk of a file's data.
    Data,
    /// A chunk of a manifest's tree stream.
    Tree,
}

/// One blob in a pack, as the pack's index records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub id: Id,
    pub kind: BlobKind,
    pub offset: u32,
    /// Sealed length in the pack.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

/// The index object of one pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackIndex {
    pub version: u32,
    pub pack: Id,
    pub blobs: Vec<IndexEntry>,
}

pub const INDEX_VERSION: u32 = 1;

/// Where a pack lives: `data/<first two hex digits>/<id>` keeps listings of
/// one prefix short on stores that list slowly.
pub fn pack_key(pack: &Id) -> String {
    let hex = pack.to_hex();
    format!("data/{}/{hex}", &hex[..2])
}

pub fn index_key(pack: &Id) -> String {
    format!("index/{}", pack.to_hex())
}

/// A pack being filled.
#[derive(Debug, Default)]
pub struct PackWriter {
    bytes: Vec<u8>,
    blobs: Vec<IndexEntry>,
}

/// A finished pack, ready to upload.
#[derive(Debug)]
pub struct FinishedPack {
    pub id: Id,
    pub bytes: Vec<u8>,
    pub index: PackIndex,
}

impl PackWriter {
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.iter().any(|b| b.id == *id)
    }

    /// Appends a sealed blob.
    /// An empty pack with room for `capacity` bytes, so that filling it
    /// never doubles its buffer.
    pub fn with_capacity(capacity: usize) -> PackWriter {
        PackWriter { bytes: Vec::with_capacity(capacity), blobs: Vec::new() }
    }

    pub fn add(&mut self, id: Id, kind: BlobKind, sealed: &[u8], raw_length: usize) {
        let entry = IndexEntry {
            id,
            kind,
            offset: u32::try_from(self.bytes.len()).expect("a pack stays far below 4 GiB"),
            length: u32::try_from(sealed.len()).expect("a blob stays far below 4 GiB"),
            raw_length: u32::try_from(raw_length).expect("a blob stays far below 4 GiB"),
        };
        self.bytes.extend_from_slice(sealed);
        self.blobs.push(entry);
    }

    /// Names the pack by the keyed hash of its bytes and hands it over.
    pub fn finish(self, key: &MasterKey) -> FinishedPack {
        let id = key.object_id(&self.bytes);
        FinishedPack { id, bytes: self.bytes, index: PackIndex { version: INDEX_VERSION, pack: id, blobs: self.blobs } }
    }
}

impl PackIndex {
    /// The sealed index object.
    pub fn seal(&self, key: &MasterKey) -> Vec<u8> {
        let plain = postcard::to_stdvec(self).expect("an index always encodes");
        key.seal(&plain, index_key(&self.pack).as_bytes())
    }

    /// Opens an index object read from `index/<pack>`.
    pub fn open(sealed: &[u8], pack: &Id, key: &MasterKey) -> Result<PackIndex, String> {
        let plain = key.open(sealed, index_key(pack).as_bytes(), 256 * 1024 * 1024)?;
        let index: PackIndex = postcard::from_bytes(&plain).map_err(|e| format!("does not decode: {e}"))?;
        if index.version != INDEX_VERSION {
            return Err(format!("index version {} (this rollpoint reads {INDEX_VERSION})", index.version));
        }
        if index.pack != *pack {
            return Err(format!("describes pack {}, not this one", index.pack.short()));
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_and_its_index_round_trip() {
        let key = MasterKey::generate();
        let mut writer = PackWriter::default();
        let mut plains = Vec::new();
        for i in 0..3u8 {
            let plain = vec![i; 1000 + usize::from(i)];
            let id = key.blob_id(&plain);
            writer.add(id, BlobKind::Data, &key.seal(&plain, &id.0), plain.len());
            plains.push((id, plain));
        }
        let pack = writer.finish(&key);
        assert_eq!(pack.id, key.object_id(&pack.bytes));
        let sealed_index = pack.index.seal(&key);
        let index = PackIndex::open(&sealed_index, &pack.id, &key).unwrap();
        for (entry, (id, plain)) in index.blobs.iter().zip(&plains) {
            let sealed = &pack.bytes[entry.offset as usize..(entry.offset + entry.length) as usize];
            assert_eq!(key.open_blob(sealed, id, entry.raw_length as usize).unwrap(), *plain);
        }
        let other = key.object_id(b"x");
        assert!(PackIndex::open(&sealed_index, &other, &key).is_err(), "an index is bound to its pack");
    }
}
