//! Root-only tests of the btrfs backend on real loop-device filesystems.
//! Without root they skip (or fail under `ROLLPOINT_REQUIRE_ROOT_TESTS=1`).
//! Each test owns its filesystem; dropping the fixture cleans up, also on a
//! failed assertion.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use crate::testkit::loop_btrfs::{btrfs_command, LoopBtrfs};
use crate::testkit::root_or_skip;

const MIB: u64 = 1024 * 1024;
const MIB_BYTES: usize = 1024 * 1024;

/// A 256 MiB btrfs with a subvolume `vol` holding a little data.
fn setup(test: &str) -> Option<(LoopBtrfs, BtrfsBackend, VolumeInfo)> {
    if !root_or_skip(test) {
        return None;
    }
    let fs = LoopBtrfs::create(256 * MIB).expect("loop btrfs");
    let vol = fs.create_subvolume("vol").expect("subvolume");
    std::fs::create_dir(vol.join("data")).expect("mkdir");
    std::fs::write(vol.join("data/file"), b"version 1").expect("write");
    let backend = BtrfsBackend::new();
    let info = backend.inspect(vol.to_str().expect("utf-8"), "db-1").expect("inspect");
    Some((fs, backend, info))
}

fn errno_of(result: std::io::Result<()>) -> Option<i32> {
    result.err().and_then(|err| err.raw_os_error())
}

