//! Export: a read-only snapshot's tree into a repository.
//!
//! What is read depends on what is known of the parent export:
//! - **changes** (btrfs: the send stream of parent -> snapshot, without file
//!   data): the parent's tree is edited by the changes, and only the entries
//!   they name are looked at again; nothing else is walked or read;
//! - **parent only** (no change list: another backend, or the parent
//!   snapshot is gone locally): the whole tree is walked, and a file whose
//!   inode, size, mtime and ctime match the parent's keeps its chunks;
//! - **nothing**: every file is read.
//!
//! Chunks already in the repository are never uploaded again, whichever path
//! found them.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::chunker::Chunker;
use super::crypto::Id;
use super::error::{RemoteError, RemoteResult};
use super::manifest::{encode_record, ChunkRef, Extent, Manifest, Tree, TreeRecord, MANIFEST_VERSION};
use super::objects::Created;
use super::pack::{BlobKind, PackWriter};
use super::read::read_tree;
use super::repository::{BlobIndex, Repository};
use super::upload::Uploader;
use crate::fstree::{self, Kind, Metadata};

/// A pack is sent once it holds this many sealed bytes.
const PACK_TARGET: usize = 16 * 1024 * 1024;
/// The most a pack can hold: the target plus one more sealed chunk.
const PACK_CAPACITY: usize = PACK_TARGET + 4 * 1024 * 1024 + 1024;

/// One step of what turned the parent snapshot's tree into this one's, in
/// order (the btrfs send stream's commands, reduced to paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Rename { from: Vec<u8>, to: Vec<u8> },
    Remove { path: Vec<u8> },
    Link { path: Vec<u8>, target: Vec<u8> },
    Touched { path: Vec<u8>, data: bool },
}

/// What the manifest says of the snapshot, besides its tree.
#[derive(Debug, Clone, Default)]
pub struct SnapshotInfo {
    pub host: String,
    pub container: String,
    pub snapshot: String,
    pub alias: String,
    pub created: String,
    pub backend: String,
    pub uuid: String,
    pub generation: u64,
}

/// The earlier export this one builds on.
#[derive(Debug, Clone)]
pub struct Parent {
    pub id: Id,
    pub manifest: Manifest,
    /// The changes since it, when the filesystem could tell.
    pub changes: Option<Vec<Change>>,
}

/// How the export found what to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Full,
    ComparedWithParent,
    ChangesFromFilesystem,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Full => "full",
            Method::ComparedWithParent => "compared with the parent export",
            Method::ChangesFromFilesystem => "changes from the filesystem",
        }
    }
}

/// Where an export is, for progress reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub phase: String,
    pub files_total: u64,
    pub files_done: u64,
    /// Bytes of file data to read, and read so far.
    pub bytes_total: u64,
    pub bytes_read: u64,
    /// Sealed bytes new to the repository, and how many of them are stored.
    pub bytes_new: u64,
    pub bytes_uploaded: u64,
}

/// The result of an export.
#[derive(Debug, Clone)]
pub struct Exported {
    pub id: Id,
    pub manifest: Manifest,
    pub method: Method,
    /// Whether the manifest was already there (the same export done before).
    pub already_there: bool,
    pub duration: Duration,
}

