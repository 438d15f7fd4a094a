//! Case 7, off-host copies, side by side with restic 0.14 on one SeaweedFS
//! (started here, one bucket each): a container of about 2 GB in 200,000
//! files (200 MB in 20,000 with --quick), data that does not compress.
//!
//! (a) first export vs restic's first backup, (b) 10 files changed: the
//! incremental export vs restic's next backup, (c) an unchanged snapshot,
//! (d) import vs `restic restore`, (e) the daemon's memory while exporting.
//!
//! The export needs a remote in the daemon's configuration, so this case
//! starts a second rollpointd with the suite's configuration plus one
//! `[remotes]` table. restic gets its best case: each snapshot is
//! bind-mounted at one fixed path and backed up from there with one host
//! name, so it finds its parent and skips unchanged files by their metadata.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use object_store::{ObjectStore as _, ObjectStoreExt as _};
use rollpoint::api::client::Clients;
use rollpoint::api::proto;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::remote::pseudo_random;
use rollpoint::testkit::seaweedfs::SeaweedFs;
use serde_json::Value;
use tokio_stream::StreamExt as _;

use super::{Bench, DAEMON_CONFIG, REMOTE};
use crate::report::{Goal, Target, Unit};
use crate::setup::{self, check_interrupted, create_snapshot, free_bytes, progress, Container, Fallible, GIB, MIB};
use crate::stats::median;
use crate::stats::ms;

const RESTIC: &str = "/usr/bin/restic";
/// One path for every snapshot restic backs up: restic picks its parent by
/// host and paths, and only then skips unchanged files without reading them.
const RESTIC_SOURCE: &str = "/tmp/rp-bench-restic-src";
const RESTIC_HOST: &str = "bench";
const RESTIC_PASSWORD: &str = "rollpoint-bench-restic";
const ROLLPOINT_BUCKET: &str = "rollpoint-bucket";
const RESTIC_BUCKET: &str = "restic-bucket";
const REPOSITORY_PREFIX: &str = "rollpoint";
const REMOTE_NAME: &str = "bench-s3";

/// Every 500th file is large (1-4 MB), the rest small (1-9 kB): about half
/// the bytes in each kind.
const LARGE_EVERY: u64 = 500;
const CHANGED_FILES: u64 = 10;

const RSS_TARGET_MB: f64 = 200.0;
const UNCHANGED_TIME_TARGET_MS: f64 = 1000.0;
const UNCHANGED_BYTES_TARGET: f64 = 1e6;
const INCREMENTAL_SPEEDUP_TARGET: f64 = 10.0;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, 100 per second on
/// every architecture Linux exports to user space.
const USER_HZ: f64 = 100.0;
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

