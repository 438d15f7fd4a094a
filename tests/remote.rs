//! Off-host copies end to end, on real daemons, real btrfs filesystems on
//! loop devices and real cgroups:
//!
//! - export to a `file://` remote; change about 1% of the files; export
//!   again (the filesystem says what changed; about that much is uploaded);
//!   an unchanged container exports and uploads nothing new;
//! - a second daemon with its own store and state imports onto a second
//!   btrfs and onto ext4: the trees match byte for byte with every piece of
//!   metadata (owners, modes, times, xattrs, hard links, symlinks, device
//!   nodes, holes);
//! - restore from the remote on that second host (`RestoreSnapshot` with
//!   `remote`), and its undo;
//! - verify passes; a flipped byte in a pack is named by verify, with the
//!   snapshots it touches, and an import refuses it, leaving nothing behind;
//! - an import onto a full filesystem fails clearly and registers nothing.
//!
//! The S3 cases (SeaweedFS) are in tests/remote_s3.rs. Root only.

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use common::*;
use rollpoint::api::client::Clients;
use rollpoint::api::proto;
use rollpoint::testkit::remote::{export, import, make_mixed_tree, pseudo_random, ExtFs, RemoteHost};
use rollpoint::testkit::root_or_skip;
use tonic::Code;

fn file_remote(name: &str, dir: &Path) -> String {
    format!("[remotes.{name}]\nurl = \"file://{}\"\n", dir.display())
}

