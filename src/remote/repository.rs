//! A repository on a remote: its config object, its key, its indexes and
//! manifests. See docs/repository-format.md for the layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::chunker::{Chunker, ChunkerParams, DATA_CHUNKS, TREE_CHUNKS};
use super::crypto::{hex, random_bytes, unhex, Id, KeyFileKey, MasterKey};
use super::error::{RemoteError, RemoteResult};
use super::objects::{Created, Objects};
use super::pack::{index_key, pack_key, BlobKind, IndexEntry, PackIndex};

pub const FORMAT: &str = "rollpoint-repository";
pub const FORMAT_VERSION: u32 = 1;
const CONFIG_KEY: &str = "config";

/// The `config` object: plain JSON, readable without the key (it says what
/// the repository is and how to read it), holding the master key sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryConfig {
    pub format: String,
    pub version: u32,
    pub id: String,
    pub created: String,
    /// "fastcdc v2020, normalization 1, fastcdc crate 3.2.1, seeded".
    pub chunker: String,
    pub data_chunks: ChunkerParams,
    pub tree_chunks: ChunkerParams,
    pub compression: String,
    pub seal: String,
    /// The master key sealed under the key file (hex).
    pub master_key: String,
}

/// Where a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Index into [`BlobIndex::packs`].
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    pub kind: BlobKind,
}

/// Every blob the repository's indexes know, in little memory per blob.
#[derive(Debug, Default)]
pub struct BlobIndex {
    pub packs: Vec<Id>,
    pub pack_sizes: Vec<u64>,
    blobs: HashMap<Id, BlobLocation>,
}

impl BlobLocation {
    /// The index entry of blob `id` at this location.
    pub fn entry(&self, id: Id) -> IndexEntry {
        IndexEntry { id, kind: self.kind, offset: self.offset, length: self.length, raw_length: self.raw_length }
    }
}

impl BlobIndex {
    pub fn get(&self, id: &Id) -> Option<&BlobLocation> {
        self.blobs.get(id)
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    pub fn pack_id(&self, location: &BlobLocation) -> Id {
        self.packs[location.pack as usize]
    }

    /// Adds a pack's blobs (a blob already known elsewhere keeps its first
    /// place).
    pub fn add_pack(&mut self, index: &PackIndex, size: u64) {
        let pack = u32::try_from(self.packs.len()).expect("fewer than 4 billion packs");
        self.packs.push(index.pack);
        self.pack_sizes.push(size);
        for entry in &index.blobs {
            self.blobs.entry(entry.id).or_insert(BlobLocation {
                pack,
                offset: entry.offset,
                length: entry.length,
                raw_length: entry.raw_length,
                kind: entry.kind,
            });
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Id, &BlobLocation)> {
        self.blobs.iter()
    }
}

/// What `init` did.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub repository_id: String,
    pub key_file: PathBuf,
    /// False when an existing key file was used.
    pub key_file_created: bool,
}

/// An open repository.
pub struct Repository {
    objects: Objects,
    key: MasterKey,
    config: RepositoryConfig,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({} {})", self.objects.remote(), self.config.id)
    }
}

impl Repository {
    /// Creates a repository at an empty remote. The key file is created
    /// (mode 0600) unless it exists, in which case it is used.
    pub fn init(objects: Objects, key_file: &Path) -> RemoteResult<(Repository, InitReport)> {
        if objects.exists(CONFIG_KEY)? {
            return Err(RemoteError::AlreadyInitialized { remote: objects.remote().to_owned() });
        }
        let (key_file_key, key_file_created) = if key_file.exists() {
            (KeyFileKey::read(key_file)?, false)
        } else {
            (KeyFileKey::create(key_file)?, true)
        };
        let master = MasterKey::generate();
        let id = hex(&random_bytes::<16>());
        let config = RepositoryConfig {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            id: id.clone(),
            created: chrono::Utc::now().to_rfc3339(),
            chunker: "fastcdc v2020 (fastcdc crate 3.2.1), normalization level 1, gear tables seeded by the master key"
                .into(),
            data_chunks: DATA_CHUNKS,
            tree_chunks: TREE_CHUNKS,
            compression: "zstd".into(),
            seal: "xchacha20poly1305".into(),
            master_key: hex(&master.wrap(&key_file_key, &id)),
        };
        let text = serde_json::to_vec_pretty(&config).expect("the config always encodes");
        if objects.put_new(CONFIG_KEY, Bytes::from(text))? == Created::AlreadyThere {
            return Err(RemoteError::AlreadyInitialized { remote: objects.remote().to_owned() });
        }
        let report = InitReport { repository_id: id, key_file: key_file.to_owned(), key_file_created };
        Ok((Repository { objects, key: master, config }, report))
    }