pub async fn run(bench: &mut Bench) -> Fallible<()> {
    let files = bench.options.pick(20_000, 200_000);
    let rounds = bench.options.pick(1, 3);
    let planned = planned_bytes(files);
    // The volume, the import target (both copies), SeaweedFS's two copies.
    let needed = 6 * planned + 4 * GIB;
    let free = free_bytes(&std::env::temp_dir())?;
    if free < needed {
        return Err(format!("remote: {} GB needed under the temp folder, {} GB free", needed / GIB, free / GIB).into());
    }

    // Dropped in reverse order, also on an early return: restic's cache and
    // the daemon go before the filesystems they read, the server (and both
    // repositories, in its data folder) last.
    progress("remote: starting SeaweedFS and a second daemon with the remote configured");
    let server = SeaweedFs::start(&[ROLLPOINT_BUCKET, RESTIC_BUCKET])?;
    let config_dir = tempfile::Builder::new().prefix("rollpoint-bench-remote-").tempdir()?;
    let source_fs = LoopBtrfs::create(2 * planned + 2 * GIB)?;
    let import_fs = LoopBtrfs::create(2 * planned + 2 * GIB)?;
    let container = Container::create(&source_fs, "offsite", 1, 0)?;
    let config = format!("{DAEMON_CONFIG}{}", remote_table(&server, config_dir.path())?);
    let daemon = TestDaemon::start_with(Path::new(setup::DAEMON), DaemonOptions::default().config(config)).await?;
    let pid = daemon.pid().ok_or("the remote case's daemon is not running")?;
    let mut clients = daemon.clients().await?;
    let restic = Restic::new(&server)?;
    bench.report.note(format!(
        "section 7 runs on a second rollpointd (same build), configured with {:?} plus [remotes.{REMOTE_NAME}] \
         (s3://{ROLLPOINT_BUCKET}/{REPOSITORY_PREFIX} on the case's SeaweedFS); restic 0.14 writes to \
         s3:{}/{RESTIC_BUCKET} on the same server",
        DAEMON_CONFIG.trim(),
        server.endpoint()
    ));

    container.wait_for_processes(1)?;
    progress(format!("remote: writing {files} files (about {} MB)", planned / 1_000_000));
    let started = Instant::now();
    write_tree(&container.volume, files)?;
    setup::sync_fs(&container.volume)?;
    progress(format!("  written and synced in {:.1} s", started.elapsed().as_secs_f64()));
    container.register(&mut clients, None).await?;
    clients
        .remotes
        .init_remote(proto::InitRemoteRequest { remote: REMOTE_NAME.into() })
        .await
        .map_err(|s| format!("InitRemote {REMOTE_NAME}: {:?}: {}", s.code(), s.message()))?;
    restic.run(&["init"])?;

    let id = container.id.clone();
    let size = format!("{:.2} GB in {files} files", planned as f64 / 1e9);
    let first = create_snapshot(&mut clients, &id, "first").await?;

    // (a) and (e): the first copy. The data was just written, so both read
    // it from the page cache.
    progress("remote: first export, first restic backup");
    let export = export_watched(&mut clients, &id, &first.name, pid).await?;
    let snapshot = export.result.snapshot.clone().ok_or("no snapshot in the export result")?;
    let logical = snapshot.logical_bytes as f64;
    let backup = restic.backup(&first.location)?;
    let ours = logical / 1e6 / export.took.as_secs_f64();
    let theirs = logical / 1e6 / backup.took.as_secs_f64();
    bench.report.add(
        REMOTE,
        "remote.first.rollpoint",
        format!("{size}: first export (ExportSnapshot)"),
        Unit::MBps,
        vec![ours],
        None,
        Target::info(),
        format!(
            "logical bytes / client-side time; {:.1} s, added {}; phases: {}; daemon CPU {}",
            export.took.as_secs_f64(),
            Unit::Bytes.format(snapshot.added_bytes as f64),
            export.phases,
            export.usage.cpu_text(export.took)
        ),
    );
    bench.report.add(
        REMOTE,
        "remote.first.restic",
        format!("{size}: restic's first backup"),
        Unit::MBps,
        vec![theirs],
        None,
        Target::info(),
        format!(
            "the same logical bytes / time; {:.1} s, {}; restic CPU {}",
            backup.took.as_secs_f64(),
            backup.summary_text(),
            backup.usage.cpu_text(backup.took)
        ),
    );
    bench.report.add(
        REMOTE,
        "remote.first.ratio",
        "first copy: restic MB/s / rollpoint MB/s",
        Unit::Ratio,
        vec![theirs / ours],
        None,
        Target::goal("<= 1 (rollpoint >= restic)", Goal::Median(1.0)),
        "",
    );
    let rss_limit_mib = RSS_TARGET_MB * 1e6 / MIB as f64;
    bench.report.add(
        REMOTE,
        "remote.rss.export",
        "daemon RSS during the first export (max)",
        Unit::MiB,
        vec![export.usage.max_rss_mib],
        None,
        Target::goal(format!("<= 200 MB ({rss_limit_mib:.1} MiB)"), Goal::Max(rss_limit_mib)),
        format!("VmRSS sampled every {} ms", SAMPLE_INTERVAL.as_millis()),
    );
    bench.report.add(
        REMOTE,
        "remote.rss.restic",
        "restic RSS during its first backup (max)",
        Unit::MiB,
        vec![backup.usage.max_rss_mib],
        None,
        Target::info(),
        "",
    );

    // (b): 10 files changed between two snapshots.
    progress(format!("remote: {CHANGED_FILES} files changed, incremental export and restic backup: {rounds} of each"));
    let (mut incremental, mut restic_incremental, mut methods) = (vec![], vec![], Vec::new());
    for round in 0..rounds {
        check_interrupted()?;
        change_files(&container.volume, files, round)?;
        let snapshot = create_snapshot(&mut clients, &id, &format!("changed-{round}")).await?;
        let export = export_watched(&mut clients, &id, &snapshot.name, pid).await?;
        incremental.push(ms(export.took));
        methods.push(format!("{} ({})", export.result.method, export.phases));
        restic_incremental.push(ms(restic.backup(&snapshot.location)?.took));
    }
    let (ours, theirs) = (median(&incremental), median(&restic_incremental));
    bench.report.add(
        REMOTE,
        "remote.incremental.rollpoint",
        format!("{CHANGED_FILES} files changed: incremental export"),
        Unit::Ms,
        incremental,
        None,
        Target::info(),
        format!("method and phases: {}", methods.join("; ")),
    );
    bench.report.add(
        REMOTE,
        "remote.incremental.restic",
        format!("{CHANGED_FILES} files changed: restic backup (parent found)"),
        Unit::Ms,
        restic_incremental,
        None,
        Target::info(),
        format!("each snapshot bind-mounted at {RESTIC_SOURCE}, --host {RESTIC_HOST}"),
    );
    bench.report.add(
        REMOTE,
        "remote.incremental.ratio",
        "10 files changed: rollpoint time / restic time",
        Unit::Ratio,
        vec![ours / theirs],
        None,
        Target::goal("<= 1/10 (>= 10x faster)", Goal::Median(1.0 / INCREMENTAL_SPEEDUP_TARGET)),
        "medians",
    );

    // (c): nothing changed since the last export.
    progress(format!("remote: unchanged snapshot, export and restic backup: {rounds} of each"));
    let rollpoint_store = server.store(ROLLPOINT_BUCKET)?;
    let restic_store = server.store(RESTIC_BUCKET)?;
    let (mut took, mut uploaded, mut bucket_growth) = (vec![], vec![], vec![]);
    let (mut restic_took, mut restic_growth) = (vec![], vec![]);
    let mut last = String::new();
    for round in 0..rounds {
        check_interrupted()?;
        let snapshot = create_snapshot(&mut clients, &id, &format!("unchanged-{round}")).await?;
        let before = bucket_bytes(&rollpoint_store).await?;
        let export = export_watched(&mut clients, &id, &snapshot.name, pid).await?;
        let exported = export.result.snapshot.clone().ok_or("no snapshot in the export result")?;
        let manifest = object_size(&rollpoint_store, &format!("{REPOSITORY_PREFIX}/snapshots/{}", exported.id)).await?;
        took.push(ms(export.took));
        uploaded.push((exported.added_bytes + manifest) as f64);
        bucket_growth.push(bucket_bytes(&rollpoint_store).await?.saturating_sub(before) as f64);
        last = snapshot.name.clone();

        let before = bucket_bytes(&restic_store).await?;
        restic_took.push(ms(restic.backup(&snapshot.location)?.took));
        restic_growth.push(bucket_bytes(&restic_store).await?.saturating_sub(before) as f64);
    }
    bench.report.add(
        REMOTE,
        "remote.unchanged.rollpoint.time",
        "unchanged snapshot: export",
        Unit::Ms,
        took,
        None,
        Target::goal("<= 1 s (target)", Goal::Max(UNCHANGED_TIME_TARGET_MS)),
        "",
    );
    bench.report.add(
        REMOTE,
        "remote.unchanged.rollpoint.bytes",
        "unchanged snapshot: export's added_bytes + manifest",
        Unit::Bytes,
        uploaded,
        None,
        Target::goal("<= 1 MB (target)", Goal::Max(UNCHANGED_BYTES_TARGET)),
        format!("the bucket grew by {} (median, every object counted)", Unit::Bytes.format(median(&bucket_growth))),
    );
    bench.report.add(
        REMOTE,
        "remote.unchanged.restic.time",
        "unchanged snapshot: restic backup",
        Unit::Ms,
        restic_took,
        None,
        Target::info(),
        "",
    );
    bench.report.add(
        REMOTE,
        "remote.unchanged.restic.bytes",
        "unchanged snapshot: restic's bucket growth",
        Unit::Bytes,
        restic_growth,
        None,
        Target::info(),
        "",
    );

    // (d): both bring back the last snapshot onto a second filesystem.
    progress("remote: import and restic restore");
    let target = import_fs.mount_point().join("rollpoint-import");
    let import = import_watched(&mut clients, &id, &last, &target, pid).await?;
    let written = import.result.bytes_written as f64;
    let restored = import_fs.mount_point().join("restic-restore");
    let restore = restic.restore_latest(&restored)?;
    let ours = logical / 1e6 / import.took.as_secs_f64();
    let theirs = logical / 1e6 / restore.took.as_secs_f64();
    bench.report.add(
        REMOTE,
        "remote.import.rollpoint",
        format!("{size}: import (ImportSnapshot to a new path)"),
        Unit::MBps,
        vec![ours],
        None,
        Target::info(),
        format!(
            "{:.1} s, {} written; phases: {}; daemon CPU {}, RSS max {:.1} MiB",
            import.took.as_secs_f64(),
            Unit::Bytes.format(written),
            import.phases,
            import.usage.cpu_text(import.took),
            import.usage.max_rss_mib
        ),
    );
    bench.report.add(
        REMOTE,
        "remote.import.restic",
        format!("{size}: restic restore latest + syncfs"),
        Unit::MBps,
        vec![theirs],
        None,
        Target::info(),
        format!(
            "{:.1} s; syncfs added, as the import syncs before it answers; restic CPU {}, RSS max {:.1} MiB",
            restore.took.as_secs_f64(),
            restore.usage.cpu_text(restore.took),
            restore.usage.max_rss_mib
        ),
    );
    bench.report.add(
        REMOTE,
        "remote.import.ratio",
        "import: restic MB/s / rollpoint MB/s",
        Unit::Ratio,
        vec![theirs / ours],
        None,
        Target::goal("<= 1 (rollpoint >= restic)", Goal::Median(1.0)),
        "",
    );

    Ok(())
}

