//! Who may call: on the Unix socket the peer's credentials (SO_PEERCRED)
//! decide: root, members of the configured group, and configured uids. On
//! TCP a bearer token does (see `tokens`); each call then checks the scope
//! it needs with [`authorize`]. On the loopback run listener only the
//! credential of a command run in progress does (HTTP Basic, from the
//! userinfo of its `$SNAP_URL`; see `engine::run_grants`).
//! Until start-up recovery is done every call is refused as UNAVAILABLE.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

use crate::engine::run_grants::{RunGrant, RunGrants};
use crate::engine::tokens::{Scope, TokenBook};
use crate::engine::views::{SnapshotOrigin, TokenRecord};

#[derive(Debug, Clone, Default)]
pub struct UnixPolicy {
    /// Members of this group (primary or supplementary) are let in.
    pub group: Option<u32>,
    /// These uids are let in.
    pub uids: Vec<u32>,
}

impl UnixPolicy {
    /// Whether a peer with these ids may call. Root always may.
    pub fn allows(&self, uid: u32, gid: u32, supplementary: &[u32]) -> bool {
        uid == 0 || self.uids.contains(&uid) || self.group.is_some_and(|g| g == gid || supplementary.contains(&g))
    }
}

/// Who is calling, put in each request's extensions by the [`Gate`].
#[derive(Debug, Clone)]
pub enum Caller {
    /// A process on the Unix socket that the policy lets in.
    Local { uid: u32 },
    /// A bearer token on TCP.
    Token(TokenRecord),
    /// The command of a schedule entry, through its `$SNAP_URL`.
    Run(RunGrant),
}

impl Caller {
    /// Who asked, for logs and events: `uid:0` or `token:ci`.
    pub fn actor(&self) -> String {
        match self {
            Caller::Local { uid } => format!("uid:{uid}"),
            Caller::Token(token) => format!("token:{}", token.name),
            Caller::Run(run) => format!("user:{}", run.user),
        }
    }

    /// Where a snapshot this caller takes comes from: the entry of a run,
    /// else the API.
    pub fn origin(&self) -> SnapshotOrigin {
        match self {
            Caller::Run(run) => SnapshotOrigin::Schedule { entry: run.entry.clone() },
            _ => SnapshotOrigin::Api,
        }
    }

    fn allows(&self, scope: Scope, container: Option<&str>) -> Result<(), Status> {
        let token = match self {
            Caller::Local { .. } => return Ok(()),
            Caller::Run(run) => return run_allows(run, scope, container),
            Caller::Token(token) => token,
        };
        if !token.scopes.iter().filter_map(|s| Scope::parse(s)).any(|held| held.grants(scope)) {
            return Err(Status::permission_denied(format!("token {} lacks the {} scope", token.name, scope.name())));
        }
        if token.containers.is_empty() {
            return Ok(());
        }
        match container {
            Some(container) if token.containers.iter().any(|c| c == container) => Ok(()),
            Some(container) => {
                Err(Status::permission_denied(format!("token {} is not valid for container {container}", token.name)))
            }
            None => Err(Status::permission_denied(format!(
                "token {} is limited to some containers; this call is not about one of them",
                token.name
            ))),
        }
    }
}

/// A run's credential takes and reads snapshots of its entry's container,
/// and nothing else. (Its listener serves no other route either.)
fn run_allows(run: &RunGrant, scope: Scope, container: Option<&str>) -> Result<(), Status> {
    let snapshot_call = matches!(scope, Scope::Snapshot | Scope::Read);
    if snapshot_call && container == Some(run.container.as_str()) {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "the credential of a run of {} may only take and read snapshots of container {}",
        run.entry, run.container
    )))
}

/// Checks that the caller of `request` holds `scope`, for `container` when
/// the call is about one. Local callers allowed on the socket hold every
/// scope.
pub fn authorize<T>(request: &Request<T>, scope: Scope, container: Option<&str>) -> Result<Caller, Status> {
    let caller =
        request.extensions().get::<Caller>().cloned().ok_or_else(|| Status::permission_denied("no caller identity"))?;
    caller.allows(scope, container)?;
    Ok(caller)
}