/// Exports the tree at `root`.
///
/// Without a change list the tree is walked in path order and written as it
/// is walked (each file read when its entry comes up): the export holds one
/// folder listing per level, not the tree, whatever its size. With a change
/// list the parent's tree is edited in memory, as renames move whole
/// subtrees.
pub fn export(
    repository: &Repository,
    root: &Path,
    info: SnapshotInfo,
    parent: Option<Parent>,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> RemoteResult<Exported> {
    let started = Instant::now();
    if let Some(Parent { id, manifest, changes: Some(changes) }) = &parent {
        if changes.is_empty() {
            // The filesystem says nothing changed: the parent's tree is this
            // snapshot's tree, blob for blob. Nothing to read or decode.
            return unchanged_since(repository, info, *id, manifest, started, progress);
        }
    }
    let mut report = Progress { phase: "reading the repository's index".into(), ..Default::default() };
    progress(&report);
    let index = repository.load_index()?;
    report.phase = "finding what changed".into();
    progress(&report);
    let writer = RefCell::new(BlobWriter::new(repository, &index));
    let mut reading = Reading {
        root,
        writer: &writer,
        chunker: repository.data_chunker(),
        buffer: Vec::new(),
        report,
        progress,
        cancel,
        last_report: Instant::now(),
        remote: repository.remote(),
    };
    let (tree, method) = match &parent {
        Some(Parent { manifest, changes: Some(changes), .. }) => {
            let mut tree = read_tree(repository, &index, manifest)?;
            let mut marks = apply_changes(&mut tree, changes);
            restat_marked(root, &mut tree, &mut marks)?;
            let to_read = group_hard_links(&mut tree, &marks);
            let bytes = to_read.iter().filter_map(|p| tree.get(p)).map(|r| r.meta.size).sum();
            reading.start_reading(to_read.len() as u64, bytes);
            for path in &to_read {
                let record = tree.get_mut(path).expect("paths to read are in the tree");
                record.extents = reading.read_file(path, record.meta.size)?;
            }
            reading.phase("writing the tree");
            (write_tree(repository, &writer, tree.into_values().map(Ok))?, Method::ChangesFromFilesystem)
        }
        Some(Parent { manifest, changes: None, .. }) => {
            let parent_tree = read_tree(repository, &index, manifest)?;
            (stream_walk(repository, &mut reading, Some(&parent_tree))?, Method::ComparedWithParent)
        }
        None => (stream_walk(repository, &mut reading, None)?, Method::Full),
    };
    let mut report = reading.report;
    let uploaded = writer.borrow_mut().finish()?;
    let writer = writer.into_inner();
    report.bytes_new = writer.added_bytes;
    report.bytes_uploaded = uploaded;

    let totals = Totals {
        entries: tree.entries,
        files: tree.files,
        logical_bytes: tree.logical_bytes,
        added_bytes: writer.added_bytes,
        added_blobs: writer.added_blobs,
        read_bytes: report.bytes_read,
    };
    let manifest = new_manifest(info, parent.as_ref().map(|p| p.id), tree.chunks, totals);
    report.phase = "writing the manifest".into();
    progress(&report);
    let (id, already_there) = write_manifest(repository, &manifest)?;
    report.phase = "done".into();
    progress(&report);
    Ok(Exported { id, manifest, method, already_there, duration: started.elapsed() })
}

/// What identifies a file's content without reading it: a file whose
/// inode, size, mtime and ctime match the parent's keeps its chunks.
fn same_content(old: &Metadata, new: &Metadata) -> bool {
    old.kind == new.kind
        && old.ino == new.ino
        && old.size == new.size
        && old.mtime_ns == new.mtime_ns
        && old.ctime_ns == new.ctime_ns
}

/// The walk's entries become tree records as they come, each regular file
/// read (or its chunks taken from the parent's record) when it comes up.
fn stream_walk(repository: &Repository, reading: &mut Reading, parent: Option<&Tree>) -> RemoteResult<TreeWritten> {
    // A first walk, of `lstat` only, to tell how much there is to read.
    reading.phase("counting what to read");
    let (mut files, mut bytes, mut linked) = (0u64, 0u64, HashSet::new());
    for entry in fstree::SortedWalk::new(reading.root, count_stat)? {
        let (path, stat) = entry?;
        let first_name = stat.nlink <= 1 || linked.insert(stat.ino);
        if stat.kind == Kind::File
            && first_name
            && !parent.and_then(|p| p.get(&path)).is_some_and(|old| same_content(&old.meta, &stat))
        {
            files += 1;
            bytes += stat.size;
        }
    }
    drop(linked);
    reading.start_reading(files, bytes);
    let writer = reading.writer;
    let records = StreamedRecords { walk: fstree::entries(reading.root)?, parent, links: HashMap::new(), reading };
    write_tree(repository, writer, records)
}

/// Just what counting needs (`same_content`'s fields) of an `lstat`.
fn count_stat(_: &Path, stat: &std::fs::Metadata) -> Result<Metadata, fstree::FsTreeError> {
    use std::os::unix::fs::MetadataExt as _;
    let kind = if stat.is_file() { Kind::File } else { Kind::Dir };
    Ok(Metadata {
        kind,
        mode: 0,
        uid: 0,
        gid: 0,
        atime_ns: 0,
        mtime_ns: fstree::nanos(stat.mtime(), stat.mtime_nsec()),
        size: if kind == Kind::File { stat.size() } else { 0 },
        rdev: 0,
        symlink_target: None,
        xattrs: Vec::new(),
        ino: stat.ino(),
        nlink: stat.nlink(),
        ctime_ns: fstree::nanos(stat.ctime(), stat.ctime_nsec()),
    })
}

/// The records of a walk, files read as they come up.
struct StreamedRecords<'r, 'a, 'w, 'p> {
    walk: fstree::SortedWalk<Metadata>,
    parent: Option<&'p Tree>,
    /// Files with several names seen so far: inode -> the first path (in
    /// path order: the one that holds the data) and its metadata.
    links: HashMap<u64, (Vec<u8>, Metadata)>,
    reading: &'r mut Reading<'a, 'w>,
}

impl StreamedRecords<'_, '_, '_, '_> {
    fn record(&mut self, path: Vec<u8>, meta: Metadata) -> RemoteResult<TreeRecord> {
        if meta.kind != Kind::File {
            return Ok(TreeRecord { path, meta, hardlink_to: None, extents: Vec::new() });
        }
        if let Some((primary, primary_meta)) = self.links.get(&meta.ino).filter(|_| meta.nlink > 1) {
            let meta = primary_meta.clone();
            return Ok(TreeRecord { path, meta, hardlink_to: Some(primary.clone()), extents: Vec::new() });
        }
        let unchanged = self.parent.and_then(|p| p.get(&path)).filter(|old| same_content(&old.meta, &meta));
        let extents = match unchanged {
            Some(old) => old.extents.clone(),
            None => self.reading.read_file(&path, meta.size)?,
        };
        if meta.nlink > 1 {
            self.links.insert(meta.ino, (path.clone(), meta.clone()));
        }
        Ok(TreeRecord { path, meta, hardlink_to: None, extents })
    }
}

impl Iterator for StreamedRecords<'_, '_, '_, '_> {
    type Item = RemoteResult<TreeRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.walk.next()?;
        Some(next.map_err(RemoteError::from).and_then(|(path, meta)| self.record(path, meta)))
    }
}

