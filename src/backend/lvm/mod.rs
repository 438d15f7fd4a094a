//! The LVM thin-pool backend: a container's volume is a thin LV (`vg0/db-1`)
//! mounted at the container's root; snapshots are thin snapshots in the same
//! pool (`lvcreate -s`, no size), made and read with the lvm2 tools run from
//! their fixed path, never looked up in `PATH`.
//!
//! How the trait maps onto LVM:
//! - volume: `vg/lv`; `VolumeInfo::snapshot_dir` is not a folder but the
//!   common part of the container's snapshot names, `vg/rp-<container>.`
//!   (see [`names`]); a location is `vg/<snapshot LV>`.
//! - flush: `syncfs` on every whole mount of the LV's device.
//! - create_snapshot: refuses when the pool's data or metadata use is above
//!   the threshold ([`BackendError::PoolFull`]), then `lvcreate -s -n NAME
//!   -ky --addtag rollpoint [-p r] vg/source`. Thin snapshots skip activation
//!   (`k`): they are activated with `-K` only when they become a volume.
//! - rename: `lvrename`. exchange: LVM has no atomic swap of two names, so
//!   it is a dance of three renames around an unmount and a mount, made
//!   recoverable: before anything moves, the volume being swapped out gets
//!   tags naming both LVs and how it was mounted. Every later call on the VG
//!   first finishes an exchange it finds half done (renames, activation
//!   flags, tags, the mount), so the volume name always ends up holding the
//!   new state or the old one, mounted where it was, and `details(volume)`
//!   (what start-up recovery reads) answers only once that is settled.
//! - details: `lvs --reportformat json`: uuid is the LV uuid (kept across
//!   renames), read_only is the LV permission; the generation is ext4's
//!   `lifetime_write_kbytes` while mounted, otherwise a value never returned
//!   before (so "no writes since" is never claimed when it cannot be known).
//! - delete_snapshot: `lvremove`, only of LVs tagged `rollpoint`.
//! - list_snapshots: LVs of the VG named with the container's prefix and
//!   tagged `rollpoint`.
//! - exclusive_bytes: `thin_ls` over a metadata snapshot of the live pool;
//!   delta_bytes: `thin_delta` between the two snapshots' thin devices.
//! - readable_root: a read-only mount of a throwaway snapshot ([`views`]).
//! - metadata_dir: a folder on the VG's metadata volume ([`metadata`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{Backend, BackendError, SnapshotDetails, VolumeInfo};
use crate::fault;
use mounts::DeviceMount;
use names::{swap_tags, LvName, OURS_TAG, PREFIX};
use report::{LvRow, PoolFill};

pub mod metadata;
pub mod mounts;
pub mod names;
pub mod report;
pub mod views;

/// The lvm2 multi-call binary (Debian: /sbin is /usr/sbin).
pub const LVM: &str = "/usr/sbin/lvm";
/// device-mapper's tool, to reserve a metadata snapshot of a live pool.
pub const DMSETUP: &str = "/usr/sbin/dmsetup";
/// thin-provisioning-tools' lister, which can tell blocks only one thin
/// volume maps from shared ones.
pub const THIN_LS: &str = "/usr/sbin/thin_ls";
/// thin-provisioning-tools' comparer of two thin volumes' mappings.
pub const THIN_DELTA: &str = "/usr/sbin/thin_delta";
/// Refuse a snapshot when the pool's data or metadata use is above this (%).
pub const DEFAULT_POOL_THRESHOLD_PERCENT: f64 = 90.0;

/// The LVM thin-pool implementation of [`Backend`]. Stateless apart from its
/// settings: everything else is read back from LVM.
#[derive(Debug, Clone)]
pub struct LvmBackend {
    lvm: PathBuf,
    pool_threshold_percent: f64,
}

impl Default for LvmBackend {
    fn default() -> Self {
        LvmBackend { lvm: PathBuf::from(LVM), pool_threshold_percent: DEFAULT_POOL_THRESHOLD_PERCENT }
    }
}

/// How an interrupted exchange was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Nothing had moved: the volume holds its old state.
    RolledBack,
    /// The swap was completed.
    Finished,
}

impl LvmBackend {
    pub fn new() -> Self {
        LvmBackend::default()
    }

    /// Sets the pool fill (percent of data or of metadata) above which
    /// snapshots are refused.
    pub fn with_pool_threshold(mut self, percent: f64) -> Self {
        self.pool_threshold_percent = percent;
        self
    }

