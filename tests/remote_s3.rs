//! Off-host copies to a real S3 server (SeaweedFS, started by the test on
//! loopback, with its own data folder and credentials):
//!
//! - export and import through s3://, verify;
//! - the server killed in the middle of an upload: a clear error, and a
//!   rerun once it is back resumes (uploads less than all again), after
//!   which verify passes and the copy restores;
//! - two daemons exporting into one repository at once: both complete and
//!   both restore;
//! - wrong credentials and a missing bucket: clear errors naming the remote.
//!
//! Root only.

mod common;

use std::path::Path;

use common::*;
use rollpoint::api::client::Clients;
use rollpoint::api::proto;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::remote::{export, import, make_mixed_tree, pseudo_random, RemoteHost};
use rollpoint::testkit::root_or_skip;
use rollpoint::testkit::seaweedfs::SeaweedFs;
use tonic::Code;

/// A remote table for `bucket` on `server`, credentials in a 0600 file.
fn s3_remote(name: &str, server: &SeaweedFs, bucket: &str, secret: &str, dir: &Path) -> String {
    let credentials = dir.join(format!("{name}.credentials"));
    std::fs::write(
        &credentials,
        format!("access_key_id = \"{}\"\nsecret_access_key = \"{secret}\"\n", server.access_key()),
    )
    .unwrap();
    std::fs::set_permissions(&credentials, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    format!(
        "[remotes.{name}]\nurl = \"s3://{bucket}/rollpoint\"\nendpoint = \"{}\"\nallow_http = true\n\
         credentials_file = \"{}\"\nkey_file = \"{}\"\nretry_timeout_seconds = 3\n",
        server.endpoint(),
        credentials.display(),
        dir.join("offsite.key").display()
    )
}

async fn host(prefix: &str, config: &str) -> RemoteHost {
    let mut host = RemoteHost::start(daemon_binary(), prefix, config).await;
    register(&mut host.clients, "app", host.cgroup.relative_name(), &host.volume).await.expect("register");
    host
}

fn assert_trees_equal(a: &Path, b: &Path, what: &str) {
    let differences = rollpoint::fstree::compare_trees(a, b).expect("compare trees");
    assert!(differences.is_empty(), "{what}: {}", differences.join("\n"));
}

async fn verify(clients: &mut Clients, remote: &str) -> proto::VerifyRemoteResponse {
    clients
        .remotes
        .verify_remote(proto::VerifyRemoteRequest { remote: remote.into() })
        .await
        .expect("verify")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_to_s3_survives_a_server_crash_and_concurrent_hosts() {
    if !root_or_skip("export_to_s3_survives_a_server_crash_and_concurrent_hosts") {
        return;
    }
    let mut server = SeaweedFs::start(&["backups"]).expect("start SeaweedFS");
    let dir = tempfile::tempdir().unwrap();
    let config = s3_remote("offsite", &server, "backups", server.secret_key(), dir.path());
    let mut first = host("rp-s3-a", &config).await;

    // Wrong credentials, missing bucket: clear errors naming the remote.
    let bad_dir = tempfile::tempdir().unwrap();
    let bad = format!(
        "{}{}",
        s3_remote("wrong-key", &server, "backups", "not-the-secret", bad_dir.path()),
        s3_remote("no-bucket", &server, "no-such-bucket", server.secret_key(), bad_dir.path())
            .replace("offsite.key", "other.key")
    );
    let bad_host = TestDaemon::start_with(daemon_binary(), DaemonOptions::default().config(bad)).await.unwrap();
    let mut bad_clients = bad_host.clients().await.unwrap();
    let status =
        bad_clients.remotes.init_remote(proto::InitRemoteRequest { remote: "wrong-key".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("remote wrong-key"), "{}", status.message());
    let status =
        bad_clients.remotes.check_remote(proto::CheckRemoteRequest { remote: "no-bucket".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("remote no-bucket"), "{}", status.message());
    drop(bad_clients);
    drop(bad_host);

    first.clients.remotes.init_remote(proto::InitRemoteRequest { remote: "offsite".into() }).await.expect("init");
    make_mixed_tree(&first.volume, 200);
    // Enough data that the upload outlasts the first progress report, even
    // on a quiet machine: 300 MB that does not compress.
    for i in 0..30 {
        std::fs::write(first.volume.join(format!("big-{i}")), pseudo_random(10_000_000, 1000 + i)).unwrap();
    }
    let s1 = create_snapshot(&mut first.clients, "app", "s1", "").await.unwrap();

    // The server dies mid-upload.
    let mut stream = first
        .clients
        .remotes
        .export_snapshot(proto::ExportSnapshotRequest {
            container: "app".into(),
            snapshot: "s1".into(),
            remote: "offsite".into(),
        })
        .await
        .expect("export starts")
        .into_inner();
    let mut killed = false;
    let mut outcome = None;
    while let Some(update) = tokio_stream::StreamExt::next(&mut stream).await {
        match update {
            Ok(proto::ExportSnapshotResponse {
                update: Some(proto::export_snapshot_response::Update::Progress(p)),
            }) => {
                if !killed && p.bytes_transferred > 0 {
                    server.kill().expect("kill the server");
                    killed = true;
                }
            }
            Ok(other) => outcome = Some(Ok(other)),
            Err(status) => {
                outcome = Some(Err(status));
                break;
            }
        }
    }
    assert!(killed, "the export uploaded something before the end");
    let status = outcome.expect("an outcome").expect_err("the export fails with the server gone");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("remote offsite"), "{}", status.message());

    server.restart().expect("restart the server");
    let resumed = export(&mut first.clients, "app", "s1", "offsite").await.expect("the rerun completes");
    let resumed_snapshot = resumed.snapshot.clone().unwrap();
    println!(
        "rerun after the crash added {} of {} logical",
        resumed_snapshot.added_bytes, resumed_snapshot.logical_bytes
    );
    assert!(resumed_snapshot.added_bytes < resumed_snapshot.logical_bytes, "packs stored before the crash are reused");
    let verified = verify(&mut first.clients, "offsite").await;
    assert!(verified.problems.is_empty(), "{:?}", verified.problems);

    // A second host exports its own container into the same repository while
    // the first exports a new snapshot.
    let mut second = host("rp-s3-b", &config).await;
    make_mixed_tree(&second.volume, 150);
    let other = create_snapshot(&mut second.clients, "app", "other-host", "").await.unwrap();
    std::fs::write(first.volume.join("more"), pseudo_random(5_000_000, 77)).unwrap();
    let s2 = create_snapshot(&mut first.clients, "app", "s2", "").await.unwrap();
    let (a, b) = tokio::join!(
        export(&mut first.clients, "app", "s2", "offsite"),
        export(&mut second.clients, "app", "other-host", "offsite")
    );
    a.expect("first host's export");
    b.expect("second host's export");
    let verified = verify(&mut second.clients, "offsite").await;
    assert!(verified.problems.is_empty(), "{:?}", verified.problems);
    assert_eq!(verified.snapshots, 3);

    // Both restore, each on the other host.
    let on_second = second.fs.mount_point().join("s2-from-first");
    import(&mut second.clients, "app", "s2", "offsite", Some(&on_second)).await.expect("import s2");
    assert_trees_equal(Path::new(&s2.location), &on_second, "s2 on the second host");
    let on_first = first.fs.mount_point().join("other-from-second");
    import(&mut first.clients, "app", "other-host", "offsite", Some(&on_first)).await.expect("import other-host");
    assert_trees_equal(Path::new(&other.location), &on_first, "the second host's snapshot on the first");
    let _ = s1;
}

/// What the repository relies on from S3, checked on the real server: a
/// conditional create never overwrites, and errors are told apart.
#[test]
fn objects_on_s3_are_written_once_and_errors_name_the_remote() {
    if !root_or_skip("objects_on_s3_are_written_once_and_errors_name_the_remote") {
        return;
    }
    use rollpoint::remote::objects::Created;
    use rollpoint::remote::{Objects, RemoteConfig, RemoteError};
    let server = SeaweedFs::start(&["probe"]).expect("start SeaweedFS");
    let dir = tempfile::tempdir().unwrap();
    let remote = |name: &str, bucket: &str, secret: &str| {
        let text = s3_remote(name, &server, bucket, secret, dir.path());
        let config: rollpoint::config::Config = rollpoint::config::Config::parse(&text).unwrap();
        let remote: RemoteConfig = config.remotes[name].clone();
        Objects::open(name, &remote).unwrap()
    };
    let good = remote("good", "probe", server.secret_key());
    let bytes = |b: &'static [u8]| bytes::Bytes::from_static(b);
    assert_eq!(good.put_new("a/b", bytes(b"first")).unwrap(), Created::Written);
    assert_eq!(good.put_new("a/b", bytes(b"second")).unwrap(), Created::AlreadyThere, "If-None-Match is honoured");
    assert_eq!(&good.get("a/b").unwrap()[..], b"first");
    assert_eq!(&good.get_range("a/b", 1..3).unwrap()[..], b"ir");
    assert_eq!(good.list("a").unwrap().len(), 1);
    let big = bytes::Bytes::from(pseudo_random(40 << 20, 3));
    good.put_new("big", big.clone()).unwrap();
    assert_eq!(good.get("big").unwrap(), big);
    good.delete("a/b").unwrap();
    assert!(matches!(good.get("a/b"), Err(RemoteError::NotFound { .. })));

    let error = remote("wrong", "probe", "not-the-secret").list("a").unwrap_err();
    assert!(matches!(error, RemoteError::AccessDenied { .. }), "{error:?}");
    assert!(error.to_string().contains("remote wrong"), "{error}");
    let error = remote("nobucket", "no-such-bucket", server.secret_key()).list("a").unwrap_err();
    assert!(matches!(error, RemoteError::NoSuchBucket { .. }), "{error:?}");
    assert!(error.to_string().contains("remote nobucket"), "{error}");
}