/// Reading files into blobs, with progress reports and cancellation.
struct Reading<'a, 'w> {
    root: &'a Path,
    writer: &'w RefCell<BlobWriter<'a>>,
    chunker: Chunker,
    buffer: Vec<u8>,
    report: Progress,
    progress: &'a mut dyn FnMut(&Progress),
    cancel: &'a AtomicBool,
    last_report: Instant,
    remote: &'a str,
}

impl Reading<'_, '_> {
    fn phase(&mut self, phase: &str) {
        self.report.phase = phase.into();
        self.send_report();
    }

    fn start_reading(&mut self, files: u64, bytes: u64) {
        self.report.files_total = files;
        self.report.bytes_total = bytes;
        self.phase("reading and uploading");
    }

    fn send_report(&mut self) {
        let writer = self.writer.borrow();
        self.report.bytes_new = writer.added_bytes;
        self.report.bytes_uploaded = writer.uploader.uploaded_bytes();
        drop(writer);
        (self.progress)(&self.report);
        self.last_report = Instant::now();
    }

    /// Reads one file's data extents into blobs.
    fn read_file(&mut self, path: &[u8], size: u64) -> RemoteResult<Vec<Extent>> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(RemoteError::Unavailable {
                remote: self.remote.to_owned(),
                message: "the export was cancelled".into(),
            });
        }
        let full = self.root.join(std::ffi::OsStr::from_bytes_path(path));
        let file = fstree::open_for_reading(&full)?;
        let io_error = |source: std::io::Error| RemoteError::Io { path: full.clone(), source };
        let mut extents = Vec::new();
        for (offset, length) in fstree::data_ranges(&file, size)? {
            let mut chunks = Vec::new();
            let mut reader = RangeReader { file: &file, position: offset, end: offset + length };
            let writer = self.writer;
            let read = self.chunker.chunk_reader(&mut reader, length, &mut self.buffer, io_error, |chunk| {
                chunks.push(writer.borrow_mut().store(chunk, BlobKind::Data)?);
                Ok(())
            })?;
            self.report.bytes_read += read;
            if !chunks.is_empty() {
                extents.push(Extent { offset, chunks });
            }
        }
        self.report.files_done += 1;
        if self.last_report.elapsed() >= Duration::from_millis(250) {
            self.send_report();
        }
        Ok(extents)
    }
}

