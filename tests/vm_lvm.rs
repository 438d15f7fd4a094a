//! The LVM thin-pool backend against a real thin pool. This machine's kernel
//! has no device-mapper, so these tests run inside a virtual machine:
//! `tests/vm/run` boots one (Debian's kernel, a busybox initramfs with lvm2)
//! with a scratch disk at /dev/vda and runs this binary there with
//! `ROLLPOINT_IN_VM=1`. Anywhere else every test says it is skipped and
//! passes, so a plain `cargo test` is unaffected.
//!
//! Each test makes its own thin pool and ext4 thin volume in the VG `vm`
//! on /dev/vda, mounted under /mnt, and drives the engine with the real
//! store, cgroup freezer and [`LvmBackend`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use rollpoint::backend::lvm::{names, LvmBackend};
use rollpoint::backend::{Backend, BackendError};
use rollpoint::engine::{CreateRequest, Engine, EngineConfig, EngineError, RegisterRequest, SystemClock};
use rollpoint::freezer::CgroupFreezer;
use rollpoint::lifecycle::HostLifecycle;
use rollpoint::store::{SnapshotOrigin, SnapshotState, Store};
use rollpoint::testkit::cgroup::TestCgroup;

const VG: &str = "vm";
const DISK: &str = "/dev/vda";
const LVM: &str = "/usr/sbin/lvm";
/// Set by the parent of a child that is to die at a fault point.
const CHILD_ENV: &str = "ROLLPOINT_VM_CHILD_STATE";
/// A file rewritten after a snapshot, to give the snapshot blocks of its own.
const BLOB_BYTES: u32 = 4 * 1024 * 1024;

fn in_vm(test: &str) -> bool {
    if std::env::var("ROLLPOINT_IN_VM").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipping {test}: runs inside the VM (tests/vm/run)");
    false
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).env("LVM_SUPPRESS_FD_WARNINGS", "1").output().expect(program);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn lvm(args: &[&str]) -> String {
    run(LVM, args)
}

/// One volume group on the scratch disk, for every test of this process
/// (and of the children it starts, which find it made).
fn volume_group() {
    static MADE: Once = Once::new();
    MADE.call_once(|| {
        let report = Command::new(LVM).args(["vgs", VG]).env("LVM_SUPPRESS_FD_WARNINGS", "1").output().expect("vgs");
        if !report.status.success() {
            lvm(&["pvcreate", "--yes", DISK]);
            lvm(&["vgcreate", VG, DISK]);
            // The VG's metadata volume (records beside the snapshots), made
            // the daemon's way but in a pool of its own: the daemon makes it
            // in the first container's pool, which here may be the one a
            // test fills up on purpose.
            lvm(&["lvcreate", "--yes", "--type", "thin-pool", "-L", "128m", "-n", "meta-pool", VG]);
            lvm(&["lvcreate", "--yes", "-V", "16m", "--thinpool", &format!("{VG}/meta-pool"), "-n", "meta-seed"]);
            let seed = names::LvName { vg: VG.into(), lv: "meta-seed".into() };
            LvmBackend::new().metadata_mount(VG, Some(&seed)).expect("the metadata volume");
        }
    });
}

/// Makes an ext4 filesystem on the active LV `vg/lv`.
fn make_ext4(vg: &str, lv: &str) {
    let device = format!("/dev/mapper/{}", names::dm_name(vg, lv));
    // No lazy initialisation: a background thread writing inode tables
    // would move the pool's fill under the tests' feet.
    run("/usr/sbin/mke2fs", &["-q", "-t", "ext4", "-E", "lazy_itable_init=0,lazy_journal_init=0", &device]);
}

/// Mounts the ext4 of the active LV `vg/lv` read-write at `at` (made if
/// missing).
fn mount_ext4(vg: &str, lv: &str, at: &Path) {
    let device = format!("/dev/mapper/{}", names::dm_name(vg, lv));
    std::fs::create_dir_all(at).expect("mkdir");
    nix::mount::mount(Some(device.as_str()), at, Some("ext4"), nix::mount::MsFlags::empty(), None::<&str>)
        .unwrap_or_else(|errno| panic!("mounting {device} at {}: {errno}", at.display()));
}

/// A thin pool `<name>-pool` holding an ext4 thin volume `<name>` mounted at
/// `/mnt/<name>`.
struct Volume {
    name: String,
    mount_point: PathBuf,
}

impl Volume {
    fn create(name: &str, pool_mib: u32, volume_mib: u32) -> Volume {
        volume_group();
        let pool = format!("{name}-pool");
        lvm(&["lvcreate", "--yes", "--type", "thin-pool", "-L", &format!("{pool_mib}m"), "-n", &pool, VG]);
        lvm(&["lvcreate", "--yes", "-V", &format!("{volume_mib}m"), "--thinpool", &format!("{VG}/{pool}"), "-n", name]);
        make_ext4(VG, name);
        let mount_point = PathBuf::from("/mnt").join(name);
        mount_ext4(VG, name, &mount_point);
        Volume { name: name.to_string(), mount_point }
    }

    fn lv(&self) -> String {
        format!("{VG}/{}", self.name)
    }

    fn write(&self, file: &str, content: &str) {
        std::fs::write(self.mount_point.join(file), content).expect("write");
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.mount_point.join(file)).unwrap_or_else(|e| format!("<{e}>"))
    }

    /// The tags of every LV of the VG whose name starts with `prefix`.
    fn lv_attrs(&self) -> Vec<(String, String, String)> {
        let json = lvm(&["lvs", "--reportformat", "json", "-o", "lv_name,lv_attr,lv_tags", VG]);
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        value["report"][0]["lv"]
            .as_array()
            .expect("lv array")
            .iter()
            .map(|lv| {
                let field = |k: &str| lv[k].as_str().unwrap_or("").to_string();
                (field("lv_name"), field("lv_attr"), field("lv_tags"))
            })
            .collect()
    }

    fn is_mounted(&self) -> bool {
        let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        rollpoint::sys::mountinfo::parse(&text).iter().any(|m| m.mount_point == self.mount_point)
    }
}

/// Rewrites `path` with every byte of `old` flipped, in place (no truncate),
/// so that the volume's own blocks are written: a freed block stays mapped
/// by a thin volume without discard, and would stay shared.
fn rewrite_in_place(path: &Path, old: &[u8]) {
    use std::io::Write as _;
    let rewritten: Vec<u8> = old.iter().map(|b| b ^ 0x5a).collect();
    let mut file = std::fs::OpenOptions::new().write(true).open(path).expect("open");
    file.write_all(&rewritten).expect("rewrite");
    file.sync_all().expect("fsync");
}