/// Managing tokens takes root on the socket, or an admin token.
pub fn authorize_token_management<T>(request: &Request<T>) -> Result<Caller, Status> {
    let caller = authorize(request, Scope::Admin, None)?;
    match caller {
        Caller::Local { uid } if uid != 0 => Err(Status::permission_denied("only root manages tokens")),
        caller => Ok(caller),
    }
}

/// The interceptor in front of every rollpoint service: authenticates the
/// caller (UNAUTHENTICATED or PERMISSION_DENIED) and records who it is.
#[derive(Clone)]
pub struct Gate {
    pub policy: Arc<UnixPolicy>,
    pub tokens: Arc<TokenBook>,
    /// Set once start-up recovery is done.
    pub ready: Arc<AtomicBool>,
    /// Credentials of the command runs in progress.
    pub runs: Arc<RunGrants>,
}

impl Gate {
    /// Who is calling, from what the transport knows: the peer's
    /// credentials on the Unix socket (`peer`), else the `Authorization`
    /// header. gRPC (the interceptor) and REST (`rest::auth`) both come
    /// here, so they let in and turn away the same callers.
    pub fn authenticate(&self, peer: Option<&UdsConnectInfo>, authorization: Option<&[u8]>) -> Result<Caller, Status> {
        if !self.ready.load(Ordering::Acquire) {
            return Err(Status::unavailable("rollpointd is still recovering; try again in a moment"));
        }
        if let Some(info) = peer {
            let cred = info.peer_cred.ok_or_else(|| Status::permission_denied("peer credentials unavailable"))?;
            let supplementary = cred.pid().map(supplementary_groups).unwrap_or_default();
            if !self.policy.allows(cred.uid(), cred.gid(), &supplementary) {
                return Err(Status::permission_denied(format!(
                    "uid {} is not allowed on this socket (root, the socket group, or allowed_uids)",
                    cred.uid()
                )));
            }
            return Ok(Caller::Local { uid: cred.uid() });
        }
        let header = authorization.ok_or_else(|| {
            Status::unauthenticated("an \"authorization: Bearer <token>\" header is required over TCP")
        })?;
        match Credential::parse(header)? {
            Credential::Bearer(secret) => Ok(Caller::Token(
                self.tokens.authenticate(secret).ok_or_else(|| Status::unauthenticated("unknown token"))?,
            )),
            Credential::Basic(_) => Err(Status::unauthenticated(
                "a run's credential ($SNAP_URL) is accepted only on the loopback run listener; use a bearer token",
            )),
        }
    }

    /// Who is calling on the run listener: a command run in progress,
    /// from a loopback address, with its credential as HTTP Basic.
    pub fn authenticate_run(&self, peer: std::net::SocketAddr, authorization: Option<&[u8]>) -> Result<Caller, Status> {
        if !self.ready.load(Ordering::Acquire) {
            return Err(Status::unavailable("rollpointd is still recovering; try again in a moment"));
        }
        if !peer.ip().is_loopback() {
            return Err(Status::permission_denied(format!("{peer} is not a loopback address")));
        }
        let header = authorization.ok_or_else(|| {
            Status::unauthenticated("this listener takes the credential of a command run ($SNAP_URL's user:password)")
        })?;
        match Credential::parse(header)? {
            Credential::Basic(secret) => Ok(Caller::Run(self.runs.find(&secret).ok_or_else(|| {
                Status::unauthenticated("unknown run credential: its run has ended, or it never was one")
            })?)),
            Credential::Bearer(_) => Err(Status::unauthenticated(
                "this listener takes only the credential of a command run ($SNAP_URL), not tokens",
            )),
        }
    }
}

/// What an `Authorization` header carries. One place reads the header, so
/// another scheme (HTTP Basic with a per-run credential) is one more variant
/// here and one more arm in [`Gate::authenticate`].
enum Credential<'a> {
    Bearer(&'a str),
    /// The password of `Basic base64(user:password)`; the user is not used.
    Basic(String),
}