    /// Opens the repository at a remote with the key file.
    pub fn open(objects: Objects, key_file: &Path) -> RemoteResult<Repository> {
        let remote = objects.remote().to_owned();
        let text = match objects.get(CONFIG_KEY) {
            Ok(text) => text,
            Err(RemoteError::NotFound { .. }) => return Err(RemoteError::NotInitialized { remote }),
            Err(error) => return Err(error),
        };
        let config: RepositoryConfig =
            serde_json::from_slice(&text).map_err(|e| RemoteError::corrupt(&remote, CONFIG_KEY, e.to_string()))?;
        if config.format != FORMAT || config.version != FORMAT_VERSION {
            return Err(RemoteError::corrupt(
                &remote,
                CONFIG_KEY,
                format!(
                    "format {} version {}; this rollpoint reads {FORMAT} {FORMAT_VERSION}",
                    config.format, config.version
                ),
            ));
        }
        if !key_file.exists() {
            return Err(RemoteError::Io {
                path: key_file.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no key file for remote {remote}: copy it from the host that ran `rollpoint remote init {remote}`"),
                ),
            });
        }
        let key_file_key = KeyFileKey::read(key_file)?;
        let wrapped = unhex(&config.master_key)
            .ok_or_else(|| RemoteError::corrupt(&remote, CONFIG_KEY, "master_key is not hex"))?;
        let key = MasterKey::unwrap(&wrapped, &key_file_key, &config.id)
            .ok_or_else(|| RemoteError::WrongKey { remote: remote.clone(), path: key_file.to_owned() })?;
        Ok(Repository { objects, key, config })
    }

    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    pub fn remote(&self) -> &str {
        self.objects.remote()
    }

    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    pub fn config(&self) -> &RepositoryConfig {
        &self.config
    }

    pub fn data_chunker(&self) -> Chunker {
        Chunker::new(self.config.data_chunks, self.key.chunker_seed)
    }

    pub fn tree_chunker(&self) -> Chunker {
        Chunker::new(self.config.tree_chunks, self.key.chunker_seed)
    }

    pub(crate) fn corrupt(&self, object: &str, message: impl Into<String>) -> RemoteError {
        RemoteError::corrupt(self.remote(), object, message)
    }

    /// Reads every pack index. An index whose pack is missing is left out
    /// (a pack removed by garbage collection, or never completed), so its
    /// blobs count as unknown and are written again.
    pub fn load_index(&self) -> RemoteResult<BlobIndex> {
        let packs: HashMap<String, u64> = self
            .objects
            .list("data")?
            .into_iter()
            .filter_map(|listed| Some((listed.key.rsplit('/').next()?.to_owned(), listed.size)))
            .collect();
        let mut index = BlobIndex::default();
        for listed in self.objects.list("index")? {
            let Some(name) = listed.key.strip_prefix("index/") else { continue };
            let Some(pack) = Id::from_hex(name) else { continue };
            let Some(&size) = packs.get(name) else { continue };
            let sealed = self.objects.get(&listed.key)?;
            let pack_index = PackIndex::open(&sealed, &pack, &self.key).map_err(|m| self.corrupt(&listed.key, m))?;
            index.add_pack(&pack_index, size);
        }
        Ok(index)
    }

    /// Reads one blob and checks it.
    pub fn read_blob(&self, index: &BlobIndex, id: &Id) -> RemoteResult<Vec<u8>> {
        let location = index
            .get(id)
            .ok_or_else(|| RemoteError::NotFound { remote: self.remote().to_owned(), object: format!("blob {id}") })?;
        let key = pack_key(&index.pack_id(location));
        let start = u64::from(location.offset);
        let sealed = self.objects.get_range(&key, start..start + u64::from(location.length))?;
        self.key
            .open_blob(&sealed, id, location.raw_length as usize)
            .map_err(|m| self.corrupt(&key, format!("blob {} at offset {start}: {m}", id.short())))
    }

    /// Opens a blob cut out of a pack's bytes held in memory.
    pub fn open_blob_in(&self, pack: &Id, pack_bytes: &[u8], entry: &IndexEntry) -> RemoteResult<Vec<u8>> {
        let start = entry.offset as usize;
        let end = start + entry.length as usize;
        let sealed = pack_bytes.get(start..end).ok_or_else(|| {
            self.corrupt(&pack_key(pack), format!("blob {} lies past the pack's end", entry.id.short()))
        })?;
        self.key
            .open_blob(sealed, &entry.id, entry.raw_length as usize)
            .map_err(|m| self.corrupt(&pack_key(pack), format!("blob {} at offset {start}: {m}", entry.id.short())))
    }

    /// Reads a whole pack and checks that its bytes hash to its name.
    pub fn read_pack(&self, pack: &Id) -> RemoteResult<Bytes> {
        let key = pack_key(pack);
        let bytes = self.objects.get(&key)?;
        if self.key.object_id(&bytes) != *pack {
            return Err(self.corrupt(&key, "its bytes do not hash to its name"));
        }
        Ok(bytes)
    }

    /// Reads a pack's index object.
    pub fn read_pack_index(&self, pack: &Id) -> RemoteResult<PackIndex> {
        let key = index_key(pack);
        let sealed = self.objects.get(&key)?;
        PackIndex::open(&sealed, pack, &self.key).map_err(|m| self.corrupt(&key, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::config::RemoteConfig;

    fn objects(dir: &Path) -> Objects {
        Objects::open("test", &RemoteConfig::for_url(&format!("file://{}", dir.join("repo").display()))).unwrap()
    }

    #[test]
    fn init_then_open_with_the_key_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("keys/test.key");
        let (_, report) = Repository::init(objects(dir.path()), &key_file).unwrap();
        assert!(report.key_file_created);
        assert!(matches!(
            Repository::init(objects(dir.path()), &key_file),
            Err(RemoteError::AlreadyInitialized { .. })
        ));
        let repository = Repository::open(objects(dir.path()), &key_file).unwrap();
        assert_eq!(repository.config().id, report.repository_id);
        let wrong = dir.path().join("wrong.key");
        KeyFileKey::create(&wrong).unwrap();
        assert!(matches!(Repository::open(objects(dir.path()), &wrong), Err(RemoteError::WrongKey { .. })));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(Repository::open(objects(empty.path()), &key_file), Err(RemoteError::NotInitialized { .. })));
    }
}