/// A tree stream written: its blobs, and what it counted.
struct TreeWritten {
    chunks: Vec<ChunkRef>,
    entries: u64,
    files: u64,
    logical_bytes: u64,
}

/// Encodes records (in path order) into the tree stream as the chunker
/// reads it, never held whole, and stores its blobs.
fn write_tree(
    repository: &Repository,
    writer: &RefCell<BlobWriter>,
    records: impl Iterator<Item = RemoteResult<TreeRecord>>,
) -> RemoteResult<TreeWritten> {
    let mut chunks = Vec::new();
    let mut stream =
        TreeReader { records, encoded: Vec::new(), position: 0, failed: None, entries: 0, files: 0, logical_bytes: 0 };
    let written = repository.tree_chunker().chunk_reader(
        &mut stream,
        u64::MAX,
        &mut Vec::new(),
        |source| RemoteError::Io { path: PathBuf::from("(the tree stream)"), source },
        |chunk| {
            chunks.push(writer.borrow_mut().store(chunk, BlobKind::Tree)?);
            Ok(())
        },
    );
    if let Some(error) = stream.failed.take() {
        return Err(error);
    }
    written?;
    Ok(TreeWritten { chunks, entries: stream.entries, files: stream.files, logical_bytes: stream.logical_bytes })
}

/// The export of a snapshot identical to its parent's: a new manifest that
/// names the parent's tree.
fn unchanged_since(
    repository: &Repository,
    info: SnapshotInfo,
    parent: Id,
    parent_manifest: &Manifest,
    started: Instant,
    progress: &mut dyn FnMut(&Progress),
) -> RemoteResult<Exported> {
    progress(&Progress {
        phase: "unchanged since the parent export: writing the manifest".into(),
        ..Default::default()
    });
    let totals = Totals {
        entries: parent_manifest.entries,
        files: parent_manifest.files,
        logical_bytes: parent_manifest.logical_bytes,
        ..Totals::default()
    };
    let manifest = new_manifest(info, Some(parent), parent_manifest.tree.clone(), totals);
    let (id, already_there) = write_manifest(repository, &manifest)?;
    progress(&Progress { phase: "done".into(), ..Default::default() });
    Ok(Exported { id, manifest, method: Method::ChangesFromFilesystem, already_there, duration: started.elapsed() })
}

/// What a manifest counts of its tree and of the export that wrote it.
#[derive(Debug, Default)]
struct Totals {
    entries: u64,
    files: u64,
    logical_bytes: u64,
    added_bytes: u64,
    added_blobs: u64,
    read_bytes: u64,
}

fn new_manifest(info: SnapshotInfo, parent: Option<Id>, tree: Vec<ChunkRef>, totals: Totals) -> Manifest {
    Manifest {
        version: MANIFEST_VERSION,
        host: info.host,
        container: info.container,
        snapshot: info.snapshot,
        alias: info.alias,
        snapshot_created: info.created,
        exported: chrono::Utc::now().to_rfc3339(),
        backend: info.backend,
        source_uuid: info.uuid,
        source_generation: info.generation,
        parent,
        tree,
        entries: totals.entries,
        files: totals.files,
        logical_bytes: totals.logical_bytes,
        added_bytes: totals.added_bytes,
        added_blobs: totals.added_blobs,
        read_bytes: totals.read_bytes,
    }
}

/// Stores a manifest (sealed, named by the hash of its content).
pub fn write_manifest(repository: &Repository, manifest: &Manifest) -> RemoteResult<(Id, bool)> {
    let plain = postcard::to_stdvec(manifest).expect("a manifest always encodes");
    let id = repository.key().object_id(&plain);
    let key = Manifest::key(&id);
    let sealed = repository.key().seal(&plain, key.as_bytes());
    let created = repository.objects().put_new(&key, Bytes::from(sealed))?;
    Ok((id, created == Created::AlreadyThere))
}

/// Seals blobs into packs and sends full packs on.
struct BlobWriter<'a> {
    repository: &'a Repository,
    index: &'a BlobIndex,
    written: HashSet<Id>,
    pack: PackWriter,
    uploader: Uploader,
    added_bytes: u64,
    added_blobs: u64,
}