impl<'a> Credential<'a> {
    fn parse(header: &'a [u8]) -> Result<Credential<'a>, Status> {
        let malformed = || Status::unauthenticated("the authorization header must read \"Bearer <token>\"");
        let header = std::str::from_utf8(header).map_err(|_| malformed())?;
        if let Some(secret) = header.strip_prefix("Bearer ") {
            return Ok(Credential::Bearer(secret.trim()));
        }
        let encoded = header.strip_prefix("Basic ").ok_or_else(malformed)?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|decoded| decoded.split_once(':').map(|(_, password)| Credential::Basic(password.to_owned())))
            .ok_or_else(|| Status::unauthenticated("the Basic credentials are not base64 of user:password"))
    }
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.authenticate(
            request.extensions().get::<UdsConnectInfo>(),
            request.metadata().get("authorization").map(|value| value.as_bytes()),
        )?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The supplementary groups of a process, from `/proc/<pid>/status`.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return Vec::new() };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| groups.split_whitespace().filter_map(|g| g.parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_group_members_and_listed_uids_only() {
        let policy = UnixPolicy { group: Some(990), uids: vec![1500] };
        assert!(policy.allows(0, 0, &[]));
        assert!(policy.allows(1000, 990, &[]));
        assert!(policy.allows(1000, 1000, &[4, 990]));
        assert!(policy.allows(1500, 1500, &[]));
        assert!(!policy.allows(1000, 1000, &[4, 24]));
        assert!(!UnixPolicy::default().allows(1000, 1000, &[]));
    }

    fn gate(dir: &std::path::Path) -> Gate {
        let store = Arc::new(crate::store::Store::open(&dir.join("db")).unwrap());
        Gate {
            policy: Arc::default(),
            tokens: Arc::new(TokenBook::open(store, &dir.join("token.key")).unwrap()),
            ready: Arc::new(AtomicBool::new(true)),
            runs: Arc::default(),
        }
    }

    fn basic(user_password: &str) -> Vec<u8> {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_password)).into_bytes()
    }

    #[test]
    fn a_runs_credential_opens_the_run_listener_only_from_loopback_while_the_run_lasts() {
        let dir = tempfile::tempdir().unwrap();
        let gate = gate(dir.path());
        let grant = RunGrant {
            entry: "users/root/entries/e".into(),
            user: "root".into(),
            container: "db-1".into(),
            run_id: "1".into(),
        };
        let loopback: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let secret = {
            let guard = gate.runs.mint(grant.clone());
            let header = basic(&format!("run:{}", guard.secret()));
            let caller = gate.authenticate_run(loopback, Some(&header)).unwrap();
            assert!(matches!(&caller, Caller::Run(run) if *run == grant));
            assert_eq!(caller.actor(), "user:root");
            assert_eq!(caller.origin(), SnapshotOrigin::Schedule { entry: grant.entry.clone() });
            // Its container's snapshots only.
            assert!(caller.allows(Scope::Snapshot, Some("db-1")).is_ok());
            assert!(caller.allows(Scope::Read, Some("db-1")).is_ok());
            assert!(caller.allows(Scope::Snapshot, Some("db-2")).is_err());
            assert!(caller.allows(Scope::Restore, Some("db-1")).is_err());
            assert!(caller.allows(Scope::Schedule, Some("db-1")).is_err());
            assert!(caller.allows(Scope::Read, None).is_err());
            // From another address, refused; on the other listeners, too.
            let remote: std::net::SocketAddr = "192.0.2.7:40000".parse().unwrap();
            let refused = gate.authenticate_run(remote, Some(&header)).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::PermissionDenied);
            assert_eq!(gate.authenticate(None, Some(&header)).unwrap_err().code(), tonic::Code::Unauthenticated);
            guard.secret().to_owned()
        };
        let ended = gate.authenticate_run(loopback, Some(&basic(&format!("run:{secret}")))).unwrap_err();
        assert_eq!(ended.code(), tonic::Code::Unauthenticated);
        for header in [b"Basic !!!".to_vec(), basic("no-colon"), b"Bearer x".to_vec()] {
            assert_eq!(
                gate.authenticate_run(loopback, Some(&header)).unwrap_err().code(),
                tonic::Code::Unauthenticated
            );
        }
    }

    #[test]
    fn reads_our_own_groups() {
        // Every process has a Groups: line, possibly empty; this must not panic.
        let _ = supplementary_groups(i32::try_from(std::process::id()).unwrap());
    }
}