/// What thin_ls says of every thin volume of `pool` (for the log), next to
/// the LVs' thin ids.
fn thin_ls(pool: &str) -> String {
    let pool_device = format!("/dev/mapper/{}-tpool", names::dm_name(VG, pool));
    let metadata = format!("/dev/mapper/{}", names::dm_name(VG, &format!("{pool}_tmeta")));
    run("/usr/sbin/dmsetup", &["message", &pool_device, "0", "reserve_metadata_snap"]);
    let listed = Command::new("/usr/sbin/thin_ls")
        .args(["--metadata-snap", "-o", "DEV,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES", &metadata])
        .output()
        .expect("thin_ls");
    run("/usr/sbin/dmsetup", &["message", &pool_device, "0", "release_metadata_snap"]);
    let ids = lvm(&["lvs", "--noheadings", "-o", "lv_name,thin_id", "-S", &format!("pool_lv={pool}"), VG]);
    format!(
        "thin_ls ({}):\n{}{}LVs and thin ids:\n{ids}",
        listed.status,
        String::from_utf8_lossy(&listed.stdout),
        String::from_utf8_lossy(&listed.stderr)
    )
}

fn engine(state_dir: &Path, backend: LvmBackend) -> Engine {
    engine_with(state_dir, backend, EngineConfig::default())
}

fn engine_with(state_dir: &Path, backend: LvmBackend, config: EngineConfig) -> Engine {
    let store = Store::open(state_dir).expect("store");
    let config = EngineConfig {
        // lvcreate takes 0.3-0.5 s under TCG; the budget is not what is tested.
        freeze_budget: Duration::from_secs(30),
        ..config
    };
    Engine::new(
        Arc::new(store),
        Arc::new(backend),
        Arc::new(CgroupFreezer::from_mountinfo().expect("freezer")),
        Arc::new(HostLifecycle),
        Arc::new(SystemClock),
        config,
    )
}

fn snapshot_request(container: &str, name: &str) -> CreateRequest {
    CreateRequest {
        container: container.into(),
        name: name.into(),
        alias: String::new(),
        expiry_days: 0,
        comment: String::new(),
        origin: SnapshotOrigin::Api,
        actor: "test".into(),
    }
}

fn register(engine: &Engine, id: &str, cgroup: &TestCgroup, volume: &Volume) {
    engine
        .register_container(RegisterRequest {
            id: id.into(),
            cgroup: cgroup.relative_name().into(),
            subvolume: volume.lv(),
            actor: "test".into(),
            ..RegisterRequest::default()
        })
        .expect("register");
}

fn state_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from("/tmp/rollpoint-vm-state").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("state dir");
    dir
}