impl<'a> BlobWriter<'a> {
    fn new(repository: &'a Repository, index: &'a BlobIndex) -> BlobWriter<'a> {
        BlobWriter {
            repository,
            index,
            written: HashSet::new(),
            pack: PackWriter::with_capacity(PACK_CAPACITY),
            uploader: Uploader::new(repository.objects().clone()),
            added_bytes: 0,
            added_blobs: 0,
        }
    }

    fn store(&mut self, plain: &[u8], kind: BlobKind) -> RemoteResult<ChunkRef> {
        let key = self.repository.key();
        let id = key.blob_id(plain);
        let length = u32::try_from(plain.len()).expect("chunks are at most a few MiB");
        if self.index.contains(&id) || self.written.contains(&id) {
            return Ok(ChunkRef { id, length });
        }
        let sealed = key.seal(plain, &id.0);
        self.added_bytes += sealed.len() as u64;
        self.added_blobs += 1;
        self.pack.add(id, kind, &sealed, plain.len());
        self.written.insert(id);
        if self.pack.len() >= PACK_TARGET {
            let pack = std::mem::replace(&mut self.pack, PackWriter::with_capacity(PACK_CAPACITY)).finish(key);
            self.uploader.submit(pack, key)?;
        }
        Ok(ChunkRef { id, length })
    }

    fn finish(&mut self) -> RemoteResult<u64> {
        if !self.pack.is_empty() {
            let key = self.repository.key();
            let pack = std::mem::take(&mut self.pack).finish(key);
            self.uploader.submit(pack, key)?;
        }
        self.uploader.finish()
    }
}

/// The tree stream, encoded record by record as it is read; counts what
/// it encodes. A record that could not be made stops the stream, its error
/// kept in `failed`.
struct TreeReader<I: Iterator<Item = RemoteResult<TreeRecord>>> {
    records: I,
    encoded: Vec<u8>,
    position: usize,
    failed: Option<RemoteError>,
    entries: u64,
    files: u64,
    logical_bytes: u64,
}

impl<I: Iterator<Item = RemoteResult<TreeRecord>>> Read for TreeReader<I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.position == self.encoded.len() {
            let mut record = match self.records.next() {
                None => return Ok(0),
                Some(Ok(record)) => record,
                Some(Err(error)) => {
                    self.failed = Some(error);
                    return Err(std::io::Error::other("a tree record could not be made"));
                }
            };
            self.entries += 1;
            if record.meta.kind == Kind::File {
                self.files += 1;
                if record.hardlink_to.is_none() {
                    self.logical_bytes += record.meta.size;
                }
            }
            if record.hardlink_to.is_some() {
                // A link's data is at its target: the stream stores it once.
                record.extents.clear();
            }
            self.encoded.clear();
            self.position = 0;
            encode_record(&record, &mut self.encoded);
        }
        let n = buf.len().min(self.encoded.len() - self.position);
        buf[..n].copy_from_slice(&self.encoded[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

/// Reads `[position, end)` of a file.
struct RangeReader<'a> {
    file: &'a File,
    position: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = usize::try_from(self.end - self.position).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..want], self.position)?;
        self.position += got as u64;
        Ok(got)
    }
}

/// Paths whose entry must be read again, and whether their data must.
type Marks = BTreeMap<Vec<u8>, bool>;

fn moved(path: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut new = to.to_vec();
    new.extend_from_slice(&path[from.len()..]);
    new
}

fn remove_within<V>(map: &mut BTreeMap<Vec<u8>, V>, dir: &[u8]) -> Vec<(Vec<u8>, V)> {
    let keys: Vec<Vec<u8>> = map
        .range(dir.to_vec()..)
        .take_while(|(key, _)| key.starts_with(dir))
        .filter(|(key, _)| super::manifest::is_within(key, dir))
        .map(|(key, _)| key.clone())
        .collect();
    keys.into_iter().filter_map(|key| map.remove(&key).map(|value| (key, value))).collect()
}