/// The `[remotes.NAME]` table, its credentials in a 0600 file under `dir`.
fn remote_table(server: &SeaweedFs, dir: &Path) -> Fallible<String> {
    let credentials = dir.join("s3.credentials");
    std::fs::write(
        &credentials,
        format!("access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n", server.access_key(), server.secret_key()),
    )
    .map_err(|e| format!("write {}: {e}", credentials.display()))?;
    std::fs::set_permissions(&credentials, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(format!(
        "\n[remotes.{REMOTE_NAME}]\nurl = \"s3://{ROLLPOINT_BUCKET}/{REPOSITORY_PREFIX}\"\nendpoint = \"{}\"\n\
         allow_http = true\ncredentials_file = \"{}\"\nkey_file = \"{}\"\n",
        server.endpoint(),
        credentials.display(),
        dir.join(format!("{REMOTE_NAME}.key")).display()
    ))
}

fn file_len(index: u64) -> usize {
    if index.is_multiple_of(LARGE_EVERY) {
        1_000_000 + (index * 7919 % 3_000_000) as usize
    } else {
        1000 + (index * 977 % 8001) as usize
    }
}

fn planned_bytes(files: u64) -> u64 {
    (0..files).map(|i| file_len(i) as u64).sum()
}

/// `tree/dNN/eNN/fNNNNNN`: 100 files per folder.
fn file_path(root: &Path, index: u64) -> PathBuf {
    root.join(format!("tree/d{:02}/e{:02}/f{index:06}", index / 10_000, index / 100 % 100))
}

/// Every file its own seed, so no two chunks deduplicate.
fn write_tree(root: &Path, files: u64) -> Fallible<()> {
    for index in 0..files {
        let path = file_path(root, index);
        if index % 100 == 0 {
            check_interrupted()?;
            let folder = path.parent().ok_or("a file path has a folder")?;
            std::fs::create_dir_all(folder).map_err(|e| format!("mkdir {}: {e}", folder.display()))?;
        }
        std::fs::write(&path, pseudo_random(file_len(index), index))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Rewrites 10 small files spread over the tree with new content.
fn change_files(root: &Path, files: u64, round: u64) -> Fallible<()> {
    for k in 0..CHANGED_FILES {
        let index = k * (files / CHANGED_FILES) + round + 1;
        let path = file_path(root, index);
        let seed = (round + 1) * 1_000_000_007 + index;
        std::fs::write(&path, pseudo_random(file_len(index), seed))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    setup::sync_fs(root)
}

/// Total size of the objects in a bucket.
async fn bucket_bytes(store: &object_store::aws::AmazonS3) -> Fallible<u64> {
    let mut listing = store.list(None);
    let mut bytes = 0;
    while let Some(meta) = listing.next().await {
        bytes += meta?.size;
    }
    Ok(bytes)
}

async fn object_size(store: &object_store::aws::AmazonS3, key: &str) -> Fallible<u64> {
    Ok(store.head(&object_store::path::Path::from(key)).await.map_err(|e| format!("HEAD {key}: {e}"))?.size)
}

/// What a process used while it was watched.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    max_rss_mib: f64,
    cpu_seconds: f64,
}

impl Usage {
    fn cpu_text(&self, wall: Duration) -> String {
        format!(
            "{:.1} s over {:.1} s ({:.2} cores)",
            self.cpu_seconds,
            wall.as_secs_f64(),
            self.cpu_seconds / wall.as_secs_f64()
        )
    }
}

/// Samples a process's VmRSS and CPU time every 100 ms on a thread of its
/// own, so the figures do not depend on the async runtime being free.
struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Usage>,
}

impl Watch {
    fn start(pid: u32) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let first_cpu = cpu_seconds(pid).unwrap_or(0.0);
            let mut usage = Usage::default();
            loop {
                if let Ok(rss) = setup::rss_mib(pid) {
                    usage.max_rss_mib = usage.max_rss_mib.max(rss);
                }
                if let Some(cpu) = cpu_seconds(pid) {
                    usage.cpu_seconds = cpu - first_cpu;
                }
                if stopped.load(Ordering::SeqCst) {
                    return usage;
                }
                std::thread::sleep(SAMPLE_INTERVAL);
            }
        });
        Watch { stop, thread }
    }

    fn finish(self) -> Usage {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

/// utime + stime of a process, from `/proc/<pid>/stat` (fields 14 and 15,
/// counted after the command name, which may hold spaces).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / USER_HZ)
}

