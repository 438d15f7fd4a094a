//! The one place where failures become a message on stderr and an exit code.

use std::process::ExitCode;

use tonic::Code;
use tonic_types::StatusExt as _;

use crate::api::client::{ConnectError, Target};

/// The daemon refused or failed the request.
pub const EXIT_SERVER: u8 = 1;
/// Bad usage (clap exits with this code itself).
pub const EXIT_USAGE: u8 = 2;
/// The daemon cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{source}")]
    Connect { target: Target, source: ConnectError },
    #[error("{}: {}", code_words(.status.code()), .status.message())]
    Status { target: Target, status: tonic::Status, hint: Option<&'static str> },
    #[error("cannot write the output")]
    Output { source: std::io::Error },
    /// The daemon did what was asked, and what it ran failed (`schedule run`).
    #[error("{message}")]
    Local { message: String },
    #[error("{what} failed")]
    ActionFailed { what: String },
}

impl CliError {
    pub fn status(target: &Target, status: tonic::Status) -> CliError {
        CliError::Status { target: target.clone(), status, hint: None }
    }

    /// Adds what to do on the command line when the daemon answers `code`;
    /// its messages name API fields, not flags.
    pub fn hint_on(mut self, code: Code, text: &'static str) -> CliError {
        if let CliError::Status { status, hint, .. } = &mut self {
            if status.code() == code {
                *hint = Some(text);
            }
        }
        self
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            // What the command line gave cannot be used, before any connection.
            CliError::Connect {
                source: ConnectError::BadToken | ConnectError::CaCert { .. } | ConnectError::CaCertNotPem { .. },
                ..
            } => EXIT_USAGE,
            CliError::Connect { .. } => EXIT_UNREACHABLE,
            // A call that fails at the transport (daemon gone mid-call) comes as UNAVAILABLE.
            CliError::Status { status, .. } if status.code() == Code::Unavailable => EXIT_UNREACHABLE,
            CliError::Status { .. }
            | CliError::Output { .. }
            | CliError::ActionFailed { .. }
            | CliError::Local { .. } => EXIT_SERVER,
        }
    }

    /// The lines printed to stderr: the error with its causes, then a hint.
    pub fn report(&self) -> String {
        let mut text = format!("rollpoint: {}", chain(self));
        if let Some(hint) = self.hint() {
            text.push_str("\nrollpoint: ");
            text.push_str(&hint);
        }
        text
    }

    fn hint(&self) -> Option<String> {
        let target = match self {
            CliError::Connect {
                source: ConnectError::BadToken | ConnectError::CaCert { .. } | ConnectError::CaCertNotPem { .. },
                ..
            }
            | CliError::Output { .. }
            | CliError::ActionFailed { .. }
            | CliError::Local { .. } => return None,
            CliError::Connect { target, .. } => target,
            CliError::Status { target, status, .. } if status.code() == Code::Unavailable => target,
            CliError::Status { status, .. }
                if status.code() == Code::ResourceExhausted && status.get_details_retry_info().is_some() =>
            {
                return Some(
                    "the daemon was too busy to take the call, also when sent again (--retries, ROLLPOINT_RETRIES): \
                     try later, or raise max_queued_operations / admission_wait_ms in its configuration"
                        .into(),
                );
            }
            CliError::Status { hint, .. } => return hint.map(str::to_owned),
        };
        let connect_io = if matches!(self, CliError::Connect { .. }) { io_kind(self) } else { None };
        let denied = connect_io == Some(std::io::ErrorKind::PermissionDenied);
        // rustls refusing the daemon's certificate comes as InvalidData.
        let untrusted = connect_io == Some(std::io::ErrorKind::InvalidData);
        Some(match target {
            Target::Unix(path) if denied => {
                format!(
                    "no permission on socket {}: run as root or as a member of the daemon's socket group",
                    path.display()
                )
            }
            Target::Unix(path) => {
                format!("is rollpointd running? socket: {} (--socket, ROLLPOINT_SOCKET)", path.display())
            }
            Target::Tcp(url) if untrusted && url.starts_with("https://") => format!(
                "is the daemon's certificate signed by the CA given? endpoint: {url} (--ca-cert, ROLLPOINT_CA_CERT)"
            ),
            Target::Tcp(url) => format!("is rollpointd running? endpoint: {url} (--endpoint, ROLLPOINT_ENDPOINT)"),
        })
    }

    pub fn exit(&self) -> ExitCode {
        eprintln!("{}", self.report());
        ExitCode::from(self.exit_code())
    }
}

/// The error and its sources, `: `-separated, skipping a source whose text
/// the previous one already shows.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn io_kind(error: &dyn std::error::Error) -> Option<std::io::ErrorKind> {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = cause.source();
    }
    None
}

/// gRPC status codes in words, as printed after `rollpoint: `.
pub fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_print_code_in_words_and_exit_1() {
        let error = CliError::status(&Target::Unix("/s".into()), tonic::Status::not_found("container db-9 not found"));
        assert_eq!(error.report(), "rollpoint: not found: container db-9 not found");
        assert_eq!(error.exit_code(), EXIT_SERVER);
    }

    #[test]
    fn a_command_can_add_a_hint_for_one_code() {
        let target = Target::Unix("/s".into());
        let error = CliError::status(&target, tonic::Status::failed_precondition("has snapshots"))
            .hint_on(Code::FailedPrecondition, "use --delete-snapshots");
        assert_eq!(error.report(), "rollpoint: failed precondition: has snapshots\nrollpoint: use --delete-snapshots");
        let other = CliError::status(&target, tonic::Status::not_found("x")).hint_on(Code::FailedPrecondition, "use");
        assert_eq!(other.report(), "rollpoint: not found: x");
    }

    #[test]
    fn a_failed_action_exits_1() {
        let error = CliError::ActionFailed { what: "schedule entry users/root/entries/nightly".into() };
        assert_eq!(error.report(), "rollpoint: schedule entry users/root/entries/nightly failed");
        assert_eq!(error.exit_code(), EXIT_SERVER);
    }

    #[test]
    fn a_bad_ca_certificate_is_a_usage_error_without_a_daemon_hint() {
        let error = CliError::Connect {
            target: Target::Tcp("https://rp.example:7443".into()),
            source: ConnectError::CaCertNotPem { path: "/etc/rp/ca.der".into() },
        };
        assert_eq!(
            error.report(),
            "rollpoint: the CA certificate /etc/rp/ca.der is not PEM: no \"-----BEGIN CERTIFICATE-----\" block"
        );
        assert_eq!(error.exit_code(), EXIT_USAGE);
    }

    #[test]
    fn unavailable_hints_at_the_daemon_and_exits_3() {
        let error =
            CliError::status(&Target::Unix("/run/x.sock".into()), tonic::Status::unavailable("connection reset"));
        assert_eq!(
            error.report(),
            "rollpoint: unavailable: connection reset\n\
             rollpoint: is rollpointd running? socket: /run/x.sock (--socket, ROLLPOINT_SOCKET)"
        );
        assert_eq!(error.exit_code(), EXIT_UNREACHABLE);
    }
}