/// Edits the parent's tree by the changes, in order; returns the paths to
/// look at again (true: their data too).
pub fn apply_changes(tree: &mut Tree, changes: &[Change]) -> Marks {
    let mut marks = Marks::new();
    for change in changes {
        match change {
            Change::Rename { from, to } => {
                remove_within(tree, to);
                remove_within(&mut marks, to);
                for (path, mut record) in remove_within(tree, from) {
                    let new = moved(&path, from, to);
                    record.path = new.clone();
                    tree.insert(new, record);
                }
                for (path, data) in remove_within(&mut marks, from) {
                    marks.insert(moved(&path, from, to), data);
                }
            }
            Change::Remove { path } => {
                remove_within(tree, path);
                remove_within(&mut marks, path);
            }
            Change::Link { path, target } => {
                let target_known = tree.contains_key(target) && !marks.get(target).copied().unwrap_or(false);
                if let Some(record) = tree.get(target).cloned() {
                    tree.insert(path.clone(), TreeRecord { path: path.clone(), ..record });
                }
                *marks.entry(path.clone()).or_insert(false) |= !target_known;
                marks.entry(target.clone()).or_insert(false);
            }
            Change::Touched { path, data } => {
                *marks.entry(path.clone()).or_insert(false) |= *data;
            }
        }
    }
    marks
}

/// Reads the marked entries again from the snapshot; an entry marked for
/// its metadata only keeps its chunks unless its kind or size changed.
fn restat_marked(root: &Path, tree: &mut Tree, marks: &mut Marks) -> RemoteResult<()> {
    let paths: Vec<(Vec<u8>, bool)> = marks.iter().map(|(p, d)| (p.clone(), *d)).collect();
    for (path, data) in paths {
        let full = root.join(std::ffi::OsStr::from_bytes_path(&path));
        if std::fs::symlink_metadata(&full).is_err() {
            tree.remove(&path);
            marks.remove(&path);
            continue;
        }
        let meta = fstree::read_metadata(root, &path)?;
        let keep_data =
            !data && tree.get(&path).is_some_and(|old| old.meta.kind == meta.kind && old.meta.size == meta.size);
        marks.insert(path.clone(), !keep_data);
        let extents =
            if keep_data { tree.get(&path).map(|r| r.extents.clone()).unwrap_or_default() } else { Vec::new() };
        tree.insert(path.clone(), TreeRecord { path, meta, hardlink_to: None, extents });
    }
    Ok(())
}

/// Groups the files that share an inode: the first path holds the data, the
/// others link to it; a group is read once, when any of its paths is marked
/// for data. Returns the files to read.
fn group_hard_links(tree: &mut Tree, marks: &Marks) -> BTreeSet<Vec<u8>> {
    let mut groups: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    let mut to_read = BTreeSet::new();
    for (path, record) in tree.iter_mut() {
        if record.meta.kind != Kind::File {
            continue;
        }
        if record.meta.nlink > 1 {
            groups.entry(record.meta.ino).or_default().push(path.clone());
        } else {
            // One name: nothing to group (most files; no copy of its path).
            record.hardlink_to = None;
            if marks.get(path).copied().unwrap_or(false) {
                to_read.insert(path.clone());
            }
        }
    }
    for (_, mut paths) in groups {
        paths.sort();
        let primary = paths[0].clone();
        let needs_data = paths.iter().any(|p| marks.get(p).copied().unwrap_or(false));
        // The freshest metadata of the inode: a marked path's, read just now.
        let fresh = paths.iter().find(|p| marks.contains_key(*p)).unwrap_or(&primary).clone();
        let meta = tree[&fresh].meta.clone();
        let extents = tree[&fresh].extents.clone();
        for path in &paths {
            let record = tree.get_mut(path).expect("grouped from the tree");
            record.meta = meta.clone();
            record.meta.nlink = paths.len() as u64;
            record.hardlink_to = (path != &primary).then(|| primary.clone());
            if !needs_data {
                record.extents = extents.clone();
            }
        }
        if needs_data {
            to_read.insert(primary);
        }
    }
    to_read
}

/// Gives each hard link its primary's extents (in memory only; the stream
/// stores them once).
pub fn copy_extents_to_links(tree: &mut Tree) {
    let links: Vec<(Vec<u8>, Vec<u8>)> =
        tree.iter().filter_map(|(p, r)| r.hardlink_to.clone().map(|target| (p.clone(), target))).collect();
    for (path, target) in links {
        if let Some(extents) = tree.get(&target).map(|r| r.extents.clone()) {
            if let Some(record) = tree.get_mut(&path) {
                record.extents = extents;
            }
        }
    }
}

/// Paths as bytes to `Path`s.
trait FromBytesPath {
    fn from_bytes_path(path: &[u8]) -> &Self;
}