/// An export or import followed to its end.
struct Followed<R> {
    result: R,
    took: Duration,
    /// Each phase the progress named, with how long it lasted.
    phases: String,
    usage: Usage,
}

enum Step<R> {
    Progress(proto::TransferProgress),
    Done(R),
}

/// The two streams' messages, as one shape.
trait TransferUpdate {
    type Result;
    fn step(self) -> Option<Step<Self::Result>>;
}

impl TransferUpdate for proto::ExportSnapshotResponse {
    type Result = proto::ExportResult;
    fn step(self) -> Option<Step<proto::ExportResult>> {
        match self.update? {
            proto::export_snapshot_response::Update::Progress(p) => Some(Step::Progress(p)),
            proto::export_snapshot_response::Update::Result(r) => Some(Step::Done(r)),
        }
    }
}

impl TransferUpdate for proto::ImportSnapshotResponse {
    type Result = proto::ImportResult;
    fn step(self) -> Option<Step<proto::ImportResult>> {
        match self.update? {
            proto::import_snapshot_response::Update::Progress(p) => Some(Step::Progress(p)),
            proto::import_snapshot_response::Update::Result(r) => Some(Step::Done(r)),
        }
    }
}

async fn export_watched(
    clients: &mut Clients,
    container: &str,
    snapshot: &str,
    pid: u32,
) -> Fallible<Followed<proto::ExportResult>> {
    let watch = Watch::start(pid);
    let sent = Instant::now();
    let request = proto::ExportSnapshotRequest {
        container: container.into(),
        snapshot: snapshot.into(),
        remote: REMOTE_NAME.into(),
    };
    let what = format!("ExportSnapshot {container}/{snapshot}");
    let stream = clients.remotes.export_snapshot(request).await;
    let followed = follow(stream, sent, watch, &what).await?;
    if followed.result.already_exported {
        return Err(format!("{what}: already exported, nothing was measured").into());
    }
    Ok(followed)
}