    /// Runs another lvm binary (tests).
    pub fn with_lvm_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.lvm = path.into();
        self
    }

    pub fn pool_threshold_percent(&self) -> f64 {
        self.pool_threshold_percent
    }

    /// Runs `lvm <args>`; `subject` (a `vg/lv`) names what a failure is about.
    fn run(&self, args: &[&str], subject: &str) -> Result<String, BackendError> {
        let output = Command::new(&self.lvm)
            .args(args)
            .env("LC_ALL", "C")
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .stdin(Stdio::null())
            .output()
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => BackendError::NotThinVolume {
                    volume: subject.to_owned(),
                    reason: format!("{} is missing: LVM volumes need lvm2 installed", self.lvm.display()),
                },
                _ => BackendError::io("run", &self.lvm, err),
            })?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail: Vec<&str> =
            stderr.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("WARNING")).collect();
        let detail = if detail.is_empty() { format!("exited with {}", output.status) } else { detail.join("; ") };
        Err(classify_failure(&format!("lvm {}", args.join(" ")), subject, detail))
    }

    /// Every LV of `vg`, as LVM reports it now.
    fn report(&self, vg: &str) -> Result<Vec<LvRow>, BackendError> {
        let json =
            self.run(&["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", report::FIELDS, vg], vg)?;
        report::parse_lvs(&json).map_err(|detail| BackendError::Lvm { command: "lvm lvs".into(), detail })
    }

    /// Every LV of `vg`, after finishing any exchange left half done (by a
    /// crash, or by an error that could not be settled at the time). An
    /// exchange another thread of this process is running is left to it.
    fn settled_report(&self, vg: &str) -> Result<Vec<LvRow>, BackendError> {
        let mut rows = self.report(vg)?;
        let mut settled = BTreeSet::new();
        loop {
            let pending = rows.iter().find(|r| {
                r.tag_value(swap_tags::VOLUME)
                    .is_some_and(|v| !settled.contains(v) && !is_claimed(&format!("{vg}/{v}")))
            });
            let Some(volume_lv) = pending.and_then(|r| r.tag_value(swap_tags::VOLUME)).map(str::to_string) else {
                return Ok(rows);
            };
            if let Some(_claim) = Claim::take(&format!("{vg}/{volume_lv}")) {
                // Read again under the claim: it may have been settled since.
                rows = self.report(vg)?;
                if let Some(old) =
                    rows.iter().find(|r| r.tag_value(swap_tags::VOLUME) == Some(volume_lv.as_str())).cloned()
                {
                    let outcome = self.settle_exchange(vg, &old, &rows)?;
                    tracing::warn!(vg, volume = %volume_lv, ?outcome, "settled an interrupted exchange");
                }
            }
            settled.insert(volume_lv);
            rows = self.report(vg)?;
        }
    }

    fn lvchange(&self, lv: &LvName, args: &[&str]) -> Result<(), BackendError> {
        let full = lv.full();
        let mut all = vec!["lvchange"];
        all.extend_from_slice(args);
        all.push(&full);
        self.run(&all, &full).map(drop)
    }

    fn lvrename(&self, vg: &str, from: &str, to: &str) -> Result<(), BackendError> {
        self.run(&["lvrename", vg, from, to], &format!("{vg}/{from}")).map(drop)
    }

    /// Activates an LV, overriding its activation-skip flag.
    fn activate(&self, lv: &LvName) -> Result<(), BackendError> {
        self.lvchange(lv, &["--activate", "y", "--ignoreactivationskip"])
    }

    /// `/dev/mapper/<vg>-<lv>`: created by lvm itself without udev.
    fn device_path(lv: &LvName) -> PathBuf {
        Path::new("/dev/mapper").join(names::dm_name(&lv.vg, &lv.lv))
    }

    /// Finishes (or undoes, when nothing had been renamed yet) the exchange
    /// recorded in the swap tags of `old`, the LV that was the volume.
    fn settle_exchange(&self, vg: &str, old: &LvRow, rows: &[LvRow]) -> Result<Settled, BackendError> {
        let volume_lv = old.tag_value(swap_tags::VOLUME).unwrap_or_default().to_string();
        let with_lv = old.tag_value(swap_tags::WITH).unwrap_or_default().to_string();
        let mount = decode_mount(old);
        let volume = LvName { vg: vg.to_string(), lv: volume_lv.clone() };
        let aside = names::swap_aside_lv(&volume_lv);
        let exists = |name: &str| rows.iter().any(|r| r.name == name);
        let swap_tag_args: Vec<String> = old
            .tags
            .iter()
            .filter(|t| swap_tags::is_swap_tag(t))
            .flat_map(|t| ["--deltag".to_string(), t.clone()])
            .collect();
        let swap_tag_args: Vec<&str> = swap_tag_args.iter().map(String::as_str).collect();

        if old.name == volume_lv {
            // Nothing renamed: the volume keeps its state; put its mount back.
            if let Some(mount) = &mount {
                self.ensure_mounted(&volume, mount)?;
            }
            self.lvchange(&volume, &swap_tag_args)?;
            return Ok(Settled::RolledBack);
        }
        if with_lv.is_empty() || volume_lv.is_empty() {
            return Err(BackendError::Lvm {
                command: "settle exchange".into(),
                detail: format!("{vg}/{}: swap tags without both names: {:?}", old.name, old.tags),
            });
        }
        if old.name == aside {
            if !exists(&volume_lv) {
                self.lvrename(vg, &with_lv, &volume_lv)?;
            }
            self.lvrename(vg, &aside, &with_lv)?;
        } else if old.name != with_lv {
            return Err(BackendError::Lvm {
                command: "settle exchange".into(),
                detail: format!("{vg}/{} carries swap tags for {volume_lv} and {with_lv}", old.name),
            });
        }
        let old_now = LvName { vg: vg.to_string(), lv: with_lv.clone() };
        self.finish_exchange(&volume, &old_now, mount.as_ref(), &swap_tag_args)?;
        Ok(Settled::Finished)
    }

    /// After the renames: the new volume boots like the old one did, is
    /// mounted where the old one was; the old one becomes one of our
    /// snapshots (tagged, activation-skip, inactive), and the swap tags go.
    fn finish_exchange(
        &self,
        volume: &LvName,
        old: &LvName,
        mount: Option<&DeviceMount>,
        swap_tag_args: &[&str],
    ) -> Result<(), BackendError> {
        let rows = self.report(&volume.vg)?;
        let row = |name: &str| rows.iter().find(|r| r.name == name).cloned();
        let new_row = row(&volume.lv).ok_or_else(|| BackendError::NotFound { path: volume.full().into() })?;
        let mut args = Vec::new();
        if new_row.skips_activation() {
            args.extend(["--setactivationskip", "n"]);
        }
        if new_row.has_tag(OURS_TAG) {
            args.extend(["--deltag", OURS_TAG]);
        }
        if !args.is_empty() {
            self.lvchange(volume, &args)?;
        }
        if !new_row.active() {
            self.activate(volume)?;
        }
        if let Some(mount) = mount {
            self.ensure_mounted(volume, mount)?;
        }
        fault::point("lvm.exchange.mounted");
        let old_row = row(&old.lv).ok_or_else(|| BackendError::NotFound { path: old.full().into() })?;
        let mut args: Vec<&str> = swap_tag_args.to_vec();
        if !old_row.skips_activation() {
            args.extend(["--setactivationskip", "y"]);
        }
        if !old_row.has_tag(OURS_TAG) {
            args.extend(["--addtag", OURS_TAG]);
        }
        if old_row.active() {
            // The old state needs no device any more; it comes back with
            // `-K` if it is ever restored.
            self.lvchange(old, &["--activate", "n"])?;
        }
        if !args.is_empty() {
            self.lvchange(old, &args)?;
        }
        Ok(())
    }

    /// Mounts `lv` as `mount` says, unless it is mounted there already.
    fn ensure_mounted(&self, lv: &LvName, mount: &DeviceMount) -> Result<(), BackendError> {
        let rows = self.report(&lv.vg)?;
        let row =
            rows.iter().find(|r| r.name == lv.lv).ok_or_else(|| BackendError::NotFound { path: lv.full().into() })?;
        let device = match row.device {
            Some(device) => device,
            None => {
                self.activate(lv)?;
                let rows = self.report(&lv.vg)?;
                rows.iter().find(|r| r.name == lv.lv).and_then(|r| r.device).ok_or_else(|| BackendError::Lvm {
                    command: "activate".into(),
                    detail: format!("{lv} has no device after activation"),
                })?
            }
        };
        if mounts::current_mounts(device)?.iter().any(|m| m.mount_point == mount.mount_point) {
            return Ok(());
        }
        mounts::mount(&Self::device_path(lv), mount)
    }

    /// Generation stand-in: ext4's lifetime write count while the LV is
    /// mounted (it moves with every write reaching the device), otherwise a
    /// number never handed out before.
    fn generation(row: &LvRow) -> u64 {
        static UNKNOWN: AtomicU64 = AtomicU64::new(0);
        if let Some((_, minor)) = row.device {
            let path = format!("/sys/fs/ext4/dm-{minor}/lifetime_write_kbytes");
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Ok(kbytes) = text.trim().parse::<u64>() {
                    return kbytes;
                }
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let previous = UNKNOWN
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| Some(nanos.max(last.saturating_add(1))))
            .unwrap_or(0);
        // The top bit keeps it apart from real write counts.
        (1 << 63) | (nanos.max(previous.saturating_add(1)) & !(1 << 63))
    }

    /// Which thin pool holds `volume`, and how full it is now (data and
    /// metadata percent); `None` for the fill while the pool is inactive.
    pub fn pool_fill(&self, volume: &str) -> Result<(String, Option<PoolFill>), BackendError> {
        let name = LvName::parse(volume)?;
        let rows = self.settled_report(&name.vg)?;
        let row = find(&rows, &name)?;
        let pool = rows.iter().find(|r| r.name == row.pool && r.is_thin_pool()).ok_or_else(|| {
            BackendError::NotThinVolume { volume: volume.to_string(), reason: "no thin pool found".into() }
        })?;
        Ok((format!("{}/{}", name.vg, pool.name), PoolFill::of(pool)))
    }

    /// How much of the pool the snapshot at `location` has provisioned
    /// (thin volume size × data percent): the blocks it maps, shared with its
    /// origin or not. LVM reports it only for an active LV; `None` otherwise.
    pub fn mapped_bytes(&self, location: &str) -> Result<Option<u64>, BackendError> {
        let name = LvName::parse(location)?;
        let rows = self.settled_report(&name.vg)?;
        let row = find(&rows, &name)?;
        Ok(row.data_percent.map(|percent| ((row.size_bytes as f64) * percent / 100.0).round() as u64))
    }
}

