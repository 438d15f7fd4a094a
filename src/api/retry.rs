//! Polite retries for a client of the daemon: a call the daemon refused
//! because it was busy is sent again after a pause, with exponential
//! backoff and jitter, never sooner than the daemon's `RetryInfo` asks.
//!
//! What is repeated, and why it is safe:
//! - RESOURCE_EXHAUSTED carrying `google.rpc.RetryInfo`: the admission
//!   queue refused the call before it ran (a full queue, or no slot within
//!   the wait), so any call may be sent again;
//! - UNAVAILABLE, or a broken connection, only for reads (`Get*`, `List*`):
//!   a change may have happened before the connection broke.
//!
//! It sits under the tonic clients as a tower service: one place serves
//! every call. A request's body is one encoded message (rollpoint has no
//! client-streaming call), held so that it can be sent again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use tonic::body::Body;
use tonic::codegen::StdError;
use tonic::Code;
use tonic_types::StatusExt as _;

/// How hard to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 sends each call once.
    pub retries: u32,
    /// The first pause; doubled at each retry, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub const NONE: RetryPolicy =
        RetryPolicy { retries: 0, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(10) };

    pub fn with_retries(retries: u32) -> RetryPolicy {
        RetryPolicy { retries, ..RetryPolicy::NONE }
    }

    /// The pause before retry `attempt` (1 for the first): a random point in
    /// the upper half of the backoff, and never less than the daemon asked.
    pub fn delay(&self, attempt: u32, asked: Option<Duration>, jitter: f64) -> Duration {
        let backoff = self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max_delay);
        let jittered = backoff.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        jittered.max(asked.unwrap_or_default())
    }
}

/// What is said before each retry (the CLI prints it).
#[derive(Clone, Debug)]
pub struct RetryNotice {
    /// `/package.Service/Method`.
    pub method: String,
    pub attempt: u32,
    pub of: u32,
    pub delay: Duration,
    pub reason: String,
}

pub type OnRetry = Arc<dyn Fn(&RetryNotice) + Send + Sync>;

/// The retrying service around `S` (a tonic `Channel`).
#[derive(Clone)]
pub struct Retrying<S> {
    inner: S,
    policy: RetryPolicy,
    on_retry: Option<OnRetry>,
}

impl<S> Retrying<S> {
    pub fn new(inner: S, policy: RetryPolicy, on_retry: Option<OnRetry>) -> Retrying<S> {
        Retrying { inner, policy, on_retry }
    }
}

/// Why a response (or a failure to get one) is worth sending again, if it is.
fn retry_reason(method: &str, outcome: &Result<http::Response<Body>, StdError>) -> Option<(String, Option<Duration>)> {
    let read_only = method.rsplit('/').next().is_some_and(|name| name.starts_with("Get") || name.starts_with("List"));
    match outcome {
        Err(error) => read_only.then(|| (format!("connection failed: {error}"), None)),
        Ok(response) => {
            // A refusal before any message is a trailers-only response: its
            // status is in the headers.
            let status = tonic::Status::from_header_map(response.headers())?;
            match status.code() {
                Code::ResourceExhausted => {
                    let asked = status.get_details_retry_info()?.retry_delay;
                    Some((status.message().to_owned(), asked))
                }
                Code::Unavailable if read_only => Some((status.message().to_owned(), None)),
                _ => None,
            }
        }
    }
}

/// A number in [0, 1) for the jitter.
fn jitter() -> f64 {
    f64::from(getrandom::u32().unwrap_or(u32::MAX / 2)) / (f64::from(u32::MAX) + 1.0)
}

impl<S> tower::Service<http::Request<Body>> for Retrying<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Error: Into<StdError>,
    S::Future: Send,
{
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, StdError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StdError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone is not ready; the service polled ready goes with the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (policy, on_retry) = (self.policy, self.on_retry.clone());
        Box::pin(async move {
            if policy.retries == 0 {
                return inner.call(request).await.map_err(Into::into);
            }
            let (parts, body) = request.into_parts();
            let message: Bytes = body.collect().await?.to_bytes();
            let method = parts.uri.path().to_owned();
            let mut attempt = 0;
            loop {
                let again =
                    http::Request::from_parts(parts.clone(), Body::new(http_body_util::Full::new(message.clone())));
                let outcome = inner.call(again).await.map_err(Into::into);
                attempt += 1;
                if attempt > policy.retries {
                    return outcome;
                }
                let Some((reason, asked)) = retry_reason(&method, &outcome) else { return outcome };
                let delay = policy.delay(attempt, asked, jitter());
                if let Some(on_retry) = &on_retry {
                    on_retry(&RetryNotice { method: method.clone(), attempt, of: policy.retries, delay, reason });
                }
                tokio::time::sleep(delay).await;
                std::future::poll_fn(|cx| inner.poll_ready(cx)).await.map_err(Into::into)?;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_never_undercuts_the_daemon() {
        let policy = RetryPolicy::with_retries(5);
        assert_eq!(policy.delay(1, None, 1.0), Duration::from_millis(200));
        assert_eq!(policy.delay(1, None, 0.0), Duration::from_millis(100));
        assert_eq!(policy.delay(3, None, 1.0), Duration::from_millis(800));
        assert_eq!(policy.delay(30, None, 1.0), Duration::from_secs(10));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(1)), 0.3), Duration::from_secs(1));
    }

    fn trailers_only(status: tonic::Status) -> Result<http::Response<Body>, StdError> {
        Ok(status.into_http())
    }

    #[test]
    fn only_refusals_that_ran_nothing_are_repeated_for_changes() {
        let busy = tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "queue full",
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
        );
        let create = "/rollpoint.v1.SnapshotService/CreateSnapshot";
        let get = "/rollpoint.v1.SnapshotService/GetSnapshot";
        assert_eq!(retry_reason(create, &trailers_only(busy)).unwrap().1, Some(Duration::from_secs(1)));
        // Out of space is not the admission queue: no RetryInfo, no retry.
        assert!(retry_reason(create, &trailers_only(tonic::Status::resource_exhausted("disk full"))).is_none());
        assert!(retry_reason(create, &trailers_only(tonic::Status::unavailable("restarting"))).is_none());
        assert!(retry_reason(get, &trailers_only(tonic::Status::unavailable("restarting"))).is_some());
        assert!(retry_reason(get, &trailers_only(tonic::Status::not_found("no such snapshot"))).is_none());
    }
}
