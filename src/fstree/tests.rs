//! Round trips through a walk, a materialiser and a comparison, in temp
//! folders (the root-only ones use another owner and a device node).

use std::os::unix::fs::{FileExt as _, PermissionsExt as _};
use std::path::Path;

use super::*;

/// Copies the tree at `from` into the empty folder `to` as an import does:
/// entries in path order, data by extents, hard links to their first path.
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    let entries = walk(from).unwrap();
    let mut materializer = Materializer::new(to).unwrap();
    let mut first_path: std::collections::HashMap<u64, Vec<u8>> = std::collections::HashMap::new();
    let mut sorted = entries.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (rel, meta) in sorted {
        let link = if meta.kind == Kind::File { first_path.get(&meta.ino).cloned() } else { None };
        if meta.kind == Kind::File && link.is_none() {
            first_path.insert(meta.ino, rel.clone());
        }
        if let Some(file) = materializer.create(&rel, &meta, link.as_deref()).unwrap() {
            let source = open_for_reading(&join(from, &rel)).unwrap();
            for (offset, length) in data_ranges(&source, meta.size).unwrap() {
                let mut buffer = vec![0u8; length as usize];
                source.read_exact_at(&mut buffer, offset).unwrap();
                file.write_all_at(&buffer, offset).unwrap();
            }
            materializer.finish_file(&rel, file, &meta).unwrap();
        }
    }
    materializer.finish().unwrap();
}

fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root.join("b/c")).unwrap();
    std::fs::create_dir(root.join("a")).unwrap();
    std::fs::write(root.join("b/c/file"), b"hello").unwrap();
    std::fs::write(root.join("a-file"), vec![7u8; 100_000]).unwrap();
    std::fs::hard_link(root.join("a-file"), root.join("b/link")).unwrap();
    std::os::unix::fs::symlink("../a-file", root.join("b/symlink")).unwrap();
    nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o604)).unwrap();
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(20 << 20).unwrap();
    sparse.write_all_at(b"start", 0).unwrap();
    sparse.write_all_at(&[1u8; 8192], 10 << 20).unwrap();
    std::fs::set_permissions(root.join("b/c/file"), std::fs::Permissions::from_mode(0o4751)).unwrap();
    let _ = xattr_set(&root.join("a-file"), "user.note", b"kept");
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let c = metadata::c_path(path).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a live buffer, only read; checked.
    let result = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn the_walk_lists_the_root_first_and_every_entry_in_path_byte_order() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(dir.path());
    let paths: Vec<String> =
        walk(dir.path()).unwrap().into_iter().map(|(p, _)| String::from_utf8(p).unwrap()).collect();
    assert_eq!(paths[0], "");
    for (i, path) in paths.iter().enumerate().skip(1) {
        let parent = path.rsplit_once('/').map_or("", |(parent, _)| parent);
        assert!(paths[..i].iter().any(|p| p == parent), "{path} before its folder: {paths:?}");
    }
    // Path byte order: "a" (a folder), "a-file", then what "a" holds.
    assert_eq!(paths, ["", "a", "a-file", "b", "b/c", "b/c/file", "b/link", "b/symlink", "fifo", "sparse"]);
}

#[test]
fn a_folders_content_comes_after_the_siblings_that_sort_before_its_slash() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["x", "x/z"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
    }
    for file in ["x/y", "x/z/w", "x-1", "x.2", "x0", "w"] {
        std::fs::write(dir.path().join(file), b"").unwrap();
    }
    let paths: Vec<String> =
        walk(dir.path()).unwrap().into_iter().map(|(p, _)| String::from_utf8(p).unwrap()).collect();
    assert_eq!(paths, ["", "w", "x", "x-1", "x.2", "x/y", "x/z", "x/z/w", "x0"]);
}

#[test]
fn holes_are_found() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(dir.path());
    let file = std::fs::File::open(dir.path().join("sparse")).unwrap();
    let ranges = data_ranges(&file, 20 << 20).unwrap();
    let covered: u64 = ranges.iter().map(|r| r.1).sum();
    assert!(covered < 1 << 20, "a 20 MiB file with 2 small extents: {ranges:?}");
    assert_eq!(ranges.first().map(|r| r.0), Some(0));
    assert!(ranges.iter().any(|(offset, length)| *offset <= 10 << 20 && offset + length > 10 << 20), "{ranges:?}");
    let empty = std::fs::File::create(dir.path().join("empty")).unwrap();
    assert!(data_ranges(&empty, 0).unwrap().is_empty());
}

#[test]
fn a_tree_copied_through_the_materialiser_compares_equal_and_a_change_shows() {
    let from = tempfile::tempdir().unwrap();
    let to = tempfile::tempdir().unwrap();
    sample_tree(from.path());
    copy_tree(from.path(), to.path());
    let differences = compare_trees(from.path(), to.path()).unwrap();
    assert!(differences.is_empty(), "{differences:#?}");

    std::fs::OpenOptions::new().write(true).open(to.path().join("b/c/file")).unwrap().write_all_at(b"j", 0).unwrap();
    std::fs::set_permissions(to.path().join("a"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::remove_file(to.path().join("fifo")).unwrap();
    let differences = compare_trees(from.path(), to.path()).unwrap().join("\n");
    assert!(differences.contains("b/c/file: contents differ"), "{differences}");
    assert!(differences.contains("a: mode"), "{differences}");
    assert!(differences.contains("fifo: only in"), "{differences}");
}

#[test]
fn the_materialiser_never_writes_outside_its_root() {
    let to = tempfile::tempdir().unwrap();
    let mut materializer = Materializer::new(to.path()).unwrap();
    let meta = read_metadata(to.path(), b"").unwrap();
    let symlink = Metadata { kind: Kind::Symlink, symlink_target: Some(b"/etc".to_vec()), ..meta.clone() };
    materializer.create(b"escape", &symlink, None).unwrap();
    let file = Metadata { kind: Kind::File, ..meta.clone() };
    assert!(materializer.create(b"escape/passwd", &file, None).is_err(), "not through a symlink it made");
    assert!(materializer.create(b"../x", &file, None).is_err());
    assert!(materializer.create(b"nodir/x", &file, None).is_err(), "not into a folder it did not make");
    assert!(materializer.create(b"x", &file, Some(b"/etc/passwd")).is_err(), "no link to a file it did not make");
    let not_empty = tempfile::tempdir().unwrap();
    std::fs::write(not_empty.path().join("x"), b"").unwrap();
    assert!(Materializer::new(not_empty.path()).is_err());
}

#[test]
fn owners_and_device_nodes_round_trip_as_root() {
    if !crate::testkit::root_or_skip("owners_and_device_nodes_round_trip_as_root") {
        return;
    }
    let from = tempfile::tempdir().unwrap();
    let to = tempfile::tempdir().unwrap();
    sample_tree(from.path());
    std::os::unix::fs::chown(from.path().join("b/c/file"), Some(1234), Some(4321)).unwrap();
    std::os::unix::fs::lchown(from.path().join("b/symlink"), Some(55), Some(66)).unwrap();
    nix::sys::stat::mknod(
        &from.path().join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o620),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    xattr_set(&from.path().join("b"), "trusted.rollpoint", b"as root").unwrap();
    copy_tree(from.path(), to.path());
    let differences = compare_trees(from.path(), to.path()).unwrap();
    assert!(differences.is_empty(), "{differences:#?}");
}
