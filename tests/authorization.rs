//! Never open: every RPC of ContainerService, SnapshotService, TokenService
//! and EventService, over loopback TCP, refuses a caller without
//! credentials, with a wrong or revoked token (UNAUTHENTICATED), with a
//! token lacking the scope or limited to another container
//! (PERMISSION_DENIED), and leaves everything as it was after each refusal.
//! Over the Unix socket, a uid that is neither root, nor in the socket
//! group, nor allowed is refused: first by the socket's mode (0660: connect
//! fails with EACCES), then, with the socket made 0666 so the uid reaches
//! the daemon, by the SO_PEERCRED check (PERMISSION_DENIED). The right token
//! gets each call through, so the refusals are about who calls. Prints the
//! matrix.
//!
//! Root only: loop-backed btrfs, real cgroups, a real `rollpointd` with
//! `--listen`, the `rollpoint` CLI run as uid 65534.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rollpoint::api::client::{Clients, Target};
use rollpoint::api::proto;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use tonic::{Code, Status};

const CLI: &str = env!("CARGO_BIN_EXE_rollpoint");
/// nobody: neither root, nor in a socket group, nor in allowed_uids.
const OUTSIDER: u32 = 65534;
/// How long one CLI run may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rpc {
    RegisterContainer,
    GetContainer,
    ListContainers,
    UnregisterContainer,
    CreateSnapshot,
    GetSnapshot,
    ListSnapshots,
    UpdateSnapshot,
    DeleteSnapshot,
    RestoreSnapshot,
    CreateToken,
    ListTokens,
    RevokeToken,
    ListEvents,
    WatchEvents,
    UpdateContainer,
    PruneSnapshots,
    DiscoverContainers,
    SetGroup,
    GetGroup,
    ListGroups,
    DeleteGroup,
    CreateGroupSnapshot,
    RestoreGroup,
}

const RPCS: [Rpc; 24] = [
    Rpc::SetGroup,
    Rpc::GetGroup,
    Rpc::ListGroups,
    Rpc::DeleteGroup,
    Rpc::CreateGroupSnapshot,
    Rpc::RestoreGroup,
    Rpc::DiscoverContainers,
    Rpc::UpdateContainer,
    Rpc::PruneSnapshots,
    Rpc::RegisterContainer,
    Rpc::GetContainer,
    Rpc::ListContainers,
    Rpc::UnregisterContainer,
    Rpc::CreateSnapshot,
    Rpc::GetSnapshot,
    Rpc::ListSnapshots,
    Rpc::UpdateSnapshot,
    Rpc::DeleteSnapshot,
    Rpc::RestoreSnapshot,
    Rpc::CreateToken,
    Rpc::ListTokens,
    Rpc::RevokeToken,
    Rpc::ListEvents,
    Rpc::WatchEvents,
];

