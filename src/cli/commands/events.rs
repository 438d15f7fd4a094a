//! `rollpoint events`: the audit timeline, then (--follow) new events as they
//! happen.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{all_pages, Context};
use crate::api::convert::timestamp;
use crate::api::proto;
use crate::cli::args::EventsArgs;
use crate::cli::error::CliError;
use crate::cli::output::{json_line, write_out, Timeline};
use crate::cli::views::{EventView, ListView};

/// First wait before reconnecting a broken stream; doubled up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub async fn run(context: &mut Context, args: EventsArgs) -> Result<(), CliError> {
    let events = timeline(context, &args, Utc::now()).await.map_err(|status| context.fail(status))?;
    if !args.follow {
        context.emit(&ListView(events.into_iter().map(EventView::from).collect()))?;
        return Ok(());
    }
    let after = match events.iter().map(|event| event.sequence).max() {
        Some(last) => last,
        None => newest_sequence(context, &args).await.map_err(|status| context.fail(status))?,
    };
    let mut printer = Printer { json: context.json, timeline: Timeline::default() };
    if !printer.print(events, true)? {
        return Ok(());
    }
    follow(context, &args, after, printer).await
}

/// The events asked for, oldest first: the `limit` newest of the range (read
/// newest first, then turned round) or, with --oldest-first, the oldest.
async fn timeline(
    context: &Context,
    args: &EventsArgs,
    now: DateTime<Utc>,
) -> Result<Vec<proto::Event>, tonic::Status> {
    if args.limit == 0 {
        return Ok(Vec::new());
    }
    let filter = list_request(args, now);
    let client = context.clients.events.clone();
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let mut events = all_pages(Some(limit), |page_size, page_token| {
        let mut client = client.clone();
        let request = proto::ListEventsRequest { page_size, page_token, ..filter.clone() };
        async move {
            let page = client.list_events(request).await?.into_inner();
            Ok((page.events, page.next_page_token))
        }
    })
    .await?;
    if !args.oldest_first {
        events.reverse();
    }
    Ok(events)
}

/// The filters of a ListEvents call; `now` settles ages such as `24h`.
pub fn list_request(args: &EventsArgs, now: DateTime<Utc>) -> proto::ListEventsRequest {
    proto::ListEventsRequest {
        container: args.container.clone().unwrap_or_default(),
        entry: args.entry.clone().unwrap_or_default(),
        kind: args.kind.clone().unwrap_or_default(),
        start_time: args.since.map(|since| timestamp(since.at(now))),
        end_time: args.until.map(|until| timestamp(until.at(now))),
        page_size: 0,
        page_token: String::new(),
        oldest_first: args.oldest_first,
    }
}

/// Where to follow from when nothing was shown: the newest event the watch
/// would send (0 when there is none yet), so that only new ones follow.
async fn newest_sequence(context: &Context, args: &EventsArgs) -> Result<u64, tonic::Status> {
    let request = proto::ListEventsRequest {
        container: args.container.clone().unwrap_or_default(),
        page_size: 1,
        ..Default::default()
    };
    let page = context.clients.events.clone().list_events(request).await?.into_inner();
    Ok(page.events.first().map_or(0, |event| event.sequence))
}

/// WatchEvents filters by container only; the other filters apply here, as
/// ListEvents applies them (a kind matches itself and its `kind.` children).
pub fn wanted(args: &EventsArgs, event: &proto::Event) -> bool {
    let container = args.container.as_deref().is_none_or(|container| event.container == container);
    let entry = args.entry.as_deref().is_none_or(|entry| event.entry == entry);
    let kind = args.kind.as_deref().is_none_or(|kind| {
        event.kind == kind || event.kind.strip_prefix(kind).is_some_and(|rest| rest.starts_with('.'))
    });
    container && entry && kind
}

/// Prints events as they come: timeline lines, or JSON Lines with --json.
struct Printer {
    json: bool,
    timeline: Timeline,
}

impl Printer {
    /// `Ok(false)` when the reader of stdout went away.
    fn print(&mut self, events: Vec<proto::Event>, first: bool) -> Result<bool, CliError> {
        let views: Vec<EventView> = events.into_iter().map(EventView::from).collect();
        let text = if self.json {
            let lines: std::io::Result<Vec<String>> = views.iter().map(json_line).collect();
            lines.map_err(|source| CliError::Output { source })?.concat()
        } else if first {
            self.timeline.start(&views)
        } else {
            self.timeline.more(&views)
        };
        write_out(&text).map_err(|source| CliError::Output { source })
    }
}

