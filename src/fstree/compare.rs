//! Two trees compared with every piece of metadata a restore keeps, and
//! their contents byte for byte: what "the restore is exact" means.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read as _;
use std::path::Path;

use super::error::FsTreeError;
use super::holes::data_ranges;
use super::metadata::{Kind, Metadata};
use super::walk::walk;

const BLOCK: u64 = 4096;

fn shown(path: &[u8]) -> String {
    if path.is_empty() {
        "/ (the root)".into()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

/// For each file path, the other paths of the tree that share its inode.
fn links(tree: &BTreeMap<Vec<u8>, Metadata>) -> HashMap<Vec<u8>, BTreeSet<Vec<u8>>> {
    let mut by_inode: HashMap<u64, BTreeSet<Vec<u8>>> = HashMap::new();
    for (path, meta) in tree {
        if meta.kind == Kind::File {
            by_inode.entry(meta.ino).or_default().insert(path.clone());
        }
    }
    let mut out = HashMap::new();
    for paths in by_inode.values() {
        for path in paths {
            let mut others = paths.clone();
            others.remove(path);
            out.insert(path.clone(), others);
        }
    }
    out
}

fn rounded_ranges(path: &Path, size: u64) -> Result<Vec<(u64, u64)>, FsTreeError> {
    let file = super::open_for_reading(path)?;
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (offset, length) in data_ranges(&file, size)? {
        let start = offset / BLOCK * BLOCK;
        let end = (offset + length).div_ceil(BLOCK) * BLOCK;
        match out.last_mut() {
            Some(last) if last.1 >= start => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    Ok(out)
}

fn same_contents(a: &Path, b: &Path) -> Result<bool, FsTreeError> {
    let mut fa = super::open_for_reading(a)?;
    let mut fb = super::open_for_reading(b)?;
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(FsTreeError::io("read", a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(FsTreeError::io("read", b))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Every difference between the trees under `a` and `b`, one readable line
/// each (empty: equal): entries missing or extra, kind, mode, owner, mtime,
/// atime (files), size, device number, symlink target, xattrs,
/// which paths share an inode, data extents (rounded out to 4 KiB blocks)
/// and file contents. All metadata is read before any content (reading
/// moves atimes). Inode numbers, link counts, ctimes and folder sizes are
/// not compared.
pub fn compare_trees(a: &Path, b: &Path) -> Result<Vec<String>, FsTreeError> {
    let left: BTreeMap<Vec<u8>, Metadata> = walk(a)?.into_iter().collect();
    let right: BTreeMap<Vec<u8>, Metadata> = walk(b)?.into_iter().collect();
    let (left_links, right_links) = (links(&left), links(&right));
    let mut differences = Vec::new();
    let mut files = Vec::new();
    for (path, l) in &left {
        let Some(r) = right.get(path) else {
            differences.push(format!("{}: only in {}", shown(path), a.display()));
            continue;
        };
        let name = shown(path);
        let mut differs = |what: &str, x: String, y: String| {
            if x != y {
                differences.push(format!("{name}: {what} {x} vs {y}"));
            }
        };
        differs("kind", format!("{:?}", l.kind), format!("{:?}", r.kind));
        if l.kind != r.kind {
            continue;
        }
        if l.kind != Kind::Symlink {
            differs("mode", format!("{:o}", l.mode), format!("{:o}", r.mode));
        }
        differs("owner", format!("{}:{}", l.uid, l.gid), format!("{}:{}", r.uid, r.gid));
        differs("mtime", l.mtime_ns.to_string(), r.mtime_ns.to_string());
        // Folders' atimes move as they are listed, symlinks' as they are read.
        if l.kind == Kind::File {
            differs("atime", l.atime_ns.to_string(), r.atime_ns.to_string());
        }
        differs("size", l.size.to_string(), r.size.to_string());
        differs("device", l.rdev.to_string(), r.rdev.to_string());
        differs(
            "symlink target",
            format!("{:?}", l.symlink_target.as_deref().map(String::from_utf8_lossy)),
            format!("{:?}", r.symlink_target.as_deref().map(String::from_utf8_lossy)),
        );
        differs("xattrs", format!("{:?}", l.xattrs), format!("{:?}", r.xattrs));
        if l.kind == Kind::File {
            let shown_links = |set: Option<&BTreeSet<Vec<u8>>>| {
                format!("{:?}", set.map(|s| s.iter().map(|p| shown(p)).collect::<Vec<_>>()).unwrap_or_default())
            };
            differs("hard links", shown_links(left_links.get(path)), shown_links(right_links.get(path)));
            if l.size == r.size {
                files.push((path.clone(), l.size));
            }
        }
    }
    for path in right.keys().filter(|p| !left.contains_key(*p)) {
        differences.push(format!("{}: only in {}", shown(path), b.display()));
    }
    for (path, size) in files {
        let (pa, pb) = (super::join(a, &path), super::join(b, &path));
        let (ra, rb) = (rounded_ranges(&pa, size)?, rounded_ranges(&pb, size)?);
        if ra != rb {
            differences.push(format!("{}: data extents {ra:?} vs {rb:?}", shown(&path)));
        }
        if !same_contents(&pa, &pb)? {
            differences.push(format!("{}: contents differ", shown(&path)));
        }
    }
    Ok(differences)
}