impl Rpc {
    /// The scope the call needs (`api/containers.rs`, `snapshots.rs`,
    /// `events.rs`, `token_service.rs`).
    fn scope(self) -> &'static str {
        match self {
            Rpc::RegisterContainer | Rpc::UnregisterContainer | Rpc::UpdateContainer => "admin",
            Rpc::DiscoverContainers | Rpc::SetGroup | Rpc::DeleteGroup => "admin",
            Rpc::CreateGroupSnapshot => "snapshot",
            Rpc::RestoreGroup => "restore",
            Rpc::GetGroup | Rpc::ListGroups => "read",
            Rpc::CreateToken | Rpc::ListTokens | Rpc::RevokeToken => "admin",
            Rpc::CreateSnapshot | Rpc::UpdateSnapshot | Rpc::DeleteSnapshot | Rpc::PruneSnapshots => "snapshot",
            Rpc::RestoreSnapshot => "restore",
            Rpc::GetContainer | Rpc::ListContainers | Rpc::GetSnapshot | Rpc::ListSnapshots => "read",
            Rpc::ListEvents | Rpc::WatchEvents => "read",
        }
    }

    /// Valid tokens that lack the scope. None for read calls: every scope
    /// grants read.
    fn lacking(self) -> &'static [&'static str] {
        match self.scope() {
            "admin" => &["reader", "snap-alpha", "restorer"],
            "snapshot" => &["reader", "restorer"],
            "restore" => &["reader", "snap-alpha"],
            _ => &[],
        }
    }

    /// The token that may make the call, for the positive control.
    fn allowed(self) -> &'static str {
        match self.scope() {
            "admin" => "admin",
            "snapshot" => "snap-alpha",
            "restore" => "restorer",
            _ => "reader",
        }
    }

    /// The same call through the CLI, on `container` (`alpha`).
    fn cli_args(self, targets: &Targets) -> Vec<String> {
        let args: Vec<&str> = match self {
            Rpc::RegisterContainer => {
                return ["container", "register", "intruder", "--cgroup", &targets.gamma_cgroup, "--subvolume"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain([targets.gamma_volume.display().to_string()])
                    .collect()
            }
            Rpc::GetContainer => vec!["container", "show", "alpha"],
            Rpc::ListContainers => vec!["container", "list"],
            Rpc::UnregisterContainer => vec!["container", "unregister", "alpha", "--delete-snapshots"],
            Rpc::CreateSnapshot => vec!["snapshot", "create", "alpha", "--name", "intruder"],
            Rpc::GetSnapshot => vec!["snapshot", "show", "alpha", "keep"],
            Rpc::ListSnapshots => vec!["snapshot", "list", "alpha"],
            Rpc::UpdateSnapshot => vec!["snapshot", "update", "alpha", "keep", "--alias", "hijacked"],
            Rpc::DeleteSnapshot => vec!["snapshot", "delete", "alpha", "keep"],
            Rpc::RestoreSnapshot => vec!["restore", "alpha", "keep"],
            Rpc::CreateToken => vec!["token", "create", "--name", "intruder", "--scope", "admin"],
            Rpc::ListTokens => vec!["token", "list"],
            Rpc::RevokeToken => vec!["token", "revoke", "admin"],
            Rpc::ListEvents => vec!["events"],
            // The CLI lists first, then watches: refused at its first call.
            Rpc::WatchEvents => vec!["events", "--follow"],
            Rpc::UpdateContainer => vec!["container", "update", "alpha", "--pre-freeze", "true"],
            Rpc::PruneSnapshots => vec!["prune", "alpha"],
            Rpc::DiscoverContainers => vec!["discover", "--register"],
            // Each container is also a group of its own name (set up below).
            Rpc::SetGroup => vec!["group", "set", "alpha", "alpha"],
            Rpc::GetGroup => vec!["group", "show", "alpha"],
            Rpc::ListGroups => vec!["group", "list"],
            Rpc::DeleteGroup => vec!["group", "delete", "alpha"],
            Rpc::CreateGroupSnapshot => vec!["group", "snapshot", "alpha", "--name", "intruder-g"],
            Rpc::RestoreGroup => vec!["group", "restore", "alpha", "gkeep"],
        };
        args.into_iter().map(String::from).collect()
    }
}

/// What a RegisterContainer call would register: a real, unregistered
/// volume and cgroup, so that only the refusal stops it.
struct Targets {
    gamma_volume: PathBuf,
    gamma_cgroup: String,
}