impl FromBytesPath for std::ffi::OsStr {
    fn from_bytes_path(path: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fstree::Metadata;

    fn record(path: &str, ino: u64) -> TreeRecord {
        TreeRecord {
            path: path.as_bytes().to_vec(),
            meta: Metadata {
                kind: if path.contains('.') { Kind::File } else { Kind::Dir },
                mode: 0o644,
                uid: 0,
                gid: 0,
                atime_ns: 0,
                mtime_ns: 0,
                size: 1,
                rdev: 0,
                symlink_target: None,
                xattrs: Vec::new(),
                ino,
                nlink: 1,
                ctime_ns: 0,
            },
            hardlink_to: None,
            extents: vec![Extent { offset: 0, chunks: vec![ChunkRef { id: Id([ino as u8; 32]), length: 1 }] }],
        }
    }

    fn tree(paths: &[(&str, u64)]) -> Tree {
        paths.iter().map(|(p, ino)| (p.as_bytes().to_vec(), record(p, *ino))).collect()
    }

    fn keys(tree: &Tree) -> Vec<String> {
        tree.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect()
    }

    #[test]
    fn renames_move_whole_subtrees_and_marks_follow_them() {
        let mut tree =
            tree(&[("", 256), ("a", 257), ("a/x.f", 258), ("a/sub", 259), ("a/sub/y.f", 260), ("ab.f", 261)]);
        let changes = vec![
            // A new file under an orphan name, renamed into place later.
            Change::Touched { path: b"o300-5-0".to_vec(), data: true },
            Change::Rename { from: b"a".to_vec(), to: b"b".to_vec() },
            Change::Rename { from: b"o300-5-0".to_vec(), to: b"b/new.f".to_vec() },
            Change::Touched { path: b"b/x.f".to_vec(), data: false },
            Change::Remove { path: b"ab.f".to_vec() },
        ];
        let marks = apply_changes(&mut tree, &changes);
        assert_eq!(keys(&tree), ["", "b", "b/sub", "b/sub/y.f", "b/x.f"]);
        assert_eq!(tree[&b"b/sub/y.f".to_vec()].path, b"b/sub/y.f");
        assert_eq!(marks.get(b"b/new.f".as_slice()), Some(&true));
        assert_eq!(marks.get(b"b/x.f".as_slice()), Some(&false));
        assert!(!marks.contains_key(b"o300-5-0".as_slice()));
    }

    #[test]
    fn a_rename_over_an_entry_replaces_it_and_a_removed_folder_takes_its_content() {
        let mut tree =
            tree(&[("", 256), ("d", 257), ("d/a.f", 258), ("e", 259), ("e/b.f", 260), ("x.f", 261), ("y.f", 262)]);
        let changes = vec![
            Change::Rename { from: b"x.f".to_vec(), to: b"y.f".to_vec() },
            Change::Remove { path: b"d".to_vec() },
            Change::Link { path: b"e/c.f".to_vec(), target: b"e/b.f".to_vec() },
        ];
        let marks = apply_changes(&mut tree, &changes);
        assert_eq!(keys(&tree), ["", "e", "e/b.f", "e/c.f", "y.f"]);
        assert_eq!(tree[&b"y.f".to_vec()].meta.ino, 261, "the renamed file replaced the old one");
        assert_eq!(marks.get(b"e/c.f".as_slice()), Some(&false), "a link to a known file keeps its data");
    }

    #[test]
    fn hard_links_share_one_read_and_the_first_path_holds_the_data() {
        let mut tree = tree(&[("", 256), ("a.f", 300), ("b.f", 300), ("c.f", 301)]);
        for linked in [&b"a.f"[..], b"b.f"] {
            tree.get_mut(linked).unwrap().meta.nlink = 2;
        }
        let mut marks = Marks::new();
        marks.insert(b"b.f".to_vec(), true);
        let to_read = group_hard_links(&mut tree, &marks);
        assert_eq!(to_read.into_iter().collect::<Vec<_>>(), vec![b"a.f".to_vec()]);
        assert_eq!(tree[&b"b.f".to_vec()].hardlink_to.as_deref(), Some(&b"a.f"[..]));
        assert_eq!(tree[&b"a.f".to_vec()].meta.nlink, 2);
        assert!(tree[&b"c.f".to_vec()].hardlink_to.is_none());
    }
}