/// Streams events after `after` until Ctrl-C (or stdout closes); a broken
/// stream is opened again after the last sequence seen, after a short wait.
async fn follow(context: &Context, args: &EventsArgs, mut after: u64, mut printer: Printer) -> Result<(), CliError> {
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut client = context.clients.events.clone();
    let mut backoff = FIRST_BACKOFF;
    let mut broke = false;
    if !context.json {
        eprintln!("following new events; Ctrl-C to stop");
    }
    loop {
        let request = proto::WatchEventsRequest {
            after_sequence: after,
            container: args.container.clone().unwrap_or_default(),
            ..Default::default()
        };
        let opened = tokio::select! {
            _ = &mut interrupted => return Ok(()),
            opened = client.watch_events(request) => opened,
        };
        let broken = match opened {
            Err(status) => status,
            Ok(response) => {
                if std::mem::take(&mut broke) {
                    eprintln!("rollpoint: event stream open again");
                }
                let mut stream = response.into_inner();
                loop {
                    let message = tokio::select! {
                        _ = &mut interrupted => return Ok(()),
                        message = stream.message() => message,
                    };
                    match message {
                        Ok(Some(event)) => {
                            backoff = FIRST_BACKOFF;
                            if event.sequence <= after {
                                continue;
                            }
                            after = event.sequence;
                            if wanted(args, &event) && !printer.print(vec![event], false)? {
                                return Ok(());
                            }
                        }
                        Ok(None) => break tonic::Status::unavailable("the daemon ended the stream"),
                        Err(status) => break status,
                    }
                }
            }
        };
        if !worth_retrying(broken.code()) {
            return Err(context.fail(broken));
        }
        broke = true;
        eprintln!(
            "rollpoint: event stream broke ({}); reconnecting in {:.2} s after event {after}",
            context.fail(broken),
            backoff.as_secs_f64()
        );
        tokio::select! {
            _ = &mut interrupted => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether a broken stream may come back: the daemon restarting or the
/// network failing, not a refusal.
fn worth_retrying(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::Aborted
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Command};

    fn args(argv: &[&str]) -> Result<EventsArgs, clap::Error> {
        let cli = Cli::try_parse_from(["rollpoint", "events"].iter().chain(argv))?;
        match cli.command {
            Command::Events(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ages_count_back_from_now() {
        let now = at("2026-05-04T03:05:00Z");
        let request = list_request(&args(&["--since", "24h", "--until", "30m"]).unwrap(), now);
        assert_eq!(request.start_time, Some(timestamp(at("2026-05-03T03:05:00Z"))));
        assert_eq!(request.end_time, Some(timestamp(at("2026-05-04T02:35:00Z"))));
        let since = |value: &str| list_request(&args(&["--since", value]).unwrap(), now).start_time.unwrap();
        assert_eq!(since("7d"), timestamp(at("2026-04-27T03:05:00Z")));
        assert_eq!(since("1h30m"), timestamp(at("2026-05-04T01:35:00Z")));
        assert_eq!(since("2w"), timestamp(at("2026-04-20T03:05:00Z")));
        assert_eq!(since("45s"), timestamp(at("2026-05-04T03:04:15Z")));
    }

    #[test]
    fn times_and_dates_are_taken_as_they_are() {
        let now = at("2026-05-04T03:05:00Z");
        let since = |value: &str| list_request(&args(&["--since", value]).unwrap(), now).start_time.unwrap();
        assert_eq!(since("2026-05-04T02:50:00Z"), timestamp(at("2026-05-04T02:50:00Z")));
        assert_eq!(since("2026-05-04T04:50:00.250+02:00"), timestamp(at("2026-05-04T02:50:00.250Z")));
        assert_eq!(since("2026-05-04"), timestamp(at("2026-05-04T00:00:00Z")));
    }

    #[test]
    fn bad_times_are_usage_errors() {
        for bad in ["", "24", "h", "24x", "1h30", "-5m", "yesterday", "2026-05-04 02:50", "2026-13-01"] {
            assert!(args(&["--since", bad]).is_err(), "{bad:?}");
        }
        assert!(args(&["--follow", "--until", "1h"]).is_err());
    }

    #[test]
    fn filters_and_defaults() {
        let parsed = args(&["--container", "db-1", "--entry", "pre-migration", "--kind", "snapshot"]).unwrap();
        let request = list_request(&parsed, Utc::now());
        assert_eq!(request.container, "db-1");
        assert_eq!(request.entry, "users/root/entries/pre-migration");
        assert_eq!(request.kind, "snapshot");
        assert_eq!((request.start_time, request.end_time, request.oldest_first), (None, None, false));
        assert_eq!(parsed.limit, 100);
        assert!(!parsed.follow);
        let parsed = args(&["-f", "--oldest-first", "--limit", "5", "--entry", "users/backup/entries/x"]).unwrap();
        assert!(parsed.follow && parsed.oldest_first);
        assert_eq!((parsed.limit, parsed.entry.as_deref()), (5, Some("users/backup/entries/x")));
    }

    #[test]
    fn followed_events_are_filtered_as_the_list_is() {
        let parsed = args(&["--kind", "snapshot", "--entry", "nightly"]).unwrap();
        let event =
            |kind: &str, entry: &str| proto::Event { kind: kind.into(), entry: entry.into(), ..Default::default() };
        assert!(wanted(&parsed, &event("snapshot.created", "users/root/entries/nightly")));
        assert!(wanted(&parsed, &event("snapshot", "users/root/entries/nightly")));
        assert!(!wanted(&parsed, &event("snapshots.created", "users/root/entries/nightly")));
        assert!(!wanted(&parsed, &event("snapshot.created", "users/root/entries/other")));
        assert!(wanted(&args(&[]).unwrap(), &event("recovery", "")));
    }

    #[test]
    fn only_transient_failures_reconnect() {
        assert!(worth_retrying(tonic::Code::Unavailable));
        assert!(!worth_retrying(tonic::Code::PermissionDenied));
        assert!(!worth_retrying(tonic::Code::Unimplemented));
    }
}