async fn import_watched(
    clients: &mut Clients,
    container: &str,
    snapshot: &str,
    target: &Path,
    pid: u32,
) -> Fallible<Followed<proto::ImportResult>> {
    let watch = Watch::start(pid);
    let sent = Instant::now();
    let request = proto::ImportSnapshotRequest {
        remote: REMOTE_NAME.into(),
        container: container.into(),
        snapshot: snapshot.into(),
        target_path: target.to_str().ok_or("target path is not UTF-8")?.into(),
    };
    let what = format!("ImportSnapshot {container}/{snapshot}");
    let stream = clients.remotes.import_snapshot(request).await;
    follow(stream, sent, watch, &what).await
}

async fn follow<U: TransferUpdate>(
    stream: Result<tonic::Response<tonic::Streaming<U>>, tonic::Status>,
    sent: Instant,
    watch: Watch,
    what: &str,
) -> Fallible<Followed<U::Result>> {
    let failed = |s: tonic::Status| format!("{what}: {:?}: {}", s.code(), s.message());
    let mut stream = match stream {
        Ok(reply) => reply.into_inner(),
        Err(status) => {
            watch.finish();
            return Err(failed(status).into());
        }
    };
    let mut phases: Vec<(String, Instant)> = Vec::new();
    let mut result = None;
    while let Some(update) = stream.next().await {
        match update.map_err(failed) {
            Ok(update) => match update.step() {
                Some(Step::Progress(p)) if phases.last().is_none_or(|(name, _)| *name != p.phase) => {
                    phases.push((p.phase, Instant::now()));
                }
                Some(Step::Done(done)) => result = Some(done),
                _ => {}
            },
            Err(error) => {
                watch.finish();
                return Err(error.into());
            }
        }
    }
    let took = sent.elapsed();
    let usage = watch.finish();
    let result = result.ok_or_else(|| format!("{what}: the stream ended without a result"))?;
    let ended = sent + took;
    let phases = phases
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| name != "done")
        .map(|(i, (name, began))| {
            let until = phases.get(i + 1).map_or(ended, |(_, next)| *next);
            format!("{name} {:.2} s", (until - *began).as_secs_f64())
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Followed { result, took, phases, usage })
}