/// Held from reserving a pool's metadata snapshot to releasing it.
static METADATA_SNAP: Mutex<()> = Mutex::new(());

/// Volumes (`vg/lv`) an exchange of this process is working on, so that
/// another thread's call on the same VG does not "settle" it under its feet.
static CLAIMED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn is_claimed(volume: &str) -> bool {
    CLAIMED.lock().contains(volume)
}

/// Exclusive right, within this process, to move a volume's names around.
struct Claim(String);

impl Claim {
    fn take(volume: &str) -> Option<Claim> {
        CLAIMED.lock().insert(volume.to_string()).then(|| Claim(volume.to_string()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        CLAIMED.lock().remove(&self.0);
    }
}

/// Runs a tool other than lvm from its fixed path.
fn run_tool(program: &str, args: &[&str]) -> Result<String, BackendError> {
    let output = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|err| BackendError::io("run", program, err))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(BackendError::Lvm {
            command: format!("{program} {}", args.join(" ")),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// `thin_ls --no-headers -o DEV,EXCLUSIVE_BYTES` output: thin id to bytes.
pub fn parse_thin_ls(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
        .collect()
}

fn find<'a>(rows: &'a [LvRow], name: &LvName) -> Result<&'a LvRow, BackendError> {
    rows.iter().find(|r| r.name == name.lv).ok_or_else(|| BackendError::NotFound { path: name.full().into() })
}

/// The source and target of a snapshot, parsed and checked: one VG, and a
/// target named as rollpoint's own.
fn snapshot_names(source: &str, location: &str) -> Result<(LvName, LvName), BackendError> {
    let source_name = LvName::parse(source)?;
    let target = LvName::parse(location)?;
    same_vg(&source_name, &target)?;
    if !target.lv.starts_with(PREFIX) {
        return Err(BackendError::InvalidName { name: location.to_string(), reason: "not a rollpoint snapshot name" });
    }
    Ok((source_name, target))
}

/// Turns an lvm failure into the error the engine understands.
fn classify_failure(command: &str, subject: &str, detail: String) -> BackendError {
    let lower = detail.to_lowercase();
    if lower.contains("already exists") {
        BackendError::AlreadyExists { path: subject.into() }
    } else if lower.contains("not found") || lower.contains("failed to find logical volume") {
        BackendError::NotFound { path: subject.into() }
    } else if lower.contains("insufficient free space")
        || lower.contains("free space in thin pool")
        || lower.contains("out of data space")
    {
        BackendError::NoSpace { op: "lvm", path: subject.into() }
    } else {
        BackendError::Lvm { command: command.to_string(), detail }
    }
}

/// The swap tags that say how the volume was mounted.
fn mount_tags(mount: &DeviceMount) -> Vec<String> {
    vec![
        format!("{}{}", swap_tags::MOUNT_POINT, crate::hex::encode(mount.mount_point.as_os_str().as_encoded_bytes())),
        format!("{}{}", swap_tags::FS_TYPE, crate::hex::encode(mount.fs_type.as_bytes())),
        format!("{}{:x}", swap_tags::FLAGS, mount.flags),
        format!("{}{}", swap_tags::DATA, crate::hex::encode(mount.data.as_bytes())),
    ]
}

fn decode_mount(row: &LvRow) -> Option<DeviceMount> {
    use std::os::unix::ffi::OsStringExt as _;
    let mount_point = crate::hex::decode(row.tag_value(swap_tags::MOUNT_POINT)?)?;
    Some(DeviceMount {
        mount_point: PathBuf::from(std::ffi::OsString::from_vec(mount_point)),
        fs_type: String::from_utf8(crate::hex::decode(row.tag_value(swap_tags::FS_TYPE)?)?).ok()?,
        flags: u64::from_str_radix(row.tag_value(swap_tags::FLAGS)?, 16).ok()?,
        data: String::from_utf8(crate::hex::decode(row.tag_value(swap_tags::DATA).unwrap_or(""))?).ok()?,
    })
}

/// Splits a `VolumeInfo::snapshot_dir` (`vg/rp-<container>.`).
fn snapshot_prefix_of(volume: &VolumeInfo) -> Option<(String, String)> {
    let text = volume.snapshot_dir.to_str()?;
    let (vg, prefix) = text.split_once('/')?;
    prefix.starts_with(PREFIX).then(|| (vg.to_string(), prefix.to_string()))
}

fn volume_name(volume: &VolumeInfo) -> Result<LvName, BackendError> {
    LvName::parse(&volume.path.to_string_lossy())
}

fn same_vg(a: &LvName, b: &LvName) -> Result<(), BackendError> {
    if a.vg == b.vg {
        Ok(())
    } else {
        Err(BackendError::InvalidName { name: b.full(), reason: "must be in the same volume group as the volume" })
    }
}

impl Backend for LvmBackend {
    fn kind(&self) -> &'static str {
        "lvm-thin"
    }

    fn inspect(&self, volume: &str, container: &str) -> Result<VolumeInfo, BackendError> {
        names::check_container(container)?;
        let name = LvName::parse(volume)?;
        if name.lv.starts_with(PREFIX) {
            return Err(BackendError::InvalidName {
                name: volume.to_string(),
                reason: "LV names starting with rp- are rollpoint's own (snapshots)",
            });
        }
        let rows = match self.settled_report(&name.vg) {
            // Named by the volume asked about, not only its VG.
            Err(BackendError::NotFound { .. }) => return Err(BackendError::NotFound { path: volume.into() }),
            Err(BackendError::NotThinVolume { reason, .. }) => {
                return Err(BackendError::NotThinVolume { volume: volume.into(), reason })
            }
            other => other?,
        };
        let row = find(&rows, &name)?;
        if !row.is_thin_volume() {
            return Err(BackendError::NotThinVolume {
                volume: volume.to_string(),
                reason: format!("its segment type is {:?}, not \"thin\"", row.segtype),
            });
        }
        if row.has_tag(OURS_TAG) {
            return Err(BackendError::NotThinVolume {
                volume: volume.to_string(),
                reason: "it is a rollpoint snapshot".into(),
            });
        }
        Ok(VolumeInfo {
            path: PathBuf::from(name.full()),
            snapshot_dir: PathBuf::from(format!("{}/{}", name.vg, names::snapshot_prefix(container))),
        })
    }

    fn flush(&self, volume: &VolumeInfo) -> Result<(), BackendError> {
        let name = volume_name(volume)?;
        let rows = self.settled_report(&name.vg)?;
        if let Some(device) = find(&rows, &name)?.device {
            for mount in mounts::current_mounts(device)? {
                mounts::sync_filesystem(&mount.mount_point)?;
            }
        }
        Ok(())
    }

    fn location(&self, volume: &VolumeInfo, name: &str) -> String {
        match snapshot_prefix_of(volume) {
            Some((vg, prefix)) => format!("{vg}/{}", names::snapshot_lv(&vg, &prefix, name)),
            // Not a VolumeInfo this backend made; a location nothing can be
            // found at, which every call then refuses as an invalid name.
            None => format!("{}/{name}", volume.snapshot_dir.display()),
        }
    }

    /// Not known here: a thin volume's snapshots take their space from the
    /// pool, whose own floor is `lvm_pool_threshold_percent` (checked by
    /// [`Backend::prepare_snapshot`]), not from the filesystem's.
    fn free_space(&self, _volume: &VolumeInfo) -> Result<crate::backend::FreeSpace, BackendError> {
        Ok(crate::backend::FreeSpace::default())
    }

    fn prepare_snapshot(&self, source: &str, location: &str) -> Result<(), BackendError> {
        let (source_name, target) = snapshot_names(source, location)?;
        let rows = self.settled_report(&target.vg)?;
        let source_row = find(&rows, &source_name)?;
        if !source_row.is_thin_volume() {
            return Err(BackendError::NotThinVolume {
                volume: source.to_string(),
                reason: format!("its segment type is {:?}, not \"thin\"", source_row.segtype),
            });
        }
        if rows.iter().any(|r| r.name == target.lv) {
            return Err(BackendError::AlreadyExists { path: location.into() });
        }
        if let Some(pool) = rows.iter().find(|r| r.name == source_row.pool && r.is_thin_pool()) {
            if let Some(fill) = PoolFill::of(pool) {
                if fill.above(self.pool_threshold_percent) {
                    return Err(BackendError::PoolFull {
                        pool: format!("{}/{}", target.vg, pool.name),
                        data_percent: fill.data_percent,
                        metadata_percent: fill.metadata_percent,
                        threshold: self.pool_threshold_percent,
                    });
                }
            }
        }
        Ok(())
    }

    /// One `lvcreate`, no report: the report and the checks that need it are
    /// [`Backend::prepare_snapshot`]'s, before the freeze (each lvm command
    /// is tens of milliseconds on real hardware, a second under emulation).
    /// lvcreate itself refuses a taken name or a source that is not thin.
    fn take_snapshot(&self, source: &str, location: &str, read_only: bool) -> Result<(), BackendError> {
        let (source_name, target) = snapshot_names(source, location)?;
        let source_full = source_name.full();
        let mut args = vec!["lvcreate", "--snapshot", "--name", &target.lv, "--setactivationskip", "y"];
        args.extend(["--addtag", OURS_TAG]);
        if read_only {
            args.extend(["--permission", "r"]);
        }
        args.push(&source_full);
        self.run(&args, location).map(drop)
    }

    /// A thin snapshot without the rollpoint tag (the user's volume, which
    /// can be registered), activated like any LV.
    fn create_clone(&self, location: &str, volume: &str) -> Result<(), BackendError> {
        let (source, target) = (LvName::parse(location)?, LvName::parse(volume)?);
        same_vg(&source, &target)?;
        let source_full = source.full();
        let args = ["lvcreate", "--snapshot", "--name", &target.lv, "--setactivationskip", "n", &source_full];
        self.run(&args, volume)?;
        self.activate(&target)
    }

    fn remove_clone(&self, volume: &str) -> Result<(), BackendError> {
        let name = LvName::parse(volume)?;
        self.run(&["lvremove", "--yes", &name.full()], volume).map(drop)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), BackendError> {
        let from_name = LvName::parse(from)?;
        let to_name = LvName::parse(to)?;
        same_vg(&from_name, &to_name)?;
        let rows = self.settled_report(&from_name.vg)?;
        find(&rows, &from_name)?;
        if rows.iter().any(|r| r.name == to_name.lv) {
            return Err(BackendError::AlreadyExists { path: to.into() });
        }
        self.lvrename(&from_name.vg, &from_name.lv, &to_name.lv)
    }

    fn exchange(&self, a: &str, b: &str) -> Result<(), BackendError> {
        // `a` is the new state (a writable snapshot), `b` the volume.
        let incoming = LvName::parse(a)?;
        let volume = LvName::parse(b)?;
        same_vg(&incoming, &volume)?;
        let vg = volume.vg.clone();
        let rows = self.settled_report(&vg)?;
        // The engine runs one operation per container at a time; this only
        // keeps other containers' calls on the VG from settling this exchange.
        let Some(_claim) = Claim::take(&volume.full()) else {
            return Err(BackendError::Lvm {
                command: "exchange".into(),
                detail: format!("{b} is being exchanged by another call"),
            });
        };
        let incoming_row = find(&rows, &incoming)?.clone();
        let volume_row = find(&rows, &volume)?.clone();
        let aside = names::swap_aside_lv(&volume.lv);
        if rows.iter().any(|r| r.name == aside) {
            return Err(BackendError::AlreadyExists { path: format!("{vg}/{aside}").into() });
        }
        let mount = match volume_row.device {
            Some(device) => {
                let mut found = mounts::current_mounts(device)?;
                if found.len() > 1 {
                    return Err(BackendError::Lvm {
                        command: "exchange".into(),
                        detail: format!("{b} is mounted {} times; it must be mounted once, at its root", found.len()),
                    });
                }
                found.pop()
            }
            None => None,
        };
        let mut tags =
            vec![format!("{}{}", swap_tags::VOLUME, volume.lv), format!("{}{}", swap_tags::WITH, incoming.lv)];
        if let Some(mount) = &mount {
            tags.extend(mount_tags(mount));
        }
        if let Some(long) = tags.iter().find(|t| t.len() > swap_tags::TAG_MAX) {
            return Err(BackendError::InvalidName {
                name: long.clone(),
                reason: "mount point too long to record in a tag",
            });
        }
        if !incoming_row.active() {
            self.activate(&incoming)?;
        }
        let tag_args: Vec<&str> = tags.iter().flat_map(|t| ["--addtag", t.as_str()]).collect();
        self.lvchange(&volume, &tag_args)?;
        fault::point("lvm.exchange.tagged");

        let swapped = (|| {
            if let Some(mount) = &mount {
                mounts::sync_filesystem(&mount.mount_point)?;
                mounts::unmount(&mount.mount_point)?;
            }
            fault::point("lvm.exchange.unmounted");
            self.lvrename(&vg, &volume.lv, &aside)?;
            fault::point("lvm.exchange.moved-aside");
            self.lvrename(&vg, &incoming.lv, &volume.lv)?;
            fault::point("lvm.exchange.moved-in");
            self.lvrename(&vg, &aside, &incoming.lv)?;
            let del_args: Vec<&str> = tags.iter().flat_map(|t| ["--deltag", t.as_str()]).collect();
            self.finish_exchange(&volume, &incoming, mount.as_ref(), &del_args)
        })();
        let Err(error) = swapped else { return Ok(()) };
        // Settle from wherever it stopped: finished means swapped (Ok), rolled
        // back means the volume is as it was (the error stands).
        let rows = self.report(&vg)?;
        let Some(old) = rows.iter().find(|r| r.tag_value(swap_tags::VOLUME) == Some(volume.lv.as_str())).cloned()
        else {
            return Err(error);
        };
        match self.settle_exchange(&vg, &old, &rows)? {
            Settled::Finished => {
                tracing::warn!(volume = b, %error, "exchange hit an error but was completed");
                Ok(())
            }
            Settled::RolledBack => Err(error),
        }
    }

    fn details(&self, location: &str) -> Result<SnapshotDetails, BackendError> {
        let name = LvName::parse(location)?;
        let rows = self.settled_report(&name.vg)?;
        let row = find(&rows, &name)?;
        Ok(SnapshotDetails {
            location: location.to_string(),
            uuid: row.uuid.clone(),
            generation: Self::generation(row),
            read_only: row.read_only(),
        })
    }

    fn set_read_only(&self, location: &str, read_only: bool) -> Result<(), BackendError> {
        let name = LvName::parse(location)?;
        let rows = self.settled_report(&name.vg)?;
        if find(&rows, &name)?.read_only() == read_only {
            return Ok(());
        }
        self.lvchange(&name, &["--permission", if read_only { "r" } else { "rw" }])
    }

    fn delete_snapshot(&self, location: &str) -> Result<bool, BackendError> {
        let name = LvName::parse(location)?;
        // An LV taking part in an unfinished exchange is not deleted, nor is
        // the exchange settled here: settling could move the old state to
        // this very name. Start-up recovery settles it through `details`.
        let rows = match self.report(&name.vg) {
            Err(BackendError::NotFound { .. }) => return Ok(false),
            other => other?,
        };
        if let Some(busy) = rows.iter().find(|r| r.tag_value(swap_tags::WITH) == Some(name.lv.as_str())) {
            return Err(BackendError::Lvm {
                command: "delete".into(),
                detail: format!("{location} takes part in an unfinished exchange with {}/{}", name.vg, busy.name),
            });
        }
        let rows = self.settled_report(&name.vg)?;
        let Some(row) = rows.iter().find(|r| r.name == name.lv) else { return Ok(false) };
        if !row.has_tag(OURS_TAG) {
            return Err(BackendError::NotOurs { location: location.to_string() });
        }
        self.remove_mount_view(&name, &rows)?;
        let full = name.full();
        match self.run(&["lvremove", "--yes", &full], location) {
            Ok(_) => Ok(true),
            Err(BackendError::NotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn snapshot_exists(&self, location: &str) -> Result<bool, BackendError> {
        let name = LvName::parse(location)?;
        match self.settled_report(&name.vg) {
            Ok(rows) => Ok(rows.iter().any(|r| r.name == name.lv)),
            Err(BackendError::NotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn list_snapshots(&self, volume: &VolumeInfo) -> Result<Vec<String>, BackendError> {
        let Some((vg, prefix)) = snapshot_prefix_of(volume) else {
            return Err(BackendError::InvalidName {
                name: volume.snapshot_dir.display().to_string(),
                reason: "not an LVM snapshot prefix (vg/rp-<container>.)",
            });
        };
        let rows = self.settled_report(&vg)?;
        let mut found: Vec<String> = rows
            .iter()
            .filter(|r| r.name.starts_with(&prefix) && r.has_tag(OURS_TAG))
            .map(|r| format!("{vg}/{}", r.name))
            .collect();
        found.sort();
        Ok(found)
    }

    fn metadata_dir(&self, volume: &VolumeInfo) -> Option<PathBuf> {
        let (vg, prefix) = snapshot_prefix_of(volume)?;
        let container = prefix.strip_prefix(PREFIX)?.strip_suffix('.')?;
        let name = volume_name(volume).ok()?;
        match self.metadata_mount(&vg, Some(&name)) {
            Ok(root) => root.map(|root| root.join(crate::backend::btrfs::SNAPSHOT_FOLDER).join(container)),
            Err(error) => {
                tracing::warn!(volume = %name, %error, "no metadata volume: the records beside the data are not kept");
                None
            }
        }
    }

    fn metadata_roots(&self, volume_groups: &[String]) -> Vec<PathBuf> {
        volume_groups
            .iter()
            .filter_map(|vg| match self.metadata_mount(vg, None) {
                Ok(root) => root,
                Err(error) => {
                    tracing::warn!(%vg, %error, "could not mount the VG's metadata volume");
                    None
                }
            })
            .collect()
    }

    fn live_root(&self, volume: &VolumeInfo) -> Result<PathBuf, BackendError> {
        let name = volume_name(volume)?;
        let rows = self.settled_report(&name.vg)?;
        let device = find(&rows, &name)?.device;
        let mut found = match device {
            Some(device) => mounts::current_mounts(device)?,
            None => Vec::new(),
        };
        match found.len() {
            1 => Ok(found.remove(0).mount_point),
            count => Err(BackendError::Lvm {
                command: "find the mount".into(),
                detail: format!(
                    "{} is mounted {count} times; its files are read where it is mounted once",
                    name.full()
                ),
            }),
        }
    }

    fn readable_root(&self, location: &str) -> Result<super::ReadableRoot, BackendError> {
        self.open_view(location)
    }

    /// Through the snapshot's mount view (see `views`).
    fn mount_snapshot(&self, location: &str, path: &Path) -> Result<(), BackendError> {
        self.mount_snapshot_at(location, path)
    }

    fn snapshot_mounted_at(&self, location: &str, path: &Path) -> bool {
        self.mount_view_mounted_at(location, path)
    }

    fn unmount_snapshot(&self, location: &str, path: &Path) -> Result<(), BackendError> {
        self.unmount_snapshot_at(location, path)
    }

    /// How much of the pool only the thin volume at `location` holds: the
    /// blocks no other thin volume maps, which deleting it would give back.
    /// Read with `thin_ls` from a metadata snapshot of the live pool (the
    /// pool's own metadata cannot be read while it changes). `None` while the
    /// pool is inactive. Costs a pass over the pool's metadata: for one
    /// snapshot on request, not for listings.
    fn exclusive_bytes(&self, location: &str) -> Result<Option<u64>, BackendError> {
        let name = LvName::parse(location)?;
        let rows = self.settled_report(&name.vg)?;
        let row = find(&rows, &name)?;
        let thin_id = thin_id_of(row, location)?;
        let listed = self.read_pool_metadata(&name.vg, &row.pool, |metadata| {
            run_tool(THIN_LS, &["--metadata-snap", "--no-headers", "-o", "DEV,EXCLUSIVE_BYTES", metadata])
        })?;
        Ok(listed.and_then(|text| parse_thin_ls(&text).into_iter().find(|(id, _)| *id == thin_id).map(|(_, b)| b)))
    }

    /// The pool's own answer: the blocks the snapshot maps differently from
    /// its parent or that its parent does not map (`thin_delta`), or, for a
    /// container's first snapshot, every block it maps (`thin_ls`). Blocks,
    /// not file data: a 4 KiB write counts one pool block (64 KiB by
    /// default), and what a filesystem frees without discard still counts.
    fn delta_bytes(&self, parent: Option<&str>, location: &str) -> Result<Option<u64>, BackendError> {
        let name = LvName::parse(location)?;
        let rows = self.settled_report(&name.vg)?;
        let row = find(&rows, &name)?;
        let thin_id = thin_id_of(row, location)?;
        let parent_id = match parent {
            Some(parent) => Some(thin_id_of(find(&rows, &LvName::parse(parent)?)?, parent)?),
            None => None,
        };
        let text = self.read_pool_metadata(&name.vg, &row.pool, |metadata| match parent_id {
            Some(parent_id) => run_tool(
                THIN_DELTA,
                &["--metadata-snap", "--snap1", &parent_id.to_string(), "--snap2", &thin_id.to_string(), metadata],
            ),
            None => run_tool(THIN_LS, &["--metadata-snap", "--no-headers", "-o", "DEV,MAPPED_BYTES", metadata]),
        })?;
        Ok(text.and_then(|text| match parent_id {
            Some(_) => report::parse_thin_delta(&text),
            None => parse_thin_ls(&text).into_iter().find(|(id, _)| *id == thin_id).map(|(_, bytes)| bytes),
        }))
    }
}

fn thin_id_of(row: &LvRow, location: &str) -> Result<u64, BackendError> {
    row.thin_id
        .ok_or_else(|| BackendError::NotThinVolume { volume: location.to_string(), reason: "no thin device id".into() })
}

impl LvmBackend {
    /// Runs `read` on the metadata device of `vg`'s thin pool `pool` while a
    /// metadata snapshot of the live pool is reserved (its own metadata
    /// cannot be read while it changes); `None` while the pool is inactive.
    /// Costs a pass over the pool's metadata.
    fn read_pool_metadata(
        &self,
        vg: &str,
        pool: &str,
        read: impl FnOnce(&str) -> Result<String, BackendError>,
    ) -> Result<Option<String>, BackendError> {
        let pool_device = format!("{}-tpool", names::dm_name(vg, pool));
        let metadata_device = Path::new("/dev/mapper").join(names::dm_name(vg, &format!("{pool}_tmeta")));
        if !Path::new("/dev/mapper").join(&pool_device).exists() || !metadata_device.exists() {
            return Ok(None);
        }
        // A pool holds one metadata snapshot at a time: a second reservation
        // fails (EBUSY) until the first is released, so calls of this process
        // take turns.
        let _turn = METADATA_SNAP.lock();
        run_tool(DMSETUP, &["message", &pool_device, "0", "reserve_metadata_snap"])?;
        let read = read(&metadata_device.to_string_lossy());
        let released = run_tool(DMSETUP, &["message", &pool_device, "0", "release_metadata_snap"]);
        let read = read?;
        released?;
        Ok(Some(read))
    }
}

#[cfg(test)]
mod tests;