#[test]
fn snapshot_restore_and_undo_on_a_thin_pool() {
    if !in_vm("snapshot_restore_and_undo_on_a_thin_pool") {
        return;
    }
    let volume = Volume::create("db1", 256, 128);
    volume.write("data", "version 1");
    let blob: Vec<u8> = (0..BLOB_BYTES).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    std::fs::write(volume.mount_point.join("blob"), &blob).expect("write blob");
    let cgroup = TestCgroup::create("lvm").expect("cgroup");
    let mut sleeper = cgroup.spawn(Command::new("/bin/sleep").arg("600")).expect("spawn");
    let dir = state_dir("undo");
    let engine = engine(&dir, LvmBackend::new());
    register(&engine, "db-1", &cgroup, &volume);
    let container = engine.container("db-1").expect("container");
    assert_eq!(container.backend, "lvm-thin");
    assert_eq!(container.volume, PathBuf::from("vm/db1"));

    let started = Instant::now();
    let first = engine.create_snapshot(snapshot_request("db-1", "snap-1")).expect("snapshot");
    eprintln!("snapshot took {:?}, frozen for {:?}", started.elapsed(), first.frozen_for);
    assert_eq!(first.location, "vm/rp-db-1.snap-1");
    assert!(first.read_only);
    assert!(first.frozen_for > Duration::ZERO, "the cgroup was frozen around lvcreate");
    assert!(!cgroup.is_frozen().expect("state"), "thawed after");
    let attrs = volume.lv_attrs();
    let (_, attr, tags) = attrs.iter().find(|(n, _, _)| n == "rp-db-1.snap-1").expect("snapshot LV");
    assert_eq!(&attr[0..2], "Vr", "a read-only thin volume: {attr}");
    assert_eq!(&attr[9..10], "k", "activation skip: {attr}");
    assert_eq!(tags, "rollpoint");

    // Exclusive bytes, read as GetSnapshot reads them: (almost) nothing yet,
    // then the blob's old blocks once the origin rewrites them in place.
    let (_, at_first) = engine.snapshot_with_exclusive_bytes("db-1", "snap-1").expect("get");
    eprintln!("snapshot's exclusive bytes when taken: {at_first:?}\n{}", thin_ls("db1-pool"));
    assert!(at_first.is_some_and(|bytes| bytes < 1024 * 1024), "{at_first:?}");
    rewrite_in_place(&volume.mount_point.join("blob"), &blob);
    volume.write("data", "version 2");
    rollpoint::backend::lvm::mounts::sync_filesystem(&volume.mount_point).expect("sync");
    let (record, exclusive) = engine.snapshot_with_exclusive_bytes("db-1", "snap-1").expect("get");
    eprintln!("snapshot's exclusive bytes after the rewrite: {exclusive:?}\n{}", thin_ls("db1-pool"));
    let reported = rollpoint::api::convert::snapshot_with_exclusive_bytes(&record, exclusive).exclusive_bytes;
    assert!(reported >= u64::from(BLOB_BYTES), "{reported}");
    assert_eq!(rollpoint::api::convert::snapshot(&record).exclusive_bytes, 0, "listings leave it out");

    let outcome = engine.restore_snapshot("db-1", "snap-1", "", "test").expect("restore");
    eprintln!("restore took {:?}: {:?}", outcome.total, outcome.steps);
    assert!(volume.is_mounted(), "mounted again after the swap");
    // Restoring again with nothing written is a no-op. (Before reading the
    // data: the first read updates its atime, which is a write.)
    let again = engine.restore_snapshot("db-1", "snap-1", "", "test").expect("restore again");
    assert!(again.already_restored, "no writes since the restore: {again:?}");
    assert_eq!(volume.read("data"), "version 1");
    let pre_restore = engine.snapshot("db-1", &outcome.pre_restore_snapshot).expect("pre-restore record");
    assert_eq!(pre_restore.origin, SnapshotOrigin::PreRestore);
    assert!(pre_restore.read_only);
    let attrs = volume.lv_attrs();
    let (_, attr, tags) = attrs.iter().find(|(n, _, _)| n == "db1").expect("volume");
    assert_eq!(&attr[9..10], "-", "the volume activates at boot: {attr}");
    assert!(tags.is_empty(), "no tags left on the volume: {tags}");
    let aside_lv = pre_restore.location.split_once('/').expect("vg/lv").1.to_string();
    let (_, attr, tags) = attrs.iter().find(|(n, _, _)| *n == aside_lv).expect("pre-restore LV");
    assert_eq!(tags, "rollpoint", "{aside_lv}");
    assert_eq!(&attr[0..2], "Vr", "{attr}");
    assert_eq!(&attr[9..10], "k", "{attr}");

    // Undo: back to the state before the restore.
    let undo = engine.restore_snapshot("db-1", &outcome.pre_restore_snapshot, "", "test").expect("undo");
    assert_eq!(volume.read("data"), "version 2");
    assert!(volume.is_mounted());
    assert!(!undo.already_restored);

    // A snapshot of the restored volume, then deletes.
    volume.write("data", "version 3");
    engine.create_snapshot(snapshot_request("db-1", "snap-2")).expect("second snapshot");
    let records = engine.list_snapshots("db-1", 100, "").expect("list").items;
    assert_eq!(records.len(), 4, "snap-1, two pre-restore, snap-2: {records:?}");
    let backend = LvmBackend::new();
    let volume_info =
        rollpoint::backend::VolumeInfo { path: container.volume.clone(), snapshot_dir: container.snapshot_dir.clone() };
    let mut on_disk = backend.list_snapshots(&volume_info).expect("list LVs");
    let mut recorded: Vec<String> = records.iter().map(|r| r.location.clone()).collect();
    on_disk.sort();
    recorded.sort();
    assert_eq!(on_disk, recorded);
    engine.delete_snapshot("db-1", "snap-1", "test").expect("delete");
    assert!(!backend.snapshot_exists("vm/rp-db-1.snap-1").expect("exists"));
    assert!(matches!(engine.snapshot("db-1", "snap-1"), Err(EngineError::NotFound { .. })));

    // Start-up reconciliation finds everything accounted for.
    let report = engine.recover().expect("recover");
    assert!(report.lost.is_empty() && report.unknown.is_empty(), "{report:?}");
    assert_eq!(volume.read("data"), "version 3");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn backend_names_tags_and_leftovers() {
    if !in_vm("backend_names_tags_and_leftovers") {
        return;
    }
    let volume = Volume::create("names", 128, 64);
    let blob: Vec<u8> = (0..BLOB_BYTES).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    std::fs::write(volume.mount_point.join("blob"), &blob).expect("write");
    let backend = LvmBackend::new();
    let info = backend.inspect(&volume.lv(), "c-1").expect("inspect");
    assert!(matches!(backend.inspect("vm/names-pool", "c-1"), Err(BackendError::NotThinVolume { .. })));
    assert!(matches!(backend.inspect("vm/nothing", "c-1"), Err(BackendError::NotFound { .. })));
    assert!(matches!(backend.inspect("novg/x", "c-1"), Err(BackendError::NotFound { .. })));

    // A long name becomes a hashed LV name that LVM takes.
    let long = format!("x{}", "-long".repeat(25));
    let location = backend.location(&info, &long);
    assert!(location.starts_with("vm/rp-c-1.."), "{location}");
    let made = backend.create_snapshot(&volume.lv(), &location, true).expect("hashed name");
    assert!(made.read_only);
    // Rewritten after the snapshot: the old 4 MiB become the snapshot's alone.
    // (Almost) all shared at first: freezing the origin for the snapshot
    // rewrote its superblock, so one pool chunk may already be the snapshot's.
    let at_first = backend.exclusive_bytes(&location).expect("exclusive").expect("active pool");
    assert!(at_first < 1024 * 1024, "{at_first}");
    rewrite_in_place(&volume.mount_point.join("blob"), &blob);
    rollpoint::backend::lvm::mounts::sync_filesystem(&volume.mount_point).expect("sync");
    let exclusive = backend.exclusive_bytes(&location).expect("exclusive").expect("active pool");
    eprintln!("exclusive bytes of the snapshot: {exclusive}");
    assert!(exclusive >= u64::from(BLOB_BYTES), "{exclusive}");
    assert!(!made.uuid.is_empty());
    assert!(backend.snapshot_exists(&location).expect("exists"));
    let writable = backend.location(&info, "w_tmeta");
    let made = backend.create_snapshot(&location, &writable, false).expect("snapshot of a snapshot");
    assert!(!made.read_only);
    backend.set_read_only(&writable, true).expect("read-only");
    assert!(backend.details(&writable).expect("details").read_only);
    let renamed = backend.location(&info, "renamed");
    backend.rename(&writable, &renamed).expect("rename");
    assert!(matches!(backend.rename(&location, &renamed), Err(BackendError::AlreadyExists { .. })));
    assert_eq!(backend.list_snapshots(&info).expect("list"), {
        let mut v = vec![location.clone(), renamed.clone()];
        v.sort();
        v
    });

    // An LV of the user's that looks like one of ours is left alone.
    lvm(&["lvcreate", "--yes", "-V", "8m", "--thinpool", "vm/names-pool", "-n", "rp-c-1.users"]);
    assert!(matches!(backend.delete_snapshot("vm/rp-c-1.users"), Err(BackendError::NotOurs { .. })));
    assert!(!backend.list_snapshots(&info).expect("list").contains(&"vm/rp-c-1.users".to_string()));
    assert!(matches!(
        backend.create_snapshot(&volume.lv(), "vm/rp-c-1.users", true),
        Err(BackendError::AlreadyExists { .. })
    ));

    assert!(backend.delete_snapshot(&location).expect("delete"));
    assert!(!backend.delete_snapshot(&location).expect("already gone"));
    assert!(backend.delete_snapshot(&renamed).expect("delete"));
    assert!(backend.list_snapshots(&info).expect("list").is_empty());
    let (pool, fill) = backend.pool_fill(&volume.lv()).expect("pool fill");
    assert_eq!(pool, "vm/names-pool");
    let fill = fill.expect("active pool");
    assert!(fill.data_percent > 0.0 && fill.data_percent < 50.0, "{fill:?}");
    assert!(backend.mapped_bytes(&volume.lv()).expect("mapped").is_some_and(|b| b > 0));
}

#[test]
fn a_pool_above_the_threshold_refuses_snapshots() {
    if !in_vm("a_pool_above_the_threshold_refuses_snapshots") {
        return;
    }
    let volume = Volume::create("full", 64, 256);
    let backend = LvmBackend::new();
    // Fill the pool past 90%, a few MiB at a time, stopping well before 100%
    // (a full pool would hold every write for a minute).
    let chunk: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut n = 0;
    loop {
        let (_, fill) = backend.pool_fill(&volume.lv()).expect("fill");
        let fill = fill.expect("active pool");
        if fill.data_percent > 91.0 {
            break;
        }
        assert!(n < 40, "the pool did not fill: {fill:?}");
        let remaining = 91.0 - fill.data_percent;
        let bytes = if remaining > 10.0 { chunk.len() } else { chunk.len() / 4 };
        std::fs::write(volume.mount_point.join(format!("fill-{n}")), &chunk[..bytes]).expect("write");
        rollpoint::backend::lvm::mounts::sync_filesystem(&volume.mount_point).expect("sync");
        n += 1;
    }
    let (_, fill) = backend.pool_fill(&volume.lv()).expect("fill");
    let fill = fill.expect("active pool");
    assert!(fill.data_percent < 99.0, "{fill:?}");

    let info = backend.inspect(&volume.lv(), "full").expect("inspect");
    let location = backend.location(&info, "refused");
    let error = backend.create_snapshot(&volume.lv(), &location, true).expect_err("pool above 90%");
    let message = error.to_string();
    eprintln!("refused: {message}");
    match error {
        BackendError::PoolFull { pool, data_percent, threshold, .. } => {
            assert_eq!(pool, "vm/full-pool");
            assert!(data_percent > 90.0);
            assert_eq!(threshold, 90.0);
        }
        other => panic!("expected PoolFull, got {other:?}"),
    }
    assert!(message.contains(&format!("{:.1}%", fill.data_percent)), "{message}");
    assert!(!backend.snapshot_exists(&location).expect("exists"), "nothing was made");

    // Through the engine: the same refusal, nothing recorded, thawed.
    let cgroup = TestCgroup::create("full").expect("cgroup");
    let dir = state_dir("full");
    let engine = engine(&dir, LvmBackend::new());
    register(&engine, "full", &cgroup, &volume);
    let error = engine.create_snapshot(snapshot_request("full", "refused")).expect_err("refused");
    assert!(matches!(error, EngineError::Backend(BackendError::PoolFull { .. })), "{error:?}");
    assert!(engine.list_snapshots("full", 10, "").expect("list").items.is_empty());
    assert!(!cgroup.is_frozen().expect("state"));

    // A higher threshold lets it through.
    let lenient = LvmBackend::new().with_pool_threshold(99.0);
    lenient.create_snapshot(&volume.lv(), &location, true).expect("below 99%");
}

/// The part of `a_restore_killed_mid_way_is_finished_or_undone` that runs in a
/// child process and dies at the fault point `ROLLPOINT_FAULT` names.
#[test]
fn child_restore_that_dies() {
    let Ok(state) = std::env::var(CHILD_ENV) else { return };
    let engine = engine(Path::new(&state), LvmBackend::new());
    let result = engine.restore_snapshot("crash", "base", "", "test");
    panic!("the fault point was not reached: {result:?}");
}

#[test]
fn a_restore_killed_mid_way_is_finished_or_undone() {
    if !in_vm("a_restore_killed_mid_way_is_finished_or_undone") {
        return;
    }
    let volume = Volume::create("crash", 256, 128);
    volume.write("data", "base");
    let cgroup = TestCgroup::create("crash").expect("cgroup");
    let dir = state_dir("crash");
    {
        let engine = engine(&dir, LvmBackend::new());
        register(&engine, "crash", &cgroup, &volume);
        engine.create_snapshot(snapshot_request("crash", "base")).expect("snapshot");
    }
    // (fault point, whether the restore is finished by recovery)
    let points = [
        ("restore.cloning", false),
        ("restore.exchanging", false),
        ("lvm.exchange.tagged", false),
        ("lvm.exchange.unmounted", false),
        ("lvm.exchange.moved-aside", true),
        ("lvm.exchange.moved-in", true),
        ("lvm.exchange.mounted", true),
        ("restore.exchanged", true),
        ("restore.recorded", true),
    ];
    for (round, (point, finished)) in points.into_iter().enumerate() {
        let present = format!("present {round}");
        volume.write("data", &present);
        let status = Command::new(std::env::current_exe().expect("exe"))
            .args(["--exact", "child_restore_that_dies", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .env("ROLLPOINT_FAULT", point)
            .status()
            .expect("child");
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: the child died at the fault point: {status:?}");

        let engine = engine(&dir, LvmBackend::new());
        let report = engine.recover().expect("recover");
        eprintln!("{point}: {report:?}");
        assert!(volume.is_mounted(), "{point}: the volume is mounted after recovery");
        let expected = if finished { "base" } else { present.as_str() };
        assert_eq!(volume.read("data"), expected, "{point}");
        if finished {
            assert_eq!(report.restores_finished.len(), 1, "{point}: {report:?}");
        } else {
            assert_eq!(report.restores_rolled_back.len(), 1, "{point}: {report:?}");
        }
        assert!(report.lost.is_empty() && report.unknown.is_empty(), "{point}: {report:?}");
        for (name, _, tags) in volume.lv_attrs() {
            assert!(!tags.contains("rp-swap"), "{point}: swap tags left on {name}: {tags}");
        }
        let records = engine.list_snapshots("crash", 100, "").expect("list").items;
        assert!(records.iter().all(|r| r.state == SnapshotState::Ready), "{point}: {records:?}");
        let pre_restores = records.iter().filter(|r| r.origin == SnapshotOrigin::PreRestore).count();
        eprintln!("{point}: {} snapshots, {pre_restores} pre-restore", records.len());
        if finished {
            // The state from before the crashed restore is kept.
            let last = records.iter().rfind(|r| r.origin == SnapshotOrigin::PreRestore).expect("pre-restore");
            let restore_back = engine.restore_snapshot("crash", &last.name, "", "test").expect("undo");
            assert!(!restore_back.already_restored);
            assert_eq!(volume.read("data"), present, "{point}: the pre-restore snapshot holds the present");
        }
    }
}

/// The LVs and mounts of views (`rp--view-*`) left in the VG.
fn views_left(volume: &Volume) -> (Vec<String>, Vec<PathBuf>) {
    let prefix = rollpoint::backend::lvm::views::view_prefix();
    let lvs = volume.lv_attrs().into_iter().map(|(name, _, _)| name).filter(|n| n.starts_with(&prefix)).collect();
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mounts = rollpoint::sys::mountinfo::parse(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|m| m.starts_with(rollpoint::backend::lvm::views::VIEWS_DIR))
        .collect();
    (lvs, mounts)
}

/// Off-host copies, diff and sizes of LVM thin snapshots: each snapshot is
/// read through a view (a throwaway snapshot mounted read-only), exported
/// to a file remote, incrementally the second time, imported into a plain
/// folder and compared with the snapshot; the diff walks both trees; the
/// delta comes from the pool's mappings.
#[test]
fn export_import_diff_and_delta_on_a_thin_pool() {
    if !in_vm("export_import_diff_and_delta_on_a_thin_pool") {
        return;
    }
    use rollpoint::engine::diff::DiffKind;
    use rollpoint::engine::remotes::{ExportRequest, ImportRequest, ImportTarget};
    use std::sync::atomic::AtomicBool;

    let volume = Volume::create("ex1", 512, 256);
    std::fs::create_dir_all(volume.mount_point.join("etc/conf.d")).expect("mkdir");
    volume.write("etc/app.conf", "port = 5432\n");
    volume.write("etc/conf.d/old.conf", "old\n");
    volume.write("gone.txt", "to be deleted\n");
    std::os::unix::fs::symlink("etc/app.conf", volume.mount_point.join("config")).expect("symlink");
    // 32 MiB that does not compress (xorshift), rewritten in part later.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let blob: Vec<u8> = (0..32u32 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(volume.mount_point.join("blob"), &blob).expect("write blob");
    let cgroup = TestCgroup::create("lvm-export").expect("cgroup");
    let mut sleeper = cgroup.spawn(Command::new("/bin/sleep").arg("600")).expect("spawn");
    let dir = state_dir("export");
    let repository = dir.join("repository");
    let mut config = EngineConfig::default();
    config
        .remotes
        .insert("here".into(), rollpoint::remote::RemoteConfig::for_url(&format!("file://{}", repository.display())));
    config.state_dir = dir.clone();
    let engine = engine_with(&dir, LvmBackend::new(), config);
    register(&engine, "ex-1", &cgroup, &volume);
    engine.init_remote("here", "test").expect("init remote");

    let first = engine.create_snapshot(snapshot_request("ex-1", "snap-1")).expect("snapshot 1");
    let export = |name: &str| {
        let request = ExportRequest {
            container: "ex-1".into(),
            snapshot: name.into(),
            remote: "here".into(),
            actor: "test".into(),
        };
        let started = Instant::now();
        let exported = engine.export_snapshot(&request, &mut |_| {}, &AtomicBool::new(false)).expect("export");
        eprintln!(
            "export of {name}: {:?}, {} of {} bytes new, {} read, {:?}",
            exported.method,
            exported.manifest.added_bytes,
            exported.manifest.logical_bytes,
            exported.manifest.read_bytes,
            started.elapsed()
        );
        exported
    };
    let backend = LvmBackend::new();
    let import_and_compare = |name: &str, location: &str| {
        let target = dir.join(format!("imported-{name}"));
        let request = ImportRequest {
            remote: "here".into(),
            container: "ex-1".into(),
            snapshot: name.into(),
            target: ImportTarget::Path(target.clone()),
            actor: "test".into(),
        };
        engine.import_snapshot(&request, &mut |_| {}, &AtomicBool::new(false)).expect("import");
        let view = backend.readable_root(location).expect("view of the snapshot");
        let differences = rollpoint::fstree::compare_trees(&view, &target).expect("compare");
        // ext4's lost+found is there and empty in both.
        assert!(differences.is_empty(), "{name}: the import differs from the snapshot: {differences:#?}");
    };

    let exported_1 = export("snap-1");
    assert!(exported_1.manifest.logical_bytes >= blob.len() as u64, "{:?}", exported_1.manifest.logical_bytes);
    import_and_compare("snap-1", &first.location);

    // Changes: part of the blob rewritten in place, a file added, one
    // deleted, one renamed, a folder's mode.
    {
        use std::os::unix::fs::FileExt as _;
        let file = std::fs::OpenOptions::new().write(true).open(volume.mount_point.join("blob")).expect("open");
        file.write_all_at(&vec![7u8; 1 << 20], 4 << 20).expect("rewrite 1 MiB");
        file.sync_all().expect("sync");
    }
    volume.write("etc/new.conf", "new\n");
    std::fs::remove_file(volume.mount_point.join("gone.txt")).expect("rm");
    std::fs::rename(volume.mount_point.join("etc/conf.d/old.conf"), volume.mount_point.join("etc/moved.conf"))
        .expect("mv");
    let second = engine.create_snapshot(snapshot_request("ex-1", "snap-2")).expect("snapshot 2");
    let exported_2 = export("snap-2");
    assert_eq!(exported_2.manifest.parent, Some(exported_1.id), "incremental from the first export");
    assert!(exported_1.manifest.added_bytes >= blob.len() as u64 * 9 / 10, "the blob does not compress");
    assert!(
        exported_2.manifest.added_bytes < exported_1.manifest.added_bytes / 4,
        "only the chunks around the 1 MiB rewritten are uploaded: {} after {}",
        exported_2.manifest.added_bytes,
        exported_1.manifest.added_bytes
    );
    import_and_compare("snap-2", &second.location);
    let again = export("snap-2");
    assert!(again.already_there);

    // The diff, by walking both trees.
    let diff = engine.diff_snapshots("ex-1", "snap-1", "snap-2").expect("diff");
    let listed: Vec<(DiffKind, String)> =
        diff.iter().map(|d| (d.kind, String::from_utf8_lossy(&d.path).into_owned())).collect();
    eprintln!("diff: {listed:?}");
    for expected in [
        (DiffKind::Changed, "blob"),
        (DiffKind::Added, "etc/new.conf"),
        (DiffKind::Deleted, "gone.txt"),
        (DiffKind::Renamed, "etc/moved.conf"),
    ] {
        assert!(listed.contains(&(expected.0, expected.1.to_owned())), "{expected:?} in {listed:?}");
    }
    assert_eq!(listed.len(), 4, "nothing else: {listed:?}");
    let moved = diff.iter().find(|d| d.path == b"etc/moved.conf").expect("renamed");
    assert_eq!(moved.from.as_deref(), Some(&b"etc/conf.d/old.conf"[..]));
    // Against the live volume.
    volume.write("later.txt", "later\n");
    let live = engine.diff_snapshots("ex-1", "snap-2", "").expect("diff with the live volume");
    let live: Vec<String> = live.iter().map(|d| String::from_utf8_lossy(&d.path).into_owned()).collect();
    assert_eq!(live, ["later.txt"]);
    // One file brought back into the live volume (where it is mounted),
    // after a pre-restore snapshot.
    let restored = engine.restore_files("ex-1", "snap-1", &["gone.txt".into()], None, "test").expect("restore a file");
    assert_eq!(restored.written_to, volume.mount_point);
    assert_eq!(volume.read("gone.txt"), "to be deleted\n");
    assert!(restored.pre_restore_snapshot.is_some(), "{restored:?}");

    // Sizes: the pool's own count of what each snapshot added.
    engine.measure_sizes().expect("measure");
    let sized = |name: &str| engine.snapshot("ex-1", name).expect("record").sizes.expect("measured");
    let (sizes_1, sizes_2) = (sized("snap-1"), sized("snap-2"));
    eprintln!("sizes: {sizes_1:?} {sizes_2:?}");
    assert!(sizes_1.delta_bytes >= blob.len() as u64, "the first snapshot maps everything: {sizes_1:?}");
    assert_eq!(sizes_2.delta_parent.as_deref(), Some("snap-1"));
    assert!(
        sizes_2.delta_bytes >= 1 << 20 && sizes_2.delta_bytes < 8 << 20,
        "about the 1 MiB rewritten, in pool blocks, plus metadata: {sizes_2:?}"
    );

    // `snapshot mount`: read-only through the snapshot's mount view, which
    // outlives other views and keeps the snapshot from being deleted.
    let place = dir.join("then");
    std::fs::create_dir_all(&place).expect("mkdir");
    let (mounted, at) = engine.mount_snapshot("ex-1", "snap-1", place.to_str().unwrap(), "test").expect("mount");
    assert_eq!(mounted.name, "snap-1");
    assert_eq!(std::fs::read_to_string(at.join("gone.txt")).expect("read"), "to be deleted\n");
    let written = std::fs::write(at.join("gone.txt"), "x");
    assert_eq!(written.unwrap_err().raw_os_error(), Some(libc::EROFS), "read-only");
    let mount_view = rollpoint::backend::lvm::views::mount_view_name(first.location.split_once('/').unwrap().1);
    let has_mount_view = || volume.lv_attrs().iter().any(|(name, _, _)| *name == mount_view);
    assert!(has_mount_view(), "{mount_view} in {:?}", volume.lv_attrs());
    drop(backend.readable_root(&second.location).expect("a view beside the mount"));
    assert!(has_mount_view(), "another view does not take the mount's away");
    let refused = engine.delete_snapshot("ex-1", "snap-1", "test").expect_err("deleting a mounted snapshot");
    assert!(refused.to_string().contains("is mounted at"), "{refused}");
    assert_eq!(engine.snapshot("ex-1", "snap-1").expect("record").state, SnapshotState::Ready);
    let outside = dir.join("elsewhere");
    std::fs::create_dir_all(&outside).expect("mkdir");
    assert!(engine.unmount_snapshot("ex-1", outside.to_str().unwrap(), "test").is_err(), "nothing mounted there");
    assert_eq!(engine.unmount_snapshot("ex-1", at.to_str().unwrap(), "test").expect("unmount"), "snap-1");
    assert!(!has_mount_view(), "the mount view goes with its last mount");
    assert_eq!(std::fs::read_dir(&at).expect("read dir").count(), 0);

    // A clone: an untagged, active thin snapshot registered as a container
    // of its own, whose files are the snapshot's.
    let clone_cgroup = TestCgroup::create("lvm-clone").expect("cgroup");
    let clone = engine
        .clone_snapshot(rollpoint::engine::clone::CloneRequest {
            container: "ex-1".into(),
            snapshot: "snap-1".into(),
            id: "ex-clone".into(),
            cgroup: clone_cgroup.relative_name().into(),
            actor: "test".into(),
            ..Default::default()
        })
        .expect("clone");
    assert_eq!(clone.volume, Path::new(VG).join("ex-clone"));
    let attrs = volume.lv_attrs();
    let (_, clone_attr, clone_tags) = attrs.iter().find(|(name, _, _)| name == "ex-clone").expect("the clone's LV");
    assert!(!clone_tags.contains("rollpoint"), "the user's volume, not a snapshot: {clone_tags}");
    assert_eq!(clone_attr.as_bytes()[4], b'a', "active: {clone_attr}");
    let clone_mount = dir.join("clone");
    mount_ext4(VG, "ex-clone", &clone_mount);
    assert_eq!(std::fs::read_to_string(clone_mount.join("gone.txt")).expect("read"), "to be deleted\n");
    std::fs::write(clone_mount.join("gone.txt"), "the clone's own\n").expect("the clone is writable");
    nix::mount::umount2(&clone_mount, nix::mount::MntFlags::empty()).expect("unmount the clone");
    assert_eq!(volume.read("gone.txt"), "to be deleted\n", "the source is untouched");
    let clone_snapshot = engine.create_snapshot(snapshot_request("ex-clone", "c-1")).expect("a snapshot of the clone");
    assert!(clone_snapshot.location.starts_with(&format!("{VG}/")), "{clone_snapshot:?}");
    drop(clone_cgroup);

    // No view stays; one a stop left behind goes with the next view made.
    assert_eq!(views_left(&volume), (vec![], vec![]), "views are removed after use");
    // A view a killed daemon left: its LV, active and mounted.
    let stale = format!("{}999999-0", rollpoint::backend::lvm::views::view_prefix());
    lvm(&[
        "lvcreate",
        "--snapshot",
        "--name",
        &stale,
        "--setactivationskip",
        "y",
        "--addtag",
        "rollpoint",
        &second.location,
    ]);
    lvm(&["lvchange", "--activate", "y", "--ignoreactivationskip", &format!("{VG}/{stale}")]);
    let stale_mount = Path::new(rollpoint::backend::lvm::views::VIEWS_DIR).join(VG).join(&stale);
    std::fs::create_dir_all(&stale_mount).expect("mkdir");
    let device = format!("/dev/mapper/{}", names::dm_name(VG, &stale));
    nix::mount::mount(Some(device.as_str()), &stale_mount, Some("ext4"), nix::mount::MsFlags::MS_RDONLY, None::<&str>)
        .expect("mount the stale view");
    assert_eq!(views_left(&volume), (vec![stale.clone()], vec![stale_mount]), "the stale view is there");
    drop(backend.readable_root(&first.location).expect("another view"));
    assert_eq!(views_left(&volume), (vec![], vec![]), "the leftover was removed with the next view");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// The records beside thin snapshots (issue 21): kept on the VG's metadata
/// volume, they rebuild a store lost with its state directory. The daemon's
/// engine refuses to serve the empty store (the metadata volume knows a
/// container it does not), `recover` brings back the container and its
/// snapshots with names, aliases, expiry, origins and comments, and the
/// container restores as before.
#[test]
fn records_beside_thin_snapshots_rebuild_a_lost_store() {
    if !in_vm("records_beside_thin_snapshots_rebuild_a_lost_store") {
        return;
    }
    let volume = Volume::create("rec1", 256, 128);
    volume.write("data", "version 1");
    let cgroup = TestCgroup::create("lvm-records").expect("cgroup");
    let mut sleeper = cgroup.spawn(Command::new("/bin/sleep").arg("600")).expect("spawn");
    let dir = state_dir("records");
    let config = || EngineConfig { volume_groups: vec![VG.to_owned()], ..EngineConfig::default() };
    let engine = engine_with(&dir, LvmBackend::new(), config());
    register(&engine, "rec-1", &cgroup, &volume);
    let mut first = snapshot_request("rec-1", "snap-1");
    first.alias = "rollback-point".into();
    first.expiry_days = 7;
    first.comment = "before the migration".into();
    engine.create_snapshot(first).expect("snapshot 1");
    volume.write("data", "version 2");
    engine.create_snapshot(snapshot_request("rec-1", "snap-2")).expect("snapshot 2");

    let meta = rollpoint::backend::lvm::metadata::meta_lv();
    let attrs = volume.lv_attrs();
    let (_, _, tags) = attrs.iter().find(|(name, _, _)| *name == meta).expect("the metadata volume");
    assert_eq!(tags, rollpoint::backend::lvm::metadata::META_TAG);
    let folder = Path::new(rollpoint::backend::lvm::metadata::META_DIR).join(VG).join(".rollpoint/rec-1");
    for file in ["_container.json", ".snap-1.json", ".snap-2.json"] {
        assert!(folder.join(file).is_file(), "{file} beside the snapshots in {}", folder.display());
    }
    let summary = |engine: &Engine| {
        let container = engine.container("rec-1").expect("container");
        let snapshots: Vec<_> = engine
            .list_snapshots("rec-1", 100, "")
            .expect("list")
            .items
            .into_iter()
            .map(|s| (s.name, s.alias, s.expire_time, s.origin, s.comment, s.location))
            .collect();
        (container.volume, container.cgroup, snapshots)
    };
    let before = summary(&engine);
    drop(engine);

    // The state directory is lost (a new root disk) and the host restarts:
    // the metadata volume is not mounted any more.
    std::fs::remove_dir_all(&dir).expect("lose the state directory");
    std::fs::create_dir_all(&dir).expect("empty state directory");
    let mount = Path::new(rollpoint::backend::lvm::metadata::META_DIR).join(VG);
    nix::mount::umount(&mount).expect("unmount the metadata volume");
    let empty = engine_with(&dir, LvmBackend::new(), config());
    let refused = empty.recover().expect_err("an empty store is not served");
    assert!(refused.to_string().contains("rollpoint recover"), "{refused}");
    drop(empty);

    let options = rollpoint::recover::RecoverOptions {
        state_dir: dir.clone(),
        filesystems: Vec::new(),
        volume_groups: vec![VG.to_owned()],
        apply: false,
    };
    let dry = rollpoint::recover::recover(&options, &LvmBackend::new()).expect("dry run");
    // The VG's other tests left containers too: theirs come back as well.
    assert!(dry.containers.contains(&"rec-1".to_owned()), "{dry:?}");
    let applied =
        rollpoint::recover::recover(&rollpoint::recover::RecoverOptions { apply: true, ..options }, &LvmBackend::new())
            .expect("recover");
    assert!(applied.containers.contains(&"rec-1".to_owned()), "{applied:?}");
    let rec_snapshots: Vec<&String> = applied.snapshots.iter().filter(|s| s.contains("/rec-1/")).collect();
    assert_eq!(rec_snapshots.len(), 2, "{applied:?}");
    assert!(applied.conflicts.is_empty(), "{applied:?}");

    let engine = engine_with(&dir, LvmBackend::new(), config());
    let report = engine.recover().expect("served again");
    let about_this = report.lost.iter().chain(&report.unknown).filter(|s| s.contains("rec-1")).count();
    assert_eq!(about_this, 0, "{report:?}");
    assert_eq!(summary(&engine), before, "the same container and snapshots, field by field");
    engine.restore_snapshot("rec-1", "rollback-point", "", "test").expect("restore");
    assert_eq!(volume.read("data"), "version 1");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

// ---------------------------------------------------------------- power cut

/// The power-cut scenario (issue 17), one boot per phase, driven by
/// `tests/vm/power-cut`: `ROLLPOINT_POWER_CUT` names the phase. Its disks
/// are written through (qemu `cache=none`) and qemu is killed with no
/// shutdown the moment the guest prints [`POWER_CUT_MARKER`]: what was
/// not on the disk image then is lost, as in a power cut.
const POWER_CUT_ENV: &str = "ROLLPOINT_POWER_CUT";
const POWER_CUT_MARKER: &str = "ROLLPOINT-POWER-CUT";
/// A btrfs filesystem the harness made on the second disk.
const PC_BTRFS_DISK: &str = "/dev/vdb";
const PC_BTRFS: &str = "/mnt/pc";
const PC_VG: &str = "pc";
const PC_LVM_MOUNT: &str = "/mnt/pc-data";

/// Tells the harness to cut the power now, and waits for it.
fn cut_power_now() -> ! {
    use std::io::Write as _;
    let mut console = std::fs::OpenOptions::new().write(true).open("/dev/ttyS0").expect("the serial console");
    let _ = writeln!(console, "\n{POWER_CUT_MARKER}");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// The disks, cgroups and engine of the scenario as a boot finds them (the
/// first boot makes the btrfs volume and the VG).
fn power_cut_host(first_boot: bool) -> Engine {
    use rollpoint::backend::btrfs::BtrfsBackend;
    std::fs::create_dir_all(PC_BTRFS).expect("mkdir");
    nix::mount::mount(Some(PC_BTRFS_DISK), PC_BTRFS, Some("btrfs"), nix::mount::MsFlags::empty(), None::<&str>)
        .expect("mount the btrfs disk");
    let data = format!("{PC_VG}/data");
    if first_boot {
        BtrfsBackend::new().create_volume(&format!("{PC_BTRFS}/app")).expect("the btrfs volume");
        lvm(&["pvcreate", "--yes", DISK]);
        lvm(&["vgcreate", PC_VG, DISK]);
        lvm(&["lvcreate", "--yes", "--type", "thin-pool", "-L", "256m", "-n", "pool", PC_VG]);
        lvm(&["lvcreate", "--yes", "-V", "128m", "--thinpool", &format!("{PC_VG}/pool"), "-n", "data"]);
        make_ext4(PC_VG, "data");
    } else {
        lvm(&["lvchange", "--activate", "y", &data]);
    }
    mount_ext4(PC_VG, "data", Path::new(PC_LVM_MOUNT));
    for cgroup in ["pc-app", "pc-data"] {
        std::fs::create_dir_all(Path::new("/sys/fs/cgroup").join(cgroup)).expect("cgroup");
    }
    let store = Store::open(&Path::new(PC_BTRFS).join("state")).expect("store");
    let config = EngineConfig { freeze_budget: Duration::from_secs(30), ..EngineConfig::default() };
    let engine = Engine::new(
        Arc::new(store),
        Arc::new(power_cut_backends()),
        Arc::new(CgroupFreezer::from_mountinfo().expect("freezer")),
        Arc::new(HostLifecycle),
        Arc::new(SystemClock),
        config,
    );
    if first_boot {
        for (id, volume) in [("app", format!("{PC_BTRFS}/app")), ("data", data)] {
            engine
                .register_container(RegisterRequest {
                    id: id.into(),
                    cgroup: format!("pc-{id}"),
                    subvolume: volume,
                    actor: "test".into(),
                    ..RegisterRequest::default()
                })
                .expect("register");
        }
    } else {
        // What the daemon does first at every start.
        let report = engine.recover().expect("start-up recovery");
        eprintln!("start-up recovery after the power cut: {report:?}");
        assert!(report.lost.is_empty() && report.unknown.is_empty(), "{report:?}");
    }
    engine
}

/// Both backends, as the daemon has them.
fn power_cut_backends() -> rollpoint::backend::host::HostBackends {
    rollpoint::backend::host::HostBackends { btrfs: Default::default(), lvm: LvmBackend::new() }
}

/// The live folder of each container of the scenario.
fn power_cut_live(id: &str) -> PathBuf {
    if id == "app" {
        Path::new(PC_BTRFS).join("app")
    } else {
        PathBuf::from(PC_LVM_MOUNT)
    }
}

/// The file `state` in snapshot `name` of container `id`.
fn read_in_snapshot(engine: &Engine, id: &str, name: &str) -> String {
    let record = engine.snapshot(id, name).expect("the snapshot's record");
    assert_eq!(record.state, SnapshotState::Ready, "{record:?}");
    let root = power_cut_backends().readable_root(&record.location).expect("the snapshot's files");
    std::fs::read_to_string(root.join("state")).expect("read")
}

/// Power cut right after a snapshot reply (btrfs last, the LVM one just
/// before), then right after a restore reply (LVM last, btrfs just
/// before): after each, the records, the volumes and the data agree with
/// what was acknowledged.
#[test]
fn power_cut_scenario() {
    let Ok(phase) = std::env::var(POWER_CUT_ENV) else {
        eprintln!("skipping power_cut_scenario: runs in tests/vm/power-cut");
        return;
    };
    let ids = ["data", "app"];
    match phase.as_str() {
        "snapshot" => {
            let engine = power_cut_host(true);
            for id in ids {
                std::fs::write(power_cut_live(id).join("state"), "acknowledged in s1").expect("write");
            }
            for id in ids {
                engine.create_snapshot(snapshot_request(id, "s1")).expect("snapshot");
                eprintln!("{id}: snapshot s1 replied");
            }
            // Not acknowledged, never synced: a real cut loses it (shown in
            // the next boot, to tell that the harness cuts like a power cut).
            std::fs::write(Path::new(PC_BTRFS).join("unsynced"), "written after the replies").expect("write");
            cut_power_now();
        }
        "restore" => {
            let engine = power_cut_host(false);
            let unsynced = Path::new(PC_BTRFS).join("unsynced").exists();
            eprintln!("the file written unsynced before the cut {}", if unsynced { "survived" } else { "was lost" });
            for id in ids {
                assert_eq!(read_in_snapshot(&engine, id, "s1"), "acknowledged in s1", "{id}");
                let listed = engine.list_snapshots(id, 100, "").expect("list").items;
                assert_eq!(listed.len(), 1, "{id}: {listed:?}");
                // The state to restore away from, on the disk for sure.
                let live = power_cut_live(id);
                std::fs::write(live.join("state"), "before the restore").expect("write");
                rollpoint::backend::lvm::mounts::sync_filesystem(&live).expect("sync");
            }
            for id in ["app", "data"] {
                let outcome = engine.restore_snapshot(id, "s1", "", "test").expect("restore");
                eprintln!("{id}: restore to s1 replied ({})", outcome.pre_restore_snapshot);
            }
            cut_power_now();
        }
        "verify" => {
            let engine = power_cut_host(false);
            for id in ids {
                let live = power_cut_live(id);
                assert_eq!(
                    std::fs::read_to_string(live.join("state")).expect("read"),
                    "acknowledged in s1",
                    "{id}: the acknowledged restore stands"
                );
                let listed = engine.list_snapshots(id, 100, "").expect("list").items;
                let pre_restore: Vec<_> = listed.iter().filter(|s| s.origin == SnapshotOrigin::PreRestore).collect();
                assert_eq!(listed.len(), 2, "{id}: s1 and the pre-restore snapshot: {listed:?}");
                assert_eq!(pre_restore.len(), 1, "{id}: {listed:?}");
                assert_eq!(read_in_snapshot(&engine, id, &pre_restore[0].name), "before the restore", "{id}");
                let container = engine.container(id).expect("container");
                let volume = rollpoint::backend::VolumeInfo {
                    path: container.volume.clone(),
                    snapshot_dir: container.snapshot_dir.clone(),
                };
                let mut on_disk = power_cut_backends().list_snapshots(&volume).expect("list on disk");
                let mut recorded: Vec<String> = listed.iter().map(|s| s.location.clone()).collect();
                on_disk.sort();
                recorded.sort();
                assert_eq!(on_disk, recorded, "{id}: the disk agrees with the record");
            }
            eprintln!("power cut scenario: records, volumes and data agree");
        }
        other => panic!("{POWER_CUT_ENV}={other}: not a phase"),
    }
}
