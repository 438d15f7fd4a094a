//! Who may call: on the Unix socket the peer's credentials (SO_PEERCRED)
//! decide: root, members of the configured group, and configured uids.
//! Until start-up recovery is done every call is refused as UNAVAILABLE.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tonic::transport::server::{TcpConnectInfo, UdsConnectInfo};
use tonic::{Request, Status};

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

/// The interceptor in front of every rollpoint service.
#[derive(Clone)]
pub struct Gate {
    pub policy: Arc<UnixPolicy>,
    /// Set once start-up recovery is done.
    pub ready: Arc<AtomicBool>,
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if !self.ready.load(Ordering::Acquire) {
            return Err(Status::unavailable("rollpointd is still recovering; try again in a moment"));
        }
        if let Some(info) = request.extensions().get::<UdsConnectInfo>() {
            let cred = info.peer_cred.ok_or_else(|| Status::permission_denied("peer credentials unavailable"))?;
            let supplementary = cred.pid().map(supplementary_groups).unwrap_or_default();
            if !self.policy.allows(cred.uid(), cred.gid(), &supplementary) {
                return Err(Status::permission_denied(format!(
                    "uid {} is not allowed on this socket (root, the socket group, or allowed_uids)",
                    cred.uid()
                )));
            }
            return Ok(request);
        }
        if let Some(info) = request.extensions().get::<TcpConnectInfo>() {
            // The TCP listener only binds loopback addresses (see server.rs).
            if info.remote_addr().is_some_and(|a| a.ip().is_loopback()) {
                return Ok(request);
            }
            return Err(Status::permission_denied("only loopback clients are accepted over TCP"));
        }
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
