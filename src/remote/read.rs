//! Reading a repository back: manifests, trees, and many blobs at once with
//! few requests (neighbouring blobs of a pack come in one ranged GET).

use std::collections::BTreeMap;

use super::crypto::Id;
use super::error::{RemoteError, RemoteResult};
use super::export::copy_extents_to_links;
use super::manifest::{decode_stream, Manifest, Tree, MANIFEST_VERSION};
use super::pack::{pack_key, IndexEntry};
use super::repository::{BlobIndex, Repository};

/// Two blobs less than this apart in a pack are fetched in one request.
const COALESCE_GAP: u64 = 1024 * 1024;

/// Reads the blobs `wanted` of one pack, sorted by offset: neighbours less
/// than `COALESCE_GAP` apart come in one ranged GET; each blob is checked
/// (seal and id) and handed to `each` with its place in `wanted`. Returns
/// the bytes downloaded.
pub(crate) fn read_from_pack(
    repository: &Repository,
    pack: &Id,
    wanted: &[IndexEntry],
    mut each: impl FnMut(usize, Vec<u8>) -> RemoteResult<()>,
) -> RemoteResult<u64> {
    let key = pack_key(pack);
    let mut downloaded = 0;
    let mut run_start = 0;
    while run_start < wanted.len() {
        let start = u64::from(wanted[run_start].offset);
        let mut end = start;
        let mut run_end = run_start;
        while run_end < wanted.len() && u64::from(wanted[run_end].offset) <= end + COALESCE_GAP {
            end = end.max(u64::from(wanted[run_end].offset) + u64::from(wanted[run_end].length));
            run_end += 1;
        }
        let bytes = repository.objects().get_range(&key, start..end)?;
        downloaded += bytes.len() as u64;
        for (position, entry) in wanted.iter().enumerate().take(run_end).skip(run_start) {
            let from = (u64::from(entry.offset) - start) as usize;
            let sealed = bytes
                .get(from..from + entry.length as usize)
                .ok_or_else(|| repository.corrupt(&key, "shorter than its index says"))?;
            let plain = repository.key().open_blob(sealed, &entry.id, entry.raw_length as usize).map_err(|m| {
                repository.corrupt(&key, format!("blob {} at offset {}: {m}", entry.id.short(), entry.offset))
            })?;
            each(position, plain)?;
        }
        run_start = run_end;
    }
    Ok(downloaded)
}

/// Reads blobs, in the order asked.
pub fn read_blobs(repository: &Repository, index: &BlobIndex, ids: &[Id]) -> RemoteResult<Vec<Vec<u8>>> {
    let mut by_pack: BTreeMap<u32, Vec<(IndexEntry, usize)>> = BTreeMap::new();
    for (position, id) in ids.iter().enumerate() {
        let location = index.get(id).ok_or_else(|| RemoteError::NotFound {
            remote: repository.remote().to_owned(),
            object: format!("blob {id}"),
        })?;
        by_pack.entry(location.pack).or_default().push((location.entry(*id), position));
    }
    let mut out: Vec<Option<Vec<u8>>> = vec![None; ids.len()];
    for (pack, mut wanted) in by_pack {
        wanted.sort_by_key(|(entry, _)| entry.offset);
        let entries: Vec<IndexEntry> = wanted.iter().map(|(entry, _)| *entry).collect();
        read_from_pack(repository, &index.packs[pack as usize], &entries, |at, plain| {
            out[wanted[at].1] = Some(plain);
            Ok(())
        })?;
    }
    Ok(out.into_iter().map(|b| b.expect("every position filled")).collect())
}

/// The tree of a manifest, each hard link carrying its target's extents.
pub fn read_tree(repository: &Repository, index: &BlobIndex, manifest: &Manifest) -> RemoteResult<Tree> {
    let ids: Vec<Id> = manifest.tree.iter().map(|c| c.id).collect();
    let stream: Vec<u8> = read_blobs(repository, index, &ids)?.concat();
    let records = decode_stream(&stream)
        .map_err(|m| repository.corrupt(&format!("the tree of {}/{}", manifest.container, manifest.snapshot), m))?;
    let mut tree: Tree = records.into_iter().map(|r| (r.path.clone(), r)).collect();
    copy_extents_to_links(&mut tree);
    Ok(tree)
}

/// Reads one manifest.
pub fn read_manifest(repository: &Repository, id: &Id) -> RemoteResult<Manifest> {
    let key = Manifest::key(id);
    let sealed = repository.objects().get(&key)?;
    let plain =
        repository.key().open(&sealed, key.as_bytes(), 64 * 1024 * 1024).map_err(|m| repository.corrupt(&key, m))?;
    if repository.key().object_id(&plain) != *id {
        return Err(repository.corrupt(&key, "its content does not hash to its name"));
    }
    let manifest: Manifest = postcard::from_bytes(&plain).map_err(|e| repository.corrupt(&key, e.to_string()))?;
    if manifest.version != MANIFEST_VERSION {
        return Err(repository.corrupt(
            &key,
            format!("manifest version {} (this rollpoint reads {MANIFEST_VERSION})", manifest.version),
        ));
    }
    Ok(manifest)
}

/// Every manifest, oldest export first.
pub fn list_manifests(repository: &Repository) -> RemoteResult<Vec<(Id, Manifest)>> {
    let mut manifests = Vec::new();
    for listed in repository.objects().list("snapshots")? {
        let Some(id) = listed.key.strip_prefix("snapshots/").and_then(Id::from_hex) else { continue };
        manifests.push((id, read_manifest(repository, &id)?));
    }
    manifests.sort_by(|a, b| a.1.exported.cmp(&b.1.exported));
    Ok(manifests)
}