/// The `Key: value` lines of `btrfs subvolume show`, trimmed.
fn subvolume_show(path: &str) -> Vec<(String, String)> {
    let text = btrfs_command(&["subvolume", "show", path]).expect("btrfs subvolume show");
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

fn show_field(show: &[(String, String)], key: &str) -> String {
    match show.iter().find(|(k, _)| k == key) {
        Some((_, value)) => value.clone(),
        None => panic!("no {key} in {show:?}"),
    }
}

#[test]
fn error_messages_name_the_path() {
    let err = BackendError::NotSubvolume { path: PathBuf::from("/srv/x") };
    assert_eq!(err.to_string(), "/srv/x: not a btrfs subvolume");
    let err = BackendError::io("snapshot", "/a/b", std::io::Error::from_raw_os_error(libc::ENOSPC));
    assert!(matches!(err, BackendError::NoSpace { op: "snapshot", .. }), "{err:?}");
    let err = BackendError::io("snapshot", "/a/b", std::io::Error::from_raw_os_error(libc::EDQUOT));
    assert!(matches!(err, BackendError::NoSpace { .. }), "{err:?}");
}

#[test]
fn inspect_rejects_what_it_cannot_snapshot_without_root() {
    let backend = BtrfsBackend::new();
    assert!(matches!(backend.inspect("relative/vol", "c"), Err(BackendError::NotAbsolute { .. })));
    assert!(matches!(backend.inspect("/no/such/volume/anywhere", "c"), Err(BackendError::NotFound { .. })));
    assert!(matches!(backend.inspect("/proc", "c"), Err(BackendError::NotBtrfs { .. })));
    assert!(matches!(backend.inspect("/proc", "../etc"), Err(BackendError::InvalidName { .. })));
    let tmp = std::env::temp_dir();
    let result = backend.inspect(tmp.to_str().expect("utf-8"), "c");
    assert!(matches!(result, Err(BackendError::NotBtrfs { .. } | BackendError::NotSubvolume { .. })), "{result:?}");
}

#[test]
fn inspect_accepts_a_subvolume_and_names_its_snapshot_folder() {
    let Some((fs, backend, info)) = setup("inspect_accepts_a_subvolume_and_names_its_snapshot_folder") else { return };
    let mount_point = fs.mount_point().canonicalize().expect("canonical");
    assert_eq!(info.path, mount_point.join("vol"));
    assert_eq!(info.snapshot_dir, mount_point.join(".rollpoint/db-1"));
    assert!(!mount_point.join(".rollpoint").exists(), "inspect must not create anything");
    assert_eq!(backend.location(&info, "snap-1"), mount_point.join(".rollpoint/db-1/snap-1").to_str().expect("utf-8"));

    // Through a symlink: the canonical path is what is kept.
    let link = mount_point.join("link");
    std::os::unix::fs::symlink(&info.path, &link).expect("symlink");
    let via_link = backend.inspect(link.to_str().expect("utf-8"), "db-1").expect("inspect via link");
    assert_eq!(via_link, info);

    // Nested subvolume, below a plain folder.
    std::fs::create_dir(mount_point.join("containers")).expect("mkdir");
    let nested = fs.create_subvolume("containers/web").expect("subvolume");
    let nested_info = backend.inspect(nested.to_str().expect("utf-8"), "web").expect("inspect nested");
    assert_eq!(nested_info.snapshot_dir, mount_point.join(".rollpoint/web"));
    backend.flush(&nested_info).expect("flush");
}

#[test]
fn inspect_rejects_plain_folders_files_and_snapshot_folders() {
    let Some((fs, backend, info)) = setup("inspect_rejects_plain_folders_files_and_snapshot_folders") else { return };
    let plain = info.path.join("data");
    let result = backend.inspect(plain.to_str().expect("utf-8"), "db-1");
    assert!(matches!(result, Err(BackendError::NotSubvolume { .. })), "{result:?}");
    let file = info.path.join("data/file");
    let result = backend.inspect(file.to_str().expect("utf-8"), "db-1");
    assert!(matches!(result, Err(BackendError::NotSubvolume { .. })), "{result:?}");
    let missing = info.path.join("missing");
    let result = backend.inspect(missing.to_str().expect("utf-8"), "db-1");
    assert!(matches!(result, Err(BackendError::NotFound { .. })), "{result:?}");
    let result = backend.inspect(info.path.to_str().expect("utf-8"), "");
    assert!(matches!(result, Err(BackendError::InvalidName { .. })), "{result:?}");

    // A snapshot cannot itself be registered as a volume.
    let snapshot = backend.location(&info, "snap-1");
    backend.create_snapshot(info.path.to_str().expect("utf-8"), &snapshot, false).expect("snapshot");
    let result = backend.inspect(&snapshot, "db-2");
    assert!(matches!(result, Err(BackendError::InsideSnapshotFolder { .. })), "{result:?}");
    drop(fs);
}

#[test]
fn inspect_with_a_subvol_mount_puts_snapshots_under_that_mount_point() {
    let Some((mut fs, backend, _)) = setup("inspect_with_a_subvol_mount_puts_snapshots_under_that_mount_point") else {
        return;
    };
    fs.create_subvolume("data").expect("subvolume");
    fs.create_subvolume("data/vol").expect("subvolume");
    let second = fs.mount_again("subvol=data").expect("mount subvol=data").canonicalize().expect("canonical");
    let info = backend.inspect(second.join("vol").to_str().expect("utf-8"), "c").expect("inspect");
    assert_eq!(info.snapshot_dir, second.join(".rollpoint/c"));
    let location = backend.location(&info, "s");
    backend.create_snapshot(info.path.to_str().expect("utf-8"), &location, true).expect("snapshot");
    // Seen from the main mount, it is inside the `data` subvolume.
    assert!(backend
        .snapshot_exists(fs.mount_point().join("data/.rollpoint/c/s").to_str().expect("utf-8"))
        .expect("exists"));
    assert_eq!(backend.list_snapshots(&info).expect("list"), vec![location]);
}

#[test]
fn read_only_snapshot_keeps_the_content_of_its_moment() {
    let Some((_fs, backend, info)) = setup("read_only_snapshot_keeps_the_content_of_its_moment") else { return };
    let source = info.path.to_str().expect("utf-8");
    let location = backend.location(&info, "snap-1");
    assert!(!backend.snapshot_exists(&location).expect("exists"));

    let details = backend.create_snapshot(source, &location, true).expect("snapshot");
    assert_eq!(details.location, location);
    assert!(details.read_only);
    assert_eq!(details.uuid.len(), 36);
    assert!(details.generation > 0);
    assert!(backend.snapshot_exists(&location).expect("exists"));

    // The folders are the daemon's own.
    let mode = std::fs::metadata(&info.snapshot_dir).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);

    // Cross-check with the btrfs tool.
    let show = subvolume_show(&location);
    assert_eq!(show_field(&show, "UUID"), details.uuid);
    assert_eq!(show_field(&show, "Flags"), "readonly");
    assert_eq!(show_field(&show, "Generation").parse::<u64>().expect("number"), details.generation);
    let source_show = subvolume_show(source);
    assert_eq!(show_field(&show, "Parent UUID"), show_field(&source_show, "UUID"));

    // Read-only: nothing can be written, not even to an existing file.
    let snap = Path::new(&location);
    assert_eq!(errno_of(std::fs::write(snap.join("new"), b"x")), Some(libc::EROFS));
    assert_eq!(errno_of(std::fs::write(snap.join("data/file"), b"x")), Some(libc::EROFS));

    // Later changes to the source do not reach it.
    std::fs::write(info.path.join("data/file"), b"version 2").expect("write");
    std::fs::write(info.path.join("data/other"), b"new").expect("write");
    assert_eq!(std::fs::read(snap.join("data/file")).expect("read"), b"version 1");
    assert!(!snap.join("data/other").exists());

    // The location is taken now.
    let again = backend.create_snapshot(source, &location, true);
    assert!(matches!(again, Err(BackendError::AlreadyExists { .. })), "{again:?}");
    // Only subvolumes can be snapshotted.
    let result =
        backend.create_snapshot(info.path.join("data").to_str().expect("utf-8"), &backend.location(&info, "x"), true);
    assert!(matches!(result, Err(BackendError::NotSubvolume { .. })), "{result:?}");
    let result = backend.create_snapshot("/proc", &backend.location(&info, "x"), true);
    assert!(matches!(result, Err(BackendError::NotBtrfs { .. })), "{result:?}");
    let result = backend.create_snapshot(source, &format!("{}/.", info.snapshot_dir.display()), true);
    assert!(matches!(result, Err(BackendError::InvalidName { .. })), "{result:?}");
}