/// Makes `rpc` about `container` with requests that would succeed (and
/// change something, for the calls that change things) if let through.
async fn call(rpc: Rpc, clients: &mut Clients, container: &str, targets: &Targets) -> Result<(), Status> {
    let c = container.to_string();
    match rpc {
        Rpc::RegisterContainer => {
            register(clients, "intruder", &targets.gamma_cgroup, &targets.gamma_volume).await.map(drop)
        }
        Rpc::GetContainer => clients.containers.get_container(proto::GetContainerRequest { id: c }).await.map(drop),
        Rpc::ListContainers => {
            clients.containers.list_containers(proto::ListContainersRequest::default()).await.map(drop)
        }
        Rpc::UnregisterContainer => clients
            .containers
            .unregister_container(proto::UnregisterContainerRequest {
                id: c,
                delete_snapshots: true,
                keep_snapshots: false,
            })
            .await
            .map(drop),
        Rpc::CreateSnapshot => create_snapshot(clients, container, "intruder", "").await.map(drop),
        Rpc::GetSnapshot => get_snapshot(clients, container, "keep").await.map(drop),
        Rpc::ListSnapshots => clients
            .snapshots
            .list_snapshots(proto::ListSnapshotsRequest { container: c, ..Default::default() })
            .await
            .map(drop),
        Rpc::UpdateSnapshot => clients
            .snapshots
            .update_snapshot(proto::UpdateSnapshotRequest {
                container: c,
                snapshot: "keep".into(),
                alias: "hijacked".into(),
                expiry_days: 0,
                update_mask: vec!["alias".into()],
                hold_reason: String::new(),
            })
            .await
            .map(drop),
        Rpc::DeleteSnapshot => clients
            .snapshots
            .delete_snapshot(proto::DeleteSnapshotRequest { container: c, snapshot: "keep".into() })
            .await
            .map(drop),
        Rpc::RestoreSnapshot => restore(clients, container, "keep", "").await.map(drop),
        Rpc::CreateToken => clients
            .tokens
            .create_token(proto::CreateTokenRequest {
                name: "intruder".into(),
                scopes: vec!["admin".into()],
                containers: vec![],
            })
            .await
            .map(drop),
        Rpc::ListTokens => clients.tokens.list_tokens(proto::ListTokensRequest {}).await.map(drop),
        Rpc::RevokeToken => {
            clients.tokens.revoke_token(proto::RevokeTokenRequest { name: "admin".into() }).await.map(drop)
        }
        Rpc::ListEvents => {
            clients.events.list_events(proto::ListEventsRequest { container: c, ..Default::default() }).await.map(drop)
        }
        Rpc::UpdateContainer => {
            let hook = proto::Hook { command: vec!["true".into()], ..Default::default() };
            let hooks = proto::Hooks { pre_freeze: Some(hook), ..Default::default() };
            let request = proto::UpdateContainerRequest { id: c, hooks: Some(hooks), ..Default::default() };
            clients.containers.update_container(request).await.map(drop)
        }
        Rpc::PruneSnapshots => clients
            .snapshots
            .prune_snapshots(proto::PruneSnapshotsRequest { container: c, dry_run: false })
            .await
            .map(drop),
        Rpc::DiscoverContainers => {
            // Registers whatever this host's Podman runs, when let through.
            let request = proto::DiscoverContainersRequest { register: true, sources: vec!["podman".into()] };
            clients.containers.discover_containers(request).await.map(drop)
        }
        Rpc::SetGroup => {
            let request = proto::SetGroupRequest { name: c.clone(), members: vec![c] };
            clients.containers.set_group(request).await.map(drop)
        }
        Rpc::GetGroup => clients.containers.get_group(proto::GetGroupRequest { name: c }).await.map(drop),
        Rpc::ListGroups => clients.containers.list_groups(proto::ListGroupsRequest {}).await.map(drop),
        Rpc::DeleteGroup => clients.containers.delete_group(proto::DeleteGroupRequest { name: c }).await.map(drop),
        Rpc::CreateGroupSnapshot => {
            let request =
                proto::CreateGroupSnapshotRequest { group: c, name: "intruder-g".into(), ..Default::default() };
            clients.snapshots.create_group_snapshot(request).await.map(drop)
        }
        Rpc::RestoreGroup => {
            let request = proto::RestoreGroupRequest { group: c, snapshot: "gkeep".into() };
            clients.snapshots.restore_group(request).await.map(drop)
        }
        Rpc::WatchEvents => {
            let mut stream = clients
                .events
                .watch_events(proto::WatchEventsRequest { container: c, ..Default::default() })
                .await?
                .into_inner();
            // Let through, it opens and sends the container's first event.
            match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                Ok(Ok(Some(_))) => Ok(()),
                Ok(Ok(None)) => Err(Status::internal("the watch ended without an event")),
                Ok(Err(status)) => Err(status),
                Err(_) => Err(Status::deadline_exceeded("no event within 5 s on an open watch")),
            }
        }
    }
}

/// Everything a let-through call could have changed, as seen by root on
/// the socket: containers, snapshots (names, aliases, expiry, state),
/// tokens, and the volumes' contents.
#[derive(Debug, Default, PartialEq)]
struct Fingerprint {
    containers: Vec<(String, u32)>,
    snapshots: Vec<(String, String, String, Option<prost_types::Timestamp>, i32)>,
    tokens: Vec<String>,
    volumes: Vec<BTreeMap<PathBuf, TreeEntry>>,
}

/// Checks refusals, and that nothing changed after each.
struct Checker {
    baseline: Fingerprint,
    volumes: Vec<PathBuf>,
    refused: usize,
}

impl Checker {
    async fn fingerprint(&self, root: &mut Clients) -> Fingerprint {
        let containers: Vec<(String, u32)> =
            list_containers(root).await.into_iter().map(|c| (c.id, c.snapshot_count)).collect();
        let mut snapshots = Vec::new();
        for (id, _) in &containers {
            for s in list_snapshots(root, id).await {
                snapshots.push((s.container.clone(), s.name.clone(), s.alias.clone(), s.expire_time, s.state));
            }
        }
        let tokens = root
            .tokens
            .list_tokens(proto::ListTokensRequest {})
            .await
            .expect("ListTokens as root")
            .into_inner()
            .tokens
            .into_iter()
            .map(|t| t.name)
            .collect();
        Fingerprint { containers, snapshots, tokens, volumes: self.volumes.iter().map(|v| file_tree(v)).collect() }
    }

