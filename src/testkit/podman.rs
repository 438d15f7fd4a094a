//! A real Podman of a test's own: its storage (vfs driver) and run state in
//! a temporary folder, so nothing it does touches the host's Podman, and
//! everything it made goes with it (containers removed, folders deleted)
//! also when the test fails. Containers run with runc (crun refuses hybrid
//! cgroups) and low rlimits (raising them is refused on the test machines).
//! The image is busybox-static in a tarball, through `podman import`: no
//! registry is needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where Podman is, if it is installed with runc and busybox-static.
pub fn available() -> Option<PathBuf> {
    let podman = ["/usr/bin/podman", "/usr/local/bin/podman"].into_iter().map(PathBuf::from).find(|p| p.exists())?;
    (Path::new("/usr/sbin/runc").exists() || Path::new("/usr/bin/runc").exists())
        .then_some(())
        .and(Path::new("/bin/busybox").exists().then_some(podman))
}

pub struct TestPodman {
    argv: Vec<String>,
    /// Ours: removed on drop.
    dir: PathBuf,
}

/// The image every test container runs.
pub const IMAGE: &str = "localhost/rollpoint-test-busybox:latest";

impl TestPodman {
    /// A Podman with its own storage, and the busybox image imported.
    pub fn start(podman: &Path) -> TestPodman {
        // Not under /tmp: it may be a tmpfs, and the vfs copies are real files.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = PathBuf::from(format!("/var/tmp/rollpoint-podman-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).expect("podman folder");
        let path = |name: &str| dir.join(name).display().to_string();
        let argv = vec![
            podman.display().to_string(),
            "--root".into(),
            path("storage"),
            "--runroot".into(),
            path("run"),
            "--storage-driver".into(),
            "vfs".into(),
            "--runtime".into(),
            "runc".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
            "--tmpdir".into(),
            path("tmp"),
        ];
        let podman = TestPodman { argv, dir };
        let image = podman.dir.join("busybox.tar");
        make_busybox_image(&podman.dir.join("image"), &image);
        podman.ok(&["import", &image.display().to_string(), IMAGE]);
        podman
    }

    /// The argv before Podman's verb, as the daemon's `[discovery] podman`.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Runs `podman ARGS`; its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.argv[0]).args(&self.argv[1..]).args(args).stdin(Stdio::null()).output().expect("run podman")
    }

    /// Runs `podman ARGS`, failing the test when it fails; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "podman {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Starts a container `name` running `script` under /bin/sh, with the
    /// `mounts` (`SOURCE:DEST`) bound in.
    pub fn run_container(&self, name: &str, mounts: &[String], script: &str) -> String {
        let mut args = vec!["run", "-d", "--name", name, "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
        for mount in mounts {
            args.extend(["-v", mount.as_str()]);
        }
        args.extend([IMAGE, "/bin/sh", "-c", script]);
        self.ok(&args)
    }

    /// `podman inspect` of one container, as JSON.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let text = self.ok(&["inspect", "--type", "container", name]);
        let mut all: Vec<serde_json::Value> = serde_json::from_str(&text).expect("inspect JSON");
        all.remove(0)
    }
}

impl Drop for TestPodman {
    fn drop(&mut self) {
        // Every container of this Podman (none else: the storage is ours).
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["system", "reset", "--force"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A root filesystem of busybox-static and its applets, tarred.
fn make_busybox_image(root: &Path, tarball: &Path) {
    for folder in ["bin", "etc", "tmp", "data", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(folder)).expect("image folder");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "sleep", "cat", "echo", "ls", "touch", "date", "tail", "wc", "kill"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
    let status = Command::new("tar").arg("-C").arg(root).arg("-cf").arg(tarball).arg(".").status().expect("run tar");
    assert!(status.success(), "tar of the busybox image");
}