#[test]
fn writable_snapshot_of_a_snapshot_rename_and_flags() {
    let Some((_fs, backend, info)) = setup("writable_snapshot_of_a_snapshot_rename_and_flags") else { return };
    let source = info.path.to_str().expect("utf-8");
    let first = backend.location(&info, "snap-1");
    let first_details = backend.create_snapshot(source, &first, true).expect("snapshot");

    let second = backend.location(&info, "snap-1-rw");
    let details = backend.create_snapshot(&first, &second, false).expect("snapshot of snapshot");
    assert!(!details.read_only);
    assert_ne!(details.uuid, first_details.uuid);
    std::fs::write(Path::new(&second).join("data/file"), b"changed").expect("writable");
    assert_eq!(show_field(&subvolume_show(&second), "Parent UUID"), first_details.uuid);

    // Rename: moves, refuses to overwrite, reports a missing source.
    let renamed = backend.location(&info, "renamed");
    backend.rename(&second, &renamed).expect("rename");
    assert!(!backend.snapshot_exists(&second).expect("exists"));
    assert!(backend.snapshot_exists(&renamed).expect("exists"));
    assert_eq!(std::fs::read(Path::new(&renamed).join("data/file")).expect("read"), b"changed");
    let result = backend.rename(&renamed, &first);
    assert!(matches!(result, Err(BackendError::AlreadyExists { .. })), "{result:?}");
    let result = backend.rename(&second, &backend.location(&info, "other"));
    assert!(matches!(result, Err(BackendError::NotFound { .. })), "{result:?}");
    // A read-only snapshot can be renamed within its folder, but not moved
    // to another one: the VFS needs write access to a directory to change
    // its `..` (vfs_rename), and the subvolume is read-only.
    let same_folder = backend.location(&info, "snap-1-renamed");
    backend.rename(&first, &same_folder).expect("rename read-only in its folder");
    backend.rename(&same_folder, &first).expect("rename back");
    let moved = info.path.parent().expect("parent").join("moved");
    let result = backend.rename(&first, moved.to_str().expect("utf-8"));
    match &result {
        Err(BackendError::Io { source, .. }) if source.raw_os_error() == Some(libc::EROFS) => {}
        other => panic!("expected EROFS, got {other:?}"),
    }
    // Once writable it can move anywhere on the filesystem, and back.
    backend.set_read_only(&first, false).expect("make writable");
    backend.rename(&first, moved.to_str().expect("utf-8")).expect("move out of the folder");
    backend.rename(moved.to_str().expect("utf-8"), &first).expect("move back");
    backend.set_read_only(&first, true).expect("make read-only again");

    // set_read_only both ways, idempotent.
    backend.set_read_only(&renamed, true).expect("make read-only");
    backend.set_read_only(&renamed, true).expect("again");
    assert_eq!(errno_of(std::fs::write(Path::new(&renamed).join("data/file"), b"x")), Some(libc::EROFS));
    assert_eq!(show_field(&subvolume_show(&renamed), "Flags"), "readonly");
    backend.set_read_only(&renamed, false).expect("make writable");
    backend.set_read_only(&renamed, false).expect("again");
    std::fs::write(Path::new(&renamed).join("data/file"), b"writable again").expect("write");
    assert_eq!(show_field(&subvolume_show(&renamed), "Flags"), "-");
    let result = backend.set_read_only(info.path.join("data").to_str().expect("utf-8"), true);
    assert!(matches!(result, Err(BackendError::NotSubvolume { .. })), "{result:?}");
    let result = backend.set_read_only(&backend.location(&info, "missing"), true);
    assert!(matches!(result, Err(BackendError::NotFound { .. })), "{result:?}");
}