    /// `result` is a refusal with `code` and a message holding `needle`,
    /// and the state is the baseline still. Notes the code in `row`.
    #[allow(clippy::too_many_arguments)]
    async fn refused(
        &mut self,
        root: &mut Clients,
        rpc: Rpc,
        row: &mut BTreeMap<&'static str, String>,
        column: &'static str,
        result: Result<(), Status>,
        code: Code,
        needle: &str,
    ) {
        let status = match result {
            Ok(()) => panic!("{rpc:?} [{column}]: let through"),
            Err(status) => status,
        };
        assert_eq!(status.code(), code, "{rpc:?} [{column}]: {}", status.message());
        assert!(status.message().contains(needle), "{rpc:?} [{column}]: {:?} lacks {needle:?}", status.message());
        assert_eq!(self.fingerprint(root).await, self.baseline, "{rpc:?} [{column}]: state changed by a refused call");
        self.refused += 1;
        let cell = row.entry(column).or_default();
        if !cell.is_empty() {
            cell.push('/');
        }
        cell.push_str(short(status.code()));
    }
}

fn short(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Unauthenticated => "UNAUTH",
        Code::PermissionDenied => "DENIED",
        _ => "OTHER",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_callers_without_the_right_credentials() {
    if !root_or_skip("every_rpc_refuses_callers_without_the_right_credentials") {
        return;
    }
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let alpha_volume = fs.create_subvolume("alpha").expect("subvolume");
    let beta_volume = fs.create_subvolume("beta").expect("subvolume");
    let gamma_volume = fs.create_subvolume("gamma").expect("subvolume");
    let alpha_cgroup = TestCgroup::create("authz-alpha").expect("cgroup");
    let beta_cgroup = TestCgroup::create("authz-beta").expect("cgroup");
    let gamma_cgroup = TestCgroup::create("authz-gamma").expect("cgroup");
    let targets = Targets { gamma_volume: gamma_volume.clone(), gamma_cgroup: gamma_cgroup.relative_name().into() };
    let port = free_loopback_port();
    let daemon = TestDaemon::start_with(
        daemon_binary(),
        DaemonOptions::default().arg("--listen").arg(format!("127.0.0.1:{port}")),
    )
    .await
    .expect("start rollpointd");
    let tcp = Target::Tcp(format!("http://127.0.0.1:{port}"));

    // Set up over the socket, as root.
    let mut root = daemon.clients().await.expect("connect to the socket");
    for (id, cgroup, volume) in [("alpha", &alpha_cgroup, &alpha_volume), ("beta", &beta_cgroup, &beta_volume)] {
        register(&mut root, id, cgroup.relative_name(), volume).await.expect("register");
        std::fs::write(volume.join("f.txt"), "kept").unwrap();
        create_snapshot(&mut root, id, "keep", "").await.expect("snapshot");
        // A group of its own name, with a group snapshot.
        let group = proto::SetGroupRequest { name: id.into(), members: vec![id.into()] };
        root.containers.set_group(group).await.expect("SetGroup");
        let taken = proto::CreateGroupSnapshotRequest { group: id.into(), name: "gkeep".into(), ..Default::default() };
        root.snapshots.create_group_snapshot(taken).await.expect("CreateGroupSnapshot");
        std::fs::write(volume.join("f.txt"), "changed since").unwrap();
    }
    let mut secrets: BTreeMap<&str, String> = BTreeMap::new();
    for (name, scopes, containers) in [
        ("reader", &["read"][..], &[][..]),
        ("snap-alpha", &["snapshot"][..], &["alpha"][..]),
        ("restorer", &["restore"][..], &[][..]),
        ("admin", &["admin"][..], &[][..]),
        ("doomed", &["admin"][..], &[][..]),
    ] {
        let reply = root
            .tokens
            .create_token(proto::CreateTokenRequest {
                name: name.into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                containers: containers.iter().map(|s| s.to_string()).collect(),
            })
            .await
            .expect("CreateToken as root on the socket")
            .into_inner();
        assert!(!reply.secret.is_empty());
        secrets.insert(name, reply.secret);
    }
    let mut by_token: BTreeMap<&str, Clients> = BTreeMap::new();
    for (name, secret) in &secrets {
        by_token.insert(name, Clients::connect_with_token(&tcp, Some(secret)).await.expect("connect over TCP"));
    }
    // The doomed token works, until it is revoked.
    call(Rpc::ListTokens, by_token.get_mut("doomed").unwrap(), "alpha", &targets).await.expect("doomed before");
    root.tokens.revoke_token(proto::RevokeTokenRequest { name: "doomed".into() }).await.expect("revoke doomed");

    let mut anonymous = Clients::connect_with_token(&tcp, None).await.expect("connect over TCP");
    // Right form, right name, wrong secret; and no form at all.
    let forged = format!("rpt.admin.{}", "0".repeat(64));
    let mut forged_clients = Clients::connect_with_token(&tcp, Some(&forged)).await.expect("connect");
    let mut garbage_clients = Clients::connect_with_token(&tcp, Some("not-a-token")).await.expect("connect");

    let mut checker = Checker {
        baseline: Fingerprint::default(),
        volumes: vec![alpha_volume.clone(), beta_volume.clone()],
        refused: 0,
    };
    checker.baseline = checker.fingerprint(&mut root).await;
    let mut matrix: Vec<(Rpc, BTreeMap<&str, String>)> = Vec::new();
    for rpc in RPCS {
        let mut row: BTreeMap<&str, String> = BTreeMap::new();
        let unauthenticated = [
            ("none", &mut anonymous, "authorization"),
            ("wrong", &mut forged_clients, "unknown token"),
            ("wrong", &mut garbage_clients, "unknown token"),
        ];
        for (column, clients, needle) in unauthenticated {
            let result = call(rpc, clients, "alpha", &targets).await;
            checker.refused(&mut root, rpc, &mut row, column, result, Code::Unauthenticated, needle).await;
        }
        let result = call(rpc, by_token.get_mut("doomed").unwrap(), "alpha", &targets).await;
        checker.refused(&mut root, rpc, &mut row, "revoked", result, Code::Unauthenticated, "unknown token").await;
        for token in rpc.lacking() {
            let result = call(rpc, by_token.get_mut(token).unwrap(), "alpha", &targets).await;
            let needle = format!("lacks the {} scope", rpc.scope());
            checker.refused(&mut root, rpc, &mut row, "lacks scope", result, Code::PermissionDenied, &needle).await;
        }
        if rpc.lacking().is_empty() {
            row.insert("lacks scope", "n/a (all grant read)".into());
        }
        // snap-alpha holds snapshot (and so read), for alpha only.
        let result = call(rpc, by_token.get_mut("snap-alpha").unwrap(), "beta", &targets).await;
        let needle = match rpc {
            _ if rpc.scope() == "admin" => "lacks the admin scope",
            Rpc::RestoreSnapshot | Rpc::RestoreGroup => "lacks the restore scope",
            Rpc::ListContainers | Rpc::ListGroups => "limited to some containers",
            _ => "not valid for container beta",
        };
        checker.refused(&mut root, rpc, &mut row, "other container", result, Code::PermissionDenied, needle).await;
        matrix.push((rpc, row));
    }
    // A token limited to a container is refused calls that name none.
    let unscoped =
        by_token.get_mut("snap-alpha").unwrap().events.list_events(proto::ListEventsRequest::default()).await.map(drop);
    assert_eq!(unscoped.unwrap_err().code(), Code::PermissionDenied, "ListEvents of every container, token limited");

    // The Unix socket, as a uid that is neither root, nor in the socket
    // group, nor allowed. First as the daemon made it (0660): the kernel
    // refuses the connect.
    let socket = daemon.socket().to_path_buf();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode");
    for (rpc, row) in &mut matrix {
        let outcome = run_cli_as_outsider(&socket, &rpc.cli_args(&targets));
        assert_eq!(outcome, "EACCES", "{rpc:?} as uid {OUTSIDER} on the 0660 socket");
        row.insert("unix 0660", outcome);
    }
    // Then with the socket opened to everyone (as a careless operator might):
    // the uid reaches the daemon, whose SO_PEERCRED check refuses it. The
    // daemon's folder (under /tmp) is 0755: others may reach the socket.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(daemon.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (rpc, row) in &mut matrix {
        let outcome = run_cli_as_outsider(&socket, &rpc.cli_args(&targets));
        assert_eq!(outcome, "PERMISSION_DENIED", "{rpc:?} as uid {OUTSIDER} on the 0666 socket");
        row.insert("unix 0666", outcome);
    }
    assert_eq!(checker.fingerprint(&mut root).await, checker.baseline, "state changed by refused socket calls");
    // The same CLI invocations work as root: the refusals are about the uid.
    for args in [Rpc::ListContainers.cli_args(&targets), Rpc::GetSnapshot.cli_args(&targets)] {
        let output = Command::new(CLI).arg("--socket").arg(&socket).args(&args).output().expect("run the CLI");
        assert!(output.status.success(), "root: rollpoint {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    // Last, the right token gets every call through (state changes from
    // here on): the refusals above were about the credentials.
    for (rpc, row) in &mut matrix {
        let token = rpc.allowed();
        let clients = by_token.get_mut(token).unwrap();
        call(*rpc, clients, "alpha", &targets)
            .await
            .unwrap_or_else(|s| panic!("{rpc:?} with token {token}: {:?} {}", s.code(), s.message()));
        row.insert("allowed", format!("ok ({token})"));
        // Put back what the call consumed, for the calls after it.
        match rpc {
            Rpc::RegisterContainer => {}
            Rpc::UnregisterContainer => {
                register(&mut root, "alpha", alpha_cgroup.relative_name(), &alpha_volume).await.expect("re-register");
                create_snapshot(&mut root, "alpha", "keep", "").await.expect("snapshot again");
            }
            Rpc::CreateSnapshot => {}
            Rpc::DeleteSnapshot => {
                create_snapshot(&mut root, "alpha", "keep", "").await.expect("snapshot again");
            }
            Rpc::DeleteGroup => {
                let group = proto::SetGroupRequest { name: "alpha".into(), members: vec!["alpha".into()] };
                root.containers.set_group(group).await.expect("SetGroup again");
            }
            Rpc::CreateToken => {
                root.tokens.revoke_token(proto::RevokeTokenRequest { name: "intruder".into() }).await.expect("revoke");
            }
            Rpc::RevokeToken => {
                // The admin token revoked itself: it is unknown from now on.
                let after = call(Rpc::ListTokens, clients, "alpha", &targets).await;
                assert_eq!(after.unwrap_err().code(), Code::Unauthenticated, "a revoked token is refused at once");
            }
            _ => {}
        }
    }
    // Who did what is on the timeline.
    let events = root
        .events
        .list_events(proto::ListEventsRequest { container: "alpha".into(), page_size: 1000, ..Default::default() })
        .await
        .expect("ListEvents")
        .into_inner()
        .events;
    let restore = events.iter().find(|e| e.kind == "restore.finished").expect("restore.finished event");
    assert_eq!(restore.actor, "token:restorer");

    println!();
    let columns = ["none", "wrong", "revoked", "lacks scope", "other container", "unix 0660", "unix 0666", "allowed"];
    print!("{:<20}", "rpc");
    for column in columns {
        print!(" {column:<21}");
    }
    println!();
    for (rpc, row) in &matrix {
        print!("{:<20}", format!("{rpc:?}"));
        for column in columns {
            print!(" {:<21}", row.get(column).map(String::as_str).unwrap_or("-"));
        }
        println!();
    }
    println!("{} refused TCP calls, each followed by a check that nothing changed", checker.refused);
}

/// Runs the CLI with `args` on `socket` as uid/gid 65534 (no supplementary
/// groups: std drops them when root sets a uid) and classifies how it was
/// refused: "EACCES" (the connect itself), "PERMISSION_DENIED" (the
/// daemon), or what else happened (a failure of the test).
fn run_cli_as_outsider(socket: &Path, args: &[String]) -> String {
    let mut child = Command::new(CLI)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("ROLLPOINT_ENDPOINT")
        .env_remove("ROLLPOINT_TOKEN")
        .env_remove("ROLLPOINT_SOCKET")
        .current_dir("/")
        .uid(OUTSIDER)
        .gid(OUTSIDER)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the CLI");
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the CLI") {
            break status;
        }
        if Instant::now() > deadline {
            // Our unreaped child: the pid cannot have been reused.
            let _ = child.kill();
            let _ = child.wait();
            return format!("HUNG: rollpoint {args:?} ran {CLI_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = child.wait_with_output().expect("CLI output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    match status.code() {
        Some(3) if stderr.contains("no permission on socket") => "EACCES".into(),
        Some(1) if stderr.contains("permission denied:") && stderr.contains(&format!("uid {OUTSIDER}")) => {
            "PERMISSION_DENIED".into()
        }
        _ => format!("UNEXPECTED ({status}): {}", stderr.trim()),
    }
}
