//! Import: a manifest's tree materialised into an empty directory, on any
//! filesystem. Every blob is checked (seal and id) before a byte of it is
//! written; data is fetched pack by pack, neighbouring blobs in one request.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::error::{RemoteError, RemoteResult};
use super::manifest::Manifest;
use super::pack::IndexEntry;
use super::read::{read_from_pack, read_tree};
use super::repository::Repository;
use crate::fstree::{Materializer, Metadata};

/// Where an import is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportProgress {
    pub phase: String,
    pub bytes_total: u64,
    pub bytes_written: u64,
    pub bytes_downloaded: u64,
}

#[derive(Debug, Clone)]
pub struct Imported {
    pub entries: u64,
    pub files: u64,
    pub bytes_written: u64,
    pub bytes_downloaded: u64,
    pub duration: Duration,
}

struct PendingFile {
    path: Vec<u8>,
    meta: Metadata,
    chunks_left: usize,
}

struct Placement {
    entry: IndexEntry,
    file: usize,
    file_offset: u64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RemoteError + '_ {
    move |source| RemoteError::Io { path: path.to_owned(), source }
}

/// Materialises `manifest` under `target` (an existing, empty directory).
pub fn import(
    repository: &Repository,
    manifest: &Manifest,
    target: &Path,
    progress: &mut dyn FnMut(&ImportProgress),
    cancel: &AtomicBool,
) -> RemoteResult<Imported> {
    let started = Instant::now();
    let mut report = ImportProgress { phase: "reading the repository's index".into(), ..Default::default() };
    progress(&report);
    let index = repository.load_index()?;
    report.phase = "reading the tree".into();
    progress(&report);
    let tree = read_tree(repository, &index, manifest)?;

    report.phase = "creating the tree".into();
    progress(&report);
    let mut materializer = Materializer::new(target)?;
    let mut files: Vec<PendingFile> = Vec::new();
    let mut by_pack: BTreeMap<u32, Vec<Placement>> = BTreeMap::new();
    let mut file_count = 0u64;
    for record in tree.values() {
        let full = target.join(std::ffi::OsStr::from_bytes(&record.path));
        let created = materializer.create(&record.path, &record.meta, record.hardlink_to.as_deref())?;
        let Some(file) = created else { continue };
        file_count += 1;
        let chunks: usize = record.extents.iter().map(|e| e.chunks.len()).sum();
        if chunks == 0 {
            materializer.finish_file(&record.path, file, &record.meta)?;
            continue;
        }
        drop(file);
        let file_index = files.len();
        for extent in &record.extents {
            let mut file_offset = extent.offset;
            for chunk in &extent.chunks {
                let location = index.get(&chunk.id).ok_or_else(|| RemoteError::NotFound {
                    remote: repository.remote().to_owned(),
                    object: format!("blob {} of {}", chunk.id, full.display()),
                })?;
                by_pack.entry(location.pack).or_default().push(Placement {
                    entry: location.entry(chunk.id),
                    file: file_index,
                    file_offset,
                });
                report.bytes_total += u64::from(chunk.length);
                file_offset += u64::from(chunk.length);
            }
        }
        files.push(PendingFile { path: record.path.clone(), meta: record.meta.clone(), chunks_left: chunks });
    }

    report.phase = "writing file data".into();
    progress(&report);
    let mut open: HashMap<usize, File> = HashMap::new();
    let mut last_report = Instant::now();
    for (pack, mut placements) in by_pack {
        placements.sort_by_key(|p| p.entry.offset);
        let entries: Vec<IndexEntry> = placements.iter().map(|p| p.entry).collect();
        let downloaded = read_from_pack(repository, &index.packs[pack as usize], &entries, |at, plain| {
            if cancel.load(Ordering::Relaxed) {
                return Err(RemoteError::Unavailable {
                    remote: repository.remote().to_owned(),
                    message: "the import was cancelled".into(),
                });
            }
            let placement = &placements[at];
            let pending = &mut files[placement.file];
            let full = target.join(std::ffi::OsStr::from_bytes(&pending.path));
            let file = match open.entry(placement.file) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => entry.insert(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&full)
                        .map_err(io(&full))?,
                ),
            };
            file.write_all_at(&plain, placement.file_offset).map_err(io(&full))?;
            report.bytes_written += plain.len() as u64;
            pending.chunks_left -= 1;
            if pending.chunks_left == 0 {
                let file = open.remove(&placement.file).expect("opened above");
                materializer.finish_file(&pending.path, file, &pending.meta)?;
            }
            if last_report.elapsed() >= Duration::from_millis(250) {
                progress(&report);
                last_report = Instant::now();
            }
            Ok(())
        })?;
        report.bytes_downloaded += downloaded;
    }
    report.phase = "setting directories' metadata and syncing".into();
    progress(&report);
    materializer.finish()?;
    report.phase = "done".into();
    progress(&report);
    Ok(Imported {
        entries: tree.len() as u64,
        files: file_count,
        bytes_written: report.bytes_written,
        bytes_downloaded: report.bytes_downloaded,
        duration: started.elapsed(),
    })
}