#[test]
fn delete_and_list_snapshots() {
    let Some((fs, backend, info)) = setup("delete_and_list_snapshots") else { return };
    let source = info.path.to_str().expect("utf-8");
    assert_eq!(backend.list_snapshots(&info).expect("list"), Vec::<String>::new());
    // Deleting from a folder that does not exist yet.
    assert!(!backend.delete_snapshot(&backend.location(&info, "nothing")).expect("delete"));

    let b = backend.location(&info, "snap-b");
    let a = backend.location(&info, "snap-a");
    backend.create_snapshot(source, &b, true).expect("snapshot");
    backend.create_snapshot(source, &a, false).expect("snapshot");
    // Other entries in the folder are not snapshots.
    std::fs::create_dir(info.snapshot_dir.join("plain-dir")).expect("mkdir");
    std::fs::write(info.snapshot_dir.join("a-file"), b"x").expect("write");
    std::os::unix::fs::symlink(&a, info.snapshot_dir.join("a-link")).expect("symlink");
    assert_eq!(backend.list_snapshots(&info).expect("list"), vec![a.clone(), b.clone()]);
    assert!(!backend.snapshot_exists(info.snapshot_dir.join("plain-dir").to_str().expect("utf-8")).expect("exists"));
    assert!(!backend.snapshot_exists(info.snapshot_dir.join("a-file/below").to_str().expect("utf-8")).expect("exists"));

    // A read-only snapshot is deleted like any other, once.
    assert!(backend.delete_snapshot(&b).expect("delete read-only"));
    assert!(!backend.delete_snapshot(&b).expect("delete again"));
    assert!(!Path::new(&b).exists());
    assert!(backend.delete_snapshot(&a).expect("delete writable"));
    assert_eq!(backend.list_snapshots(&info).expect("list"), Vec::<String>::new());

    // Never deletes what is not a subvolume.
    let plain = info.snapshot_dir.join("plain-dir");
    let result = backend.delete_snapshot(plain.to_str().expect("utf-8"));
    assert!(matches!(result, Err(BackendError::NotSubvolume { .. })), "{result:?}");
    assert!(plain.exists());
    let result = backend.delete_snapshot(info.snapshot_dir.join("a-link").to_str().expect("utf-8"));
    assert!(matches!(result, Err(BackendError::NotSubvolume { .. })), "{result:?}");

    // A subvolume that holds another one cannot be deleted by this call.
    let outer = backend.location(&info, "outer");
    backend.create_snapshot(source, &outer, false).expect("snapshot");
    btrfs_command(&["subvolume", "create", &format!("{outer}/inner")]).expect("nested subvolume");
    let result = backend.delete_snapshot(&outer);
    match &result {
        Err(BackendError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOTEMPTY) => {}
        other => panic!("expected ENOTEMPTY, got {other:?}"),
    }
    eprintln!("delete of a subvolume holding a nested one: {}", result.expect_err("error"));
    assert!(backend.delete_snapshot(&format!("{outer}/inner")).expect("delete inner"));
    assert!(backend.delete_snapshot(&outer).expect("delete outer"));
    drop(fs);
}

