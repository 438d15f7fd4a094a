//! A throw-away btrfs filesystem on a loop device, for root-only tests and
//! benchmarks: a sparse image in a fresh temp folder, `losetup`, `mkfs.btrfs`,
//! mounted in that folder. Dropping it unmounts, detaches and removes
//! everything, also when the test panicked.
//!
//! External programs run from fixed paths, never looked up in `PATH`. This
//! is test code: it may run `btrfs` (the daemon never does).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::mount::{MntFlags, MsFlags};

pub(crate) const LOSETUP: &[&str] = &["/usr/sbin/losetup", "/sbin/losetup"];
const MKFS_BTRFS: &[&str] = &["/usr/sbin/mkfs.btrfs", "/sbin/mkfs.btrfs"];
const BTRFS: &[&str] = &["/usr/bin/btrfs", "/bin/btrfs", "/usr/sbin/btrfs", "/sbin/btrfs"];

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The first of `candidates` that is installed.
pub(crate) fn program(candidates: &'static [&'static str]) -> io::Result<&'static str> {
    candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("none of {candidates:?} is installed")))
}

/// Runs a program and returns its stdout; a non-zero exit is an error that
/// carries stderr.
pub(crate) fn run(program_path: &str, args: &[&str]) -> io::Result<String> {
    let output = Command::new(program_path).args(args).output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{program_path} {}: {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `btrfs` (the command-line tool) with `args`: test code uses it to
/// set up and to cross-check what the backend did.
pub fn btrfs_command(args: &[&str]) -> io::Result<String> {
    run(program(BTRFS)?, args)
}

/// A btrfs filesystem on a loop device, mounted in a private temp folder.
#[derive(Debug)]
pub struct LoopBtrfs {
    dir: PathBuf,
    image: PathBuf,
    device: Option<String>,
    mount_point: PathBuf,
    /// Every mount made, main one first; unmounted in reverse order.
    mounts: Vec<PathBuf>,
}

impl LoopBtrfs {
    /// A fresh filesystem of `size_bytes` (btrfs needs about 110 MiB at
    /// least; use [`LoopBtrfs::create_with`] and `-M` below that).
    pub fn create(size_bytes: u64) -> io::Result<LoopBtrfs> {
        Self::create_with(size_bytes, &[], "")
    }

    /// Same as [`LoopBtrfs::create`] with extra `mkfs.btrfs` arguments (such
    /// as `-M` for mixed data and metadata, good for small filesystems) and
    /// mount options (comma-separated, may be empty).
    pub fn create_with(size_bytes: u64, mkfs_args: &[&str], mount_options: &str) -> io::Result<LoopBtrfs> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "rollpoint-loop-btrfs-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        // From here on, dropping `fs` undoes whatever was done so far.
        let mut fs =
            LoopBtrfs { image: dir.join("image"), mount_point: dir.join("mnt"), dir, device: None, mounts: Vec::new() };
        let image = std::fs::File::create(&fs.image)?;
        image.set_len(size_bytes)?;
        drop(image);
        let image_arg = fs.image.to_string_lossy().into_owned();
        let device = run(program(LOSETUP)?, &["--find", "--show", &image_arg])?.trim().to_string();
        if device.is_empty() {
            return Err(io::Error::other("losetup printed no device"));
        }
        fs.device = Some(device.clone());
        let mut args = vec!["-q", "-f"];
        args.extend_from_slice(mkfs_args);
        args.push(&device);
        run(program(MKFS_BTRFS)?, &args)?;
        std::fs::create_dir(&fs.mount_point)?;
        let mount_point = fs.mount_point.clone();
        fs.mount_at(&mount_point, mount_options)?;
        Ok(fs)
    }

    fn mount_at(&mut self, target: &Path, options: &str) -> io::Result<()> {
        let device = self.device.clone().ok_or_else(|| io::Error::other("no loop device"))?;
        let data = if options.is_empty() { None } else { Some(options) };
        nix::mount::mount(Some(device.as_str()), target, Some("btrfs"), MsFlags::empty(), data)?;
        self.mounts.push(target.to_path_buf());
        Ok(())
    }

    /// Where the filesystem is mounted.
    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    /// The loop device (`/dev/loopN`).
    pub fn device(&self) -> &str {
        self.device.as_deref().unwrap_or("")
    }

    /// Mounts the same filesystem once more, at a new folder next to the main
    /// mount point, with `options` (e.g. `subvol=data`). Unmounted on drop.
    pub fn mount_again(&mut self, options: &str) -> io::Result<PathBuf> {
        let target = self.dir.join(format!("mnt-{}", self.mounts.len()));
        std::fs::create_dir(&target)?;
        self.mount_at(&target, options)?;
        Ok(target)
    }

    /// Creates a subvolume at `<mount point>/<name>` (`name` may hold `/` to
    /// create it deeper; the folders above must exist) and returns its path.
    pub fn create_subvolume(&self, name: &str) -> io::Result<PathBuf> {
        let path = self.mount_point.join(name);
        btrfs_command(&["subvolume", "create", &path.to_string_lossy()])?;
        Ok(path)
    }

    fn unmount(target: &Path) {
        for attempt in 0..20 {
            match nix::mount::umount2(target, MntFlags::empty()) {
                Ok(()) => return,
                Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return, // not mounted
                Err(nix::errno::Errno::EBUSY) if attempt < 19 => std::thread::sleep(Duration::from_millis(50)),
                Err(errno) => {
                    eprintln!("LoopBtrfs: umount {}: {errno}; detaching lazily", target.display());
                    break;
                }
            }
        }
        if let Err(errno) = nix::mount::umount2(target, MntFlags::MNT_DETACH) {
            eprintln!("LoopBtrfs: umount -l {}: {errno}", target.display());
        }
    }
}

impl Drop for LoopBtrfs {
    fn drop(&mut self) {
        for target in self.mounts.drain(..).rev() {
            Self::unmount(&target);
        }
        if let Some(device) = self.device.take() {
            // Forget the device in the kernel's btrfs device list, so the
            // next filesystem made on this loop device starts clean.
            if let Ok(btrfs) = program(BTRFS) {
                let _ = run(btrfs, &["device", "scan", "--forget", &device]);
            }
            let mut detached = false;
            if let Ok(losetup) = program(LOSETUP) {
                for _ in 0..20 {
                    match run(losetup, &["-d", &device]) {
                        Ok(_) => {
                            detached = true;
                            break;
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            }
            if !detached {
                eprintln!("LoopBtrfs: could not detach {device}");
            }
        }
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("LoopBtrfs: remove {}: {err}", self.dir.display());
        }
    }
}
