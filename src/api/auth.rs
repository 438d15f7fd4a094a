//! Who may call: on the Unix socket the peer's credentials (SO_PEERCRED)
//! decide: root, members of the configured group, and configured uids. On
//! TCP a bearer token does (see `tokens`); each call then checks the scope
//! it needs with [`authorize`].
//! Until start-up recovery is done every call is refused as UNAVAILABLE.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

use super::tokens::{Scope, TokenBook};
use crate::store::TokenRecord;

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
}

impl Caller {
    /// Who asked, for logs and events: `uid:0` or `token:ci`.
    pub fn actor(&self) -> String {
        match self {
            Caller::Local { uid } => format!("uid:{uid}"),
            Caller::Token(token) => format!("token:{}", token.name),
        }
    }

    fn allows(&self, scope: Scope, container: Option<&str>) -> Result<(), Status> {
        let Caller::Token(token) = self else { return Ok(()) };
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
        }
    }
}

/// What an `Authorization` header carries. One place reads the header, so
/// another scheme (HTTP Basic with a per-run credential) is one more variant
/// here and one more arm in [`Gate::authenticate`].
enum Credential<'a> {
    Bearer(&'a str),
}

impl<'a> Credential<'a> {
    fn parse(header: &'a [u8]) -> Result<Credential<'a>, Status> {
        std::str::from_utf8(header)
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(|secret| Credential::Bearer(secret.trim()))
            .ok_or_else(|| Status::unauthenticated("the authorization header must read \"Bearer <token>\""))
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

    #[test]
    fn reads_our_own_groups() {
        // Every process has a Groups: line, possibly empty; this must not panic.
        let _ = supplementary_groups(i32::try_from(std::process::id()).unwrap());
    }
}