/// Fills a small mixed-mode filesystem, then tries a snapshot: it either
/// succeeds (a snapshot needs only a few metadata blocks, and btrfs keeps a
/// global reserve for them) or fails with `NoSpace`; nothing else.
#[test]
fn full_filesystem_snapshot_is_clean() {
    if !root_or_skip("full_filesystem_snapshot_is_clean") {
        return;
    }
    let fs = LoopBtrfs::create_with(128 * MIB, &["-M"], "").expect("loop btrfs");
    let vol = fs.create_subvolume("vol").expect("subvolume");
    let backend = BtrfsBackend::new();
    let info = backend.inspect(vol.to_str().expect("utf-8"), "c").expect("inspect");
    // Make the folder first, so that what runs out of space is the ioctl.
    std::fs::create_dir_all(&info.snapshot_dir).expect("snapshot folder");

    // Fill with data until the kernel says ENOSPC, then with small files
    // until even those fail (metadata).
    let chunk = vec![0x5a_u8; MIB_BYTES];
    let mut file = std::fs::File::create(vol.join("fill")).expect("create");
    let mut written = 0_u64;
    let fill_error = loop {
        match file.write_all(&chunk).and_then(|()| file.sync_data()) {
            Ok(()) => written += MIB,
            Err(err) => break err,
        }
    };
    assert_eq!(fill_error.raw_os_error(), Some(libc::ENOSPC), "{fill_error}");
    drop(file);
    let mut small_files = 0;
    for i in 0..100_000 {
        if std::fs::write(vol.join(format!("small-{i}")), b"x").is_err() {
            break;
        }
        small_files += 1;
    }
    nix::unistd::sync();
    eprintln!("filled {written} bytes of data and {small_files} small files");

    let mut outcomes = Vec::new();
    for n in 0..20 {
        let location = backend.location(&info, &format!("snap-{n}"));
        match backend.create_snapshot(info.path.to_str().expect("utf-8"), &location, true) {
            Ok(details) => outcomes.push(format!("ok({})", details.generation)),
            Err(BackendError::NoSpace { op, .. }) => {
                // A failed snapshot leaves nothing behind.
                assert!(!backend.snapshot_exists(&location).expect("exists"));
                assert!(!Path::new(&location).exists());
                outcomes.push(format!("NoSpace({op})"));
                break;
            }
            Err(other) => panic!("snapshot on a full filesystem: {other:?}"),
        }
    }
    eprintln!("snapshots on a full filesystem: {outcomes:?}");
    // Whatever happened, the filesystem is consistent and still usable.
    assert!(backend.list_snapshots(&info).expect("list").len() <= outcomes.len());
    std::fs::remove_file(vol.join("fill")).expect("free space");
    nix::unistd::sync();
    let location = backend.location(&info, "after");
    let mut result = backend.create_snapshot(info.path.to_str().expect("utf-8"), &location, true);
    for _ in 0..10 {
        // Freed space comes back after the transaction that freed it commits.
        if !matches!(result, Err(BackendError::NoSpace { .. })) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        result = backend.create_snapshot(info.path.to_str().expect("utf-8"), &location, true);
    }
    result.expect("snapshot after freeing space");
}

/// Not a benchmark, a measurement: prints how long the snapshot ioctl takes
/// on a flushed volume and on one with dirty data (run with --nocapture).
#[test]
fn snapshot_timing() {
    if !root_or_skip("snapshot_timing") {
        return;
    }
    let fs = LoopBtrfs::create(1024 * MIB).expect("loop btrfs");
    let vol = fs.create_subvolume("vol").expect("subvolume");
    std::fs::create_dir(vol.join("data")).expect("mkdir");
    let backend = BtrfsBackend::new();
    let info = backend.inspect(vol.to_str().expect("utf-8"), "db-1").expect("inspect");
    let source = info.path.to_str().expect("utf-8");
    for i in 0..200_u8 {
        std::fs::write(info.path.join(format!("data/f{i}")), vec![i; 64 * 1024]).expect("write");
    }
    let report = |label: &str, dirty: bool| {
        let mut times = Vec::new();
        for n in 0..8_u8 {
            if dirty {
                std::fs::write(info.path.join("data/dirty"), vec![n; 32 * MIB_BYTES]).expect("write");
            } else {
                backend.flush(&info).expect("flush");
            }
            let location = backend.location(&info, &format!("{label}-{n}"));
            let started = Instant::now();
            backend.create_snapshot(source, &location, true).expect("snapshot");
            times.push(started.elapsed());
        }
        times.sort();
        eprintln!(
            "snapshot ({label}): min {:?} median {:?} max {:?} over {} runs",
            times[0],
            times[times.len() / 2],
            times[times.len() - 1],
            times.len()
        );
        times[times.len() / 2]
    };
    let flushed = report("flushed", false);
    let dirty = report("dirty-32MiB", true);
    assert!(flushed < Duration::from_secs(5) && dirty < Duration::from_secs(30));
}