/// A snapshot bind-mounted at [`RESTIC_SOURCE`] for one backup; dropping it
/// unmounts it.
struct BindMount {
    target: PathBuf,
}

impl BindMount {
    fn new(source: &Path) -> Fallible<BindMount> {
        let target = PathBuf::from(RESTIC_SOURCE);
        std::fs::create_dir_all(&target).map_err(|e| format!("mkdir {}: {e}", target.display()))?;
        nix::mount::mount(Some(source), &target, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| format!("mount --bind {} {}: {e}", source.display(), target.display()))?;
        Ok(BindMount { target })
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        if nix::mount::umount(&self.target).is_err() {
            let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir(&self.target);
    }
}

/// One restic run.
struct Ran {
    took: Duration,
    usage: Usage,
    /// The last JSON line restic printed (`--json`: the backup's summary).
    summary: Option<Value>,
}

impl Ran {
    fn summary_text(&self) -> String {
        let Some(summary) = &self.summary else { return "no summary".into() };
        format!(
            "{} files new, {} processed, {} added",
            summary["files_new"],
            Unit::Bytes.format(summary["total_bytes_processed"].as_f64().unwrap_or(f64::NAN)),
            Unit::Bytes.format(summary["data_added"].as_f64().unwrap_or(f64::NAN))
        )
    }
}

/// restic with the bucket's repository, credentials and a cache folder of
/// its own (removed on drop).
struct Restic {
    repository: String,
    access_key: String,
    secret_key: String,
    cache: tempfile::TempDir,
}

impl Restic {
    fn new(server: &SeaweedFs) -> Fallible<Restic> {
        Ok(Restic {
            repository: format!("s3:{}/{RESTIC_BUCKET}", server.endpoint()),
            access_key: server.access_key().into(),
            secret_key: server.secret_key().into(),
            cache: tempfile::Builder::new().prefix("rollpoint-bench-restic-cache-").tempdir()?,
        })
    }

    fn run(&self, args: &[&str]) -> Fallible<Ran> {
        let cache = self.cache.path().to_str().ok_or("cache path is not UTF-8")?;
        let mut command = Command::new(RESTIC);
        command
            .args(["-r", &self.repository, "--cache-dir", cache])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let child = command.spawn().map_err(|e| format!("{RESTIC}: {e}"))?;
        let watch = Watch::start(child.id());
        let output = child.wait_with_output();
        let took = started.elapsed();
        let usage = watch.finish();
        let output = output?;
        if !output.status.success() {
            return Err(format!(
                "restic {}: {}: {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
            .into());
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary = stdout.lines().rev().find_map(|line| serde_json::from_str::<Value>(line).ok());
        Ok(Ran { took, usage, summary })
    }

    /// Backs up `snapshot` from the one fixed path, as host `bench`.
    fn backup(&self, snapshot: &str) -> Fallible<Ran> {
        let mount = BindMount::new(Path::new(snapshot))?;
        let ran = self.run(&["backup", "--json", "--host", RESTIC_HOST, RESTIC_SOURCE]);
        drop(mount);
        ran
    }

    /// Restores the newest backup into `target` and syncs its filesystem,
    /// both timed.
    fn restore_latest(&self, target: &Path) -> Fallible<Ran> {
        let target_text = target.to_str().ok_or("target path is not UTF-8")?;
        let started = Instant::now();
        let mut ran = self.run(&["restore", "latest", "--target", target_text])?;
        setup::sync_fs(target)?;
        ran.took = started.elapsed();
        Ok(ran)
    }
}
