//! `rollpoint restore ...`: the steps are printed as they happen, from the
//! daemon's `restore.step` events, then the result.

use std::time::Duration;

use super::Context;
use crate::api::proto;
use crate::cli::args::RestoreArgs;
use crate::cli::error::CliError;
use crate::cli::views::RestoreView;

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
    };
    let response = context.clients.snapshots.restore_snapshot(request).await;
    if let Some(progress) = progress {
        // Let the last steps arrive, then stop watching.
        let _ = tokio::time::timeout(STEP_GRACE, progress.done).await;
        progress.task.abort();
    }
    let response = response.map_err(|status| context.fail(status))?;
    context.emit(&RestoreView::new(&args.container, response.into_inner()))?;
    Ok(())
}

struct Progress {
    task: tokio::task::JoinHandle<()>,
    /// Fires once the "start" step has been printed.
    done: tokio::sync::oneshot::Receiver<()>,
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
        .watch_events(proto::WatchEventsRequest { after_sequence: newest, container: container.to_owned() })
        .await
        .ok()?
        .into_inner();
    let (done_sender, done) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut done_sender = Some(done_sender);
        while let Ok(Some(event)) = stream.message().await {
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
        }
    });
    Some(Progress { task, done })
}