/// Changes about 1% of a tree made by `make_mixed_tree`: rewrites the middle
/// of 2 files, appends to one, deletes one, renames a folder, adds a file.
/// Returns the bytes of file data written.
fn change_one_percent(root: &Path) -> u64 {
    let mut written = 0;
    for name in ["data/d00/f000", "data/d01/f003"] {
        let path = root.join(name);
        let mut contents = std::fs::read(&path).unwrap();
        let middle = contents.len() / 2;
        let patch = pseudo_random(100, 99);
        contents[middle..middle + 100].copy_from_slice(&patch);
        std::fs::write(&path, contents).unwrap();
        written += 100;
    }
    let appended = pseudo_random(50_000, 7);
    let mut file = std::fs::OpenOptions::new().append(true).open(root.join("data/d02/f005")).unwrap();
    std::io::Write::write_all(&mut file, &appended).unwrap();
    written += appended.len() as u64;
    std::fs::remove_file(root.join("data/d03/f001")).unwrap();
    std::fs::rename(root.join("data/d04"), root.join("data/d04-renamed")).unwrap();
    let added = pseudo_random(30_000, 8);
    std::fs::create_dir(root.join("new-dir")).unwrap();
    std::fs::write(root.join("new-dir/new-file"), &added).unwrap();
    // Metadata only, links and a file renamed over another.
    std::fs::hard_link(root.join("data/d05/f000"), root.join("new-dir/second-name")).unwrap();
    std::fs::set_permissions(root.join("data/d06/f000"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(root.join("data/d06/f001"), Some(2000), Some(2000)).unwrap();
    std::fs::remove_file(root.join("link-to-f001")).unwrap();
    std::os::unix::fs::symlink("data/d00/f009", root.join("link-to-f001")).unwrap();
    std::fs::rename(root.join("data/d07/f000"), root.join("data/d07/f001")).unwrap();
    std::fs::OpenOptions::new().write(true).open(root.join("data/d08/f000")).unwrap().set_len(10).unwrap();
    std::fs::remove_dir_all(root.join("data/d09")).unwrap();
    written + added.len() as u64
}

fn assert_trees_equal(a: &Path, b: &Path, what: &str) {
    let differences = rollpoint::fstree::compare_trees(a, b).expect("compare trees");
    assert!(differences.is_empty(), "{what}: {} differences:\n{}", differences.len(), differences.join("\n"));
}

fn location(snapshot: &proto::Snapshot) -> PathBuf {
    PathBuf::from(&snapshot.location)
}

async fn host(prefix: &str, config: &str) -> RemoteHost {
    RemoteHost::start(daemon_binary(), prefix, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_incrementally_then_import_and_restore_on_another_host() {
    if !root_or_skip("export_incrementally_then_import_and_restore_on_another_host") {
        return;
    }
    let repository = tempfile::tempdir().unwrap();
    let config = file_remote("here", &repository.path().join("repo"));
    let mut first = host("rp-remote-a", &config).await;
    make_mixed_tree(&first.volume, 300);
    register(&mut first.clients, "app", first.cgroup.relative_name(), &first.volume).await.expect("register");

    // Nothing is there yet: a clear error naming what to do.
    let status = export(&mut first.clients, "app", "none", "here").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let s1 = create_snapshot(&mut first.clients, "app", "s1", "").await.unwrap();
    let status = export(&mut first.clients, "app", "s1", "here").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("remote init here"), "{}", status.message());
    let status = export(&mut first.clients, "app", "s1", "elsewhere").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("remote: "), "{}", status.message());
    assert!(status.message().contains("elsewhere"), "{}", status.message());

    let init = first
        .clients
        .remotes
        .init_remote(proto::InitRemoteRequest { remote: "here".into() })
        .await
        .expect("init")
        .into_inner();
    assert!(init.key_file_created && Path::new(&init.key_file).exists());
    assert_eq!(std::fs::metadata(&init.key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let again = first.clients.remotes.init_remote(proto::InitRemoteRequest { remote: "here".into() }).await;
    assert_eq!(again.unwrap_err().code(), Code::AlreadyExists);

    let full = export(&mut first.clients, "app", "s1", "here").await.expect("first export");
    let full_snapshot = full.snapshot.clone().unwrap();
    println!(
        "first export: {} of {} files added, method {}, {:?}",
        full_snapshot.added_bytes, full_snapshot.files, full.method, full.duration
    );
    assert_eq!(full.method, "full");
    assert!(full_snapshot.added_bytes > 0 && full_snapshot.files > 300, "{full_snapshot:?}");

    let changed = change_one_percent(&first.volume);
    let s2 = create_snapshot(&mut first.clients, "app", "s2", "rollback-point").await.unwrap();
    let incremental = export(&mut first.clients, "app", "rollback-point", "here").await.expect("second export");
    let incremental_snapshot = incremental.snapshot.clone().unwrap();
    println!(
        "second export: {} changed, {} read, {} added, method {}",
        changed, incremental.bytes_read, incremental_snapshot.added_bytes, incremental.method
    );
    assert_eq!(incremental.method, "changes from the filesystem");
    assert_eq!(incremental_snapshot.parent_id, full_snapshot.id);
    // Only the changed files are read (whole, as they are small here), and
    // about what changed is uploaded: their chunks and a few tree chunks.
    assert!(incremental.bytes_read < 1_000_000, "read {}", incremental.bytes_read);
    assert!(incremental_snapshot.added_bytes < 1_000_000, "added {}", incremental_snapshot.added_bytes);

    create_snapshot(&mut first.clients, "app", "s3", "").await.unwrap();
    let unchanged = export(&mut first.clients, "app", "s3", "here").await.expect("unchanged export");
    let unchanged_snapshot = unchanged.snapshot.clone().unwrap();
    assert_eq!(unchanged.bytes_read, 0);
    assert_eq!(unchanged_snapshot.added_bytes, 0, "an unchanged container uploads no new chunk");
    let repeat = export(&mut first.clients, "app", "s3", "here").await.expect("repeat");
    assert!(repeat.already_exported);

    let listed = first
        .clients
        .remotes
        .list_remote_snapshots(proto::ListRemoteSnapshotsRequest { remote: "here".into(), container: "app".into() })
        .await
        .unwrap()
        .into_inner()
        .snapshots;
    assert_eq!(listed.iter().map(|s| s.snapshot.as_str()).collect::<Vec<_>>(), ["s1", "s2", "s3"]);
    let events = list_events(&mut first.clients, "app", "").await;
    assert_eq!(events.iter().filter(|e| e.kind == "snapshot.exported" && e.outcome == "ok").count(), 4);

    // Another host: its own daemon, store and filesystems; the key file copied.
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("here.key");
    std::fs::copy(&init.key_file, &key_file).unwrap();
    let second_config = format!("{config}key_file = \"{}\"\n", key_file.display());
    let mut second = host("rp-remote-b", &second_config).await;

    let onto_btrfs = second.fs.mount_point().join("imported-s2");
    let imported =
        import(&mut second.clients, "app", "s2", "here", Some(&onto_btrfs)).await.expect("import onto btrfs");
    assert!(imported.snapshot.is_none());
    assert!(is_subvolume(&onto_btrfs), "a new subvolume on btrfs");
    assert_trees_equal(&location(&s2), &onto_btrfs, "s2 imported onto btrfs");

    let ext4 = ExtFs::create(512 << 20).expect("ext4 loop filesystem");
    let onto_ext4 = ext4.mount_point().join("imported-s1");
    import(&mut second.clients, "app", &full_snapshot.id, "here", Some(&onto_ext4)).await.expect("import onto ext4");
    assert_trees_equal(&location(&s1), &onto_ext4, "s1 imported onto ext4");

    // Restore on the second host straight from the remote: the snapshot is
    // imported (origin import), the container restored, and it can be undone.
    std::fs::write(second.volume.join("local-state"), b"before the restore").unwrap();
    register(&mut second.clients, "app", second.cgroup.relative_name(), &second.volume).await.expect("register");
    let restored = second
        .clients
        .snapshots
        .restore_snapshot(proto::RestoreSnapshotRequest {
            container: "app".into(),
            snapshot: "rollback-point".into(),
            remote: "here".into(),
            ..Default::default()
        })
        .await
        .expect("restore from the remote")
        .into_inner();
    let restored_snapshot = restored.restored.clone().unwrap();
    assert_eq!(restored_snapshot.name, "s2");
    assert_eq!(restored_snapshot.origin, proto::SnapshotOrigin::Import as i32);
    assert_trees_equal(&location(&s2), &second.volume, "the volume after the restore");
    let undo = restore(&mut second.clients, "app", &restored.pre_restore_snapshot, "").await.unwrap();
    assert!(undo.restored.is_some());
    assert_eq!(std::fs::read(second.volume.join("local-state")).unwrap(), b"before the restore");

    // No exported snapshot left on disk: the next export walks the tree and
    // compares it with the parent export (inode, size, times), reading only
    // what changed. Names that sort around a folder's "/" test the walk's
    // order (the tree stream is in path byte order).
    for name in ["s1", "s2", "s3"] {
        let request = proto::DeleteSnapshotRequest { container: "app".into(), snapshot: name.into() };
        first.clients.snapshots.delete_snapshot(request).await.expect("delete");
    }
    std::fs::create_dir(first.volume.join("data/d05/sub")).unwrap();
    for (name, seed) in [("data/d05/sub/inner", 41), ("data/d05-x", 42), ("data/d05.y", 43), ("data/d050", 44)] {
        std::fs::write(first.volume.join(name), pseudo_random(20_000, seed)).unwrap();
    }
    std::fs::write(first.volume.join("data/d00/f001"), pseudo_random(10_000, 45)).unwrap();
    let s4 = create_snapshot(&mut first.clients, "app", "s4", "").await.unwrap();
    let compared = export(&mut first.clients, "app", "s4", "here").await.expect("export without a local parent");
    assert_eq!(compared.method, "compared with the parent export");
    assert_eq!(compared.snapshot.as_ref().unwrap().parent_id, unchanged_snapshot.id);
    assert!(compared.bytes_read < 1_000_000, "read {}", compared.bytes_read);
    let onto_btrfs_s4 = second.fs.mount_point().join("imported-s4");
    import(&mut second.clients, "app", "s4", "here", Some(&onto_btrfs_s4)).await.expect("import s4");
    assert_trees_equal(&location(&s4), &onto_btrfs_s4, "s4 (compared with its parent) imported");

    // Verify, then damage one byte of one pack.
    let verified = first
        .clients
        .remotes
        .verify_remote(proto::VerifyRemoteRequest { remote: "here".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.problems.is_empty(), "{:?}", verified.problems);
    assert_eq!(verified.snapshots, 4);
    let pack = largest_pack(&repository.path().join("repo"));
    flip_byte(&pack);
    let damaged = first
        .clients
        .remotes
        .verify_remote(proto::VerifyRemoteRequest { remote: "here".into() })
        .await
        .unwrap()
        .into_inner();
    let pack_name = pack.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(damaged.problems.iter().any(|p| p.contains(&pack_name)), "{:?}", damaged.problems);
    assert!(!damaged.damaged_snapshots.is_empty(), "names the snapshots it touches");
    assert!(damaged.damaged_snapshots.iter().all(|s| s.starts_with("app/s")), "{:?}", damaged.damaged_snapshots);
    let refused = onto_btrfs.with_file_name("imported-damaged");
    let status = import(&mut second.clients, "app", "s1", "here", Some(&refused)).await.unwrap_err();
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(!refused.exists(), "nothing is left of a refused import");

    drop(ext4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_onto_a_full_filesystem_fails_clearly_and_registers_nothing() {
    if !root_or_skip("an_import_onto_a_full_filesystem_fails_clearly_and_registers_nothing") {
        return;
    }
    let repository = tempfile::tempdir().unwrap();
    let config = file_remote("here", &repository.path().join("repo"));
    let mut origin = host("rp-remote-full-a", &config).await;
    // 60 MB of data that does not compress, for a 40 MB filesystem.
    for i in 0..6 {
        std::fs::write(origin.volume.join(format!("big-{i}")), pseudo_random(10_000_000, i)).unwrap();
    }
    register(&mut origin.clients, "app", origin.cgroup.relative_name(), &origin.volume).await.unwrap();
    create_snapshot(&mut origin.clients, "app", "big", "").await.unwrap();
    origin.clients.remotes.init_remote(proto::InitRemoteRequest { remote: "here".into() }).await.unwrap();
    export(&mut origin.clients, "app", "big", "here").await.unwrap();

    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("here.key");
    std::fs::copy(origin.daemon.state_dir().join("keys/here.key"), &key_file).unwrap();
    let mut small = host("rp-remote-full-b", &format!("{config}key_file = \"{}\"\n", key_file.display())).await;
    let tiny = ExtFs::create(40 << 20).expect("a small ext4");
    let target = tiny.mount_point().join("big");
    let status = import(&mut small.clients, "app", "big", "here", Some(&target)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(!target.exists(), "the half-written tree is removed");

    // As a snapshot of a registered container on a full btrfs: nothing recorded.
    register(&mut small.clients, "app", small.cgroup.relative_name(), &small.volume).await.unwrap();
    fill_up(small.fs.mount_point());
    let status = import(&mut small.clients, "app", "big", "here", None).await.unwrap_err();
    assert!(matches!(status.code(), Code::ResourceExhausted), "{status:?}");
    assert!(list_snapshots(&mut small.clients, "app").await.is_empty(), "no snapshot recorded");
    drop(tiny);
}

/// Leaves a filesystem with almost no free space: files of shrinking sizes
/// until none fits.
fn fill_up(mount: &Path) {
    let mut size: u64 = 256 << 20;
    let mut n = 0;
    while size >= 64 << 10 {
        let file = std::fs::File::create(mount.join(format!("filler-{n}"))).unwrap();
        if nix::fcntl::fallocate(&file, nix::fcntl::FallocateFlags::empty(), 0, size as i64).is_err() {
            size /= 2;
        }
        n += 1;
    }
}

fn largest_pack(repository: &Path) -> PathBuf {
    let mut packs = Vec::new();
    for prefix in std::fs::read_dir(repository.join("data")).unwrap() {
        for pack in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            let path = pack.unwrap().path();
            packs.push((std::fs::metadata(&path).unwrap().size(), path));
        }
    }
    packs.sort();
    packs.pop().expect("a pack").1
}

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

async fn run_entry_with_export(clients: &mut Clients, id: &str, remote: &str) -> proto::RunEntryResponse {
    let entry = proto::Entry {
        id: id.into(),
        schedule: "0 0 1 1 *".into(),
        action: Some(proto::entry::Action::Snapshot(proto::SnapshotAction {
            container: "app".into(),
            export_to: remote.into(),
            ..Default::default()
        })),
        enabled: Some(true),
        ..Default::default()
    };
    clients
        .schedules
        .create_entry(proto::CreateEntryRequest { user: "root".into(), entry: Some(entry) })
        .await
        .expect("CreateEntry");
    let name = format!("users/root/entries/{id}");
    clients.schedules.run_entry(proto::RunEntryRequest { name }).await.expect("RunEntry").into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_exports_and_a_prune_that_collects_in_two_phases() {
    if !root_or_skip("scheduled_exports_and_a_prune_that_collects_in_two_phases") {
        return;
    }
    let repository = tempfile::tempdir().unwrap();
    // "broken" points at a file, not a folder: every export to it fails.
    let broken = repository.path().join("not-a-folder");
    std::fs::write(&broken, b"").unwrap();
    let config = format!("{}{}", file_remote("here", &repository.path().join("repo")), file_remote("broken", &broken));
    let mut host = host("rp-remote-prune", &config).await;
    make_mixed_tree(&host.volume, 50);
    register(&mut host.clients, "app", host.cgroup.relative_name(), &host.volume).await.unwrap();
    host.clients.remotes.init_remote(proto::InitRemoteRequest { remote: "here".into() }).await.unwrap();

    // A scheduled snapshot lands off-host too; a failed export is recorded
    // and leaves the local snapshot.
    let run = run_entry_with_export(&mut host.clients, "nightly", "here").await;
    assert_eq!(run.outcome, "ok", "{}", run.detail);
    assert!(run.detail.contains("exported to here"), "{}", run.detail);
    let failed = run_entry_with_export(&mut host.clients, "to-broken", "broken").await;
    assert_eq!(failed.outcome, "failed");
    assert!(failed.detail.contains("(kept here)"), "{}", failed.detail);
    let kept = failed.snapshot.expect("the snapshot is in the reply");
    assert!(Path::new(&kept.location).exists());
    let events = list_events(&mut host.clients, "app", "").await;
    assert!(events.iter().any(|e| e.kind == "snapshot.exported" && e.outcome == "failed"));

    // Three exports with data that only the oldest holds.
    for (i, name) in ["old", "middle", "new"].iter().enumerate() {
        std::fs::write(host.volume.join(format!("only-in-{name}")), pseudo_random(2_000_000, 50 + i as u64)).unwrap();
        if i > 0 {
            std::fs::remove_file(host.volume.join(format!("only-in-{}", ["old", "middle", "new"][i - 1]))).unwrap();
        }
        create_snapshot(&mut host.clients, "app", name, "").await.unwrap();
        export(&mut host.clients, "app", name, "here").await.unwrap();
    }
    let prune = |dry_run: bool| proto::PruneRemoteRequest {
        remote: "here".into(),
        keep_last: Some(2),
        grace_seconds: 1,
        dry_run,
        ..Default::default()
    };
    let dry = host.clients.remotes.prune_remote(prune(true)).await.unwrap().into_inner();
    assert_eq!(dry.forgotten.len(), 2, "{dry:?}");
    let listed = |clients: &mut Clients| {
        let request = proto::ListRemoteSnapshotsRequest { remote: "here".into(), container: "app".into() };
        let mut clients = clients.clone();
        async move { clients.remotes.list_remote_snapshots(request).await.unwrap().into_inner().snapshots.len() }
    };
    assert_eq!(listed(&mut host.clients).await, 4, "a dry run changes nothing");

    let first = host.clients.remotes.prune_remote(prune(false)).await.unwrap().into_inner();
    assert_eq!(first.forgotten.len(), 2);
    assert!(first.marked > 0 && first.deleted_packs == 0, "phase 1 only marks: {first:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = host.clients.remotes.prune_remote(prune(false)).await.unwrap().into_inner();
    assert!(second.deleted_packs > 0 && second.freed_bytes > 2_000_000, "phase 2 deletes: {second:?}");
    assert_eq!(listed(&mut host.clients).await, 2);
    let verified = host
        .clients
        .remotes
        .verify_remote(proto::VerifyRemoteRequest { remote: "here".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.problems.is_empty(), "{:?}", verified.problems);
    let target = host.fs.mount_point().join("new-back");
    import(&mut host.clients, "app", "new", "here", Some(&target)).await.expect("what is kept still restores");
    assert!(target.join("only-in-new").exists());
}
