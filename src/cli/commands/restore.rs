//! `rollpoint restore ...`: the steps are printed as they happen, from the
//! daemon's `restore.step` events, then the result, which lists the steps
//! again only where the live feed missed some.

use std::time::Duration;

use super::Context;
use crate::api::proto;
use crate::cli::args::RestoreArgs;
use crate::cli::error::CliError;
use crate::cli::views::{RestoreView, StepView};

/// How long to wait for the last step events after the reply.
const STEP_GRACE: Duration = Duration::from_millis(200);

pub async fn run(context: &mut Context, args: RestoreArgs) -> Result<(), CliError> {
    let progress = if context.json {
        None
    } else {
        // Progress goes to stderr so that stdout holds only the result.
        eprintln!("restoring {} to {}...", args.container, args.snapshot);
        watch_steps(context, &args.container).await
    };
    let request = proto::RestoreSnapshotRequest {
        container: args.container.clone(),
        snapshot: args.snapshot,
        request_id: args.request_id.unwrap_or_default(),
        remote: args.remote.unwrap_or_default(),
    };
    let response = context.clients.snapshots.restore_snapshot(request).await;
    let printed = match progress {
        Some(progress) => progress.finish().await,
        None => Vec::new(),
    };
    let response = response.map_err(|status| context.fail(status))?;
    let mut view = RestoreView::new(&args.container, response.into_inner());
    view.steps_shown_live = all_shown(&printed, &view.steps);
    context.emit(&view)?;
    Ok(())
}

/// Whether every step of the result was printed live, so that the result
/// need not list them again. An empty live feed (not watched, watch refused,
/// events missed) shows nothing: the result lists the steps.
fn all_shown(printed: &[String], steps: &[StepView]) -> bool {
    !printed.is_empty() && steps.iter().all(|step| printed.contains(&step.name))
}

struct Progress {
    task: tokio::task::JoinHandle<Vec<String>>,
    /// Fires once the "start" step has been printed.
    done: tokio::sync::oneshot::Receiver<()>,
    /// Tells the task to stop watching and return what it printed.
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Progress {
    /// Lets the last steps arrive, then stops watching; returns the names
    /// of the steps printed.
    async fn finish(self) -> Vec<String> {
        let _ = tokio::time::timeout(STEP_GRACE, self.done).await;
        let _ = self.stop.send(());
        // A task that panicked printed who knows what: list the steps again.
        self.task.await.unwrap_or_default()
    }
}

/// Prints `restore.step` events of `container` to stderr as they come.
/// Watching is best effort: without it (an old daemon, no read scope) the
/// restore still runs and its result lists the steps.
async fn watch_steps(context: &mut Context, container: &str) -> Option<Progress> {
    let newest = context
        .clients
        .events
        .list_events(proto::ListEventsRequest { page_size: 1, ..Default::default() })
        .await
        .ok()?
        .into_inner()
        .events
        .first()
        .map_or(0, |event| event.sequence);
    let mut stream = context
        .clients
        .events
        .watch_events(proto::WatchEventsRequest {
            after_sequence: newest,
            container: container.to_owned(),
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner();
    let (done_sender, done) = tokio::sync::oneshot::channel();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut done_sender = Some(done_sender);
        let mut printed = Vec::new();
        loop {
            let event = tokio::select! {
                _ = &mut stopped => break,
                message = stream.message() => match message {
                    Ok(Some(event)) => event,
                    Ok(None) | Err(_) => break,
                },
            };
            if event.kind != "restore.step" {
                continue;
            }
            let took = event.duration.map_or(0.0, |d| d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6);
            eprintln!("  {:<8} {took:>9.2} ms", event.detail);
            if event.detail == "start" {
                if let Some(sender) = done_sender.take() {
                    let _ = sender.send(());
                }
            }
            printed.push(event.detail);
        }
        printed
    });
    Some(Progress { task, done, stop })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(names: &[&str]) -> Vec<StepView> {
        names.iter().map(|name| StepView { name: (*name).to_owned(), took_ms: 1.0 }).collect()
    }

    fn printed(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    const ALL: [&str; 5] = ["prepare", "stop", "swap", "start", "record"];

    #[test]
    fn steps_printed_live_are_not_listed_again() {
        assert!(all_shown(&printed(&ALL), &steps(&ALL)));
    }

    #[test]
    fn the_result_lists_the_steps_when_the_feed_missed_any() {
        // No feed at all (--json, no read scope, an old daemon).
        assert!(!all_shown(&[], &steps(&ALL)));
        // The feed broke off, or its first events came too late.
        assert!(!all_shown(&printed(&["prepare", "stop"]), &steps(&ALL)));
        assert!(!all_shown(&printed(&["start", "record"]), &steps(&ALL)));
        // A step the daemon reports that no event announced.
        assert!(!all_shown(&printed(&ALL), &steps(&["prepare", "stop", "swap", "verify", "start", "record"])));
    }
}
