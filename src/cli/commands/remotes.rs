//! `rollpoint remote ...`, `export` and `import`. Export and import print
//! their progress to stderr (a line that updates in place on a terminal, a
//! line every few seconds otherwise; nothing with --json) and their result
//! to stdout.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use tokio_stream::StreamExt as _;

use super::Context;
use crate::api::proto;
use crate::cli::args::{ExportArgs, ImportArgs, PruneArgs, RemoteCommand};
use crate::cli::error::CliError;
use crate::cli::output::bytes;
use crate::cli::remote_views::{
    ExportView, ImportView, PruneView, RemoteCheckView, RemoteInitView, RemoteSnapshotView, RemoteView, VerifyView,
};
use crate::cli::views::ListView;

pub async fn run(context: &mut Context, command: RemoteCommand) -> Result<(), CliError> {
    let remotes = &mut context.clients.remotes;
    match command {
        RemoteCommand::List => {
            let response = remotes.list_remotes(proto::ListRemotesRequest {}).await.map_err(|s| context.fail(s))?;
            context.emit(&ListView(response.into_inner().remotes.into_iter().map(RemoteView::from).collect()))
        }
        RemoteCommand::Init { remote } => {
            let request = proto::InitRemoteRequest { remote: remote.clone() };
            let r = remotes.init_remote(request).await.map_err(|s| context.fail(s))?.into_inner();
            context.emit(&RemoteInitView {
                remote,
                repository_id: r.repository_id,
                key_file: r.key_file,
                key_file_created: r.key_file_created,
            })
        }
        RemoteCommand::Check { remote } => {
            let request = proto::CheckRemoteRequest { remote: remote.clone() };
            let r = remotes.check_remote(request).await.map_err(|s| context.fail(s))?.into_inner();
            context.emit(&RemoteCheckView {
                remote,
                repository_id: r.repository_id,
                snapshots: r.snapshots,
                packs: r.packs,
                stored_bytes: r.stored_bytes,
                blobs: r.blobs,
            })
        }
        RemoteCommand::Snapshots { remote, container } => {
            let request = proto::ListRemoteSnapshotsRequest { remote, container: container.unwrap_or_default() };
            let r = remotes.list_remote_snapshots(request).await.map_err(|s| context.fail(s))?.into_inner();
            context.emit(&ListView(r.snapshots.into_iter().map(RemoteSnapshotView::from).collect()))
        }
        RemoteCommand::Verify { remote } => {
            let request = proto::VerifyRemoteRequest { remote: remote.clone() };
            let r = remotes.verify_remote(request).await.map_err(|s| context.fail(s))?.into_inner();
            let view = VerifyView::new(&remote, r);
            context.emit(&view)?;
            if view.problems.is_empty() {
                Ok(())
            } else {
                Err(CliError::ActionFailed {
                    what: format!("verifying remote {remote} ({} problems)", view.problems.len()),
                })
            }
        }
        RemoteCommand::Prune(args) => prune(context, args).await,
    }
}

async fn prune(context: &mut Context, args: PruneArgs) -> Result<(), CliError> {
    let request = proto::PruneRemoteRequest {
        remote: args.remote.clone(),
        keep_last: args.keep_last,
        keep_within_days: args.keep_days,
        container: args.container.unwrap_or_default(),
        grace_seconds: args.grace.map_or(0, |g| u32::try_from(g.as_secs()).unwrap_or(u32::MAX).max(1)),
        dry_run: args.dry_run,
    };
    let r = context.clients.remotes.prune_remote(request).await.map_err(|s| context.fail(s))?.into_inner();
    context.emit(&PruneView::new(&args.remote, args.dry_run, r))
}

pub async fn export(context: &mut Context, args: ExportArgs) -> Result<(), CliError> {
    use proto::export_snapshot_response::Update;
    let request = proto::ExportSnapshotRequest {
        container: args.container.clone(),
        snapshot: args.snapshot.clone(),
        remote: args.remote.clone(),
    };
    let stream = context.clients.remotes.export_snapshot(request).await.map_err(|s| context.fail(s))?.into_inner();
    let bar =
        ProgressLine::new(!context.json, format!("exporting {}/{} to {}", args.container, args.snapshot, args.remote));
    let result = follow(context, stream, bar, ("read", "uploaded"), "the export", |message| match message.update? {
        Update::Progress(progress) => Some(Step::Progress(progress)),
        Update::Result(result) => Some(Step::Done(result)),
    })
    .await?;
    context.emit(&ExportView::new(&args.remote, result))
}

pub async fn import(context: &mut Context, args: ImportArgs) -> Result<(), CliError> {
    use proto::import_snapshot_response::Update;
    let request = proto::ImportSnapshotRequest {
        remote: args.remote.clone(),
        container: args.container.clone(),
        snapshot: args.snapshot.clone(),
        target_path: args.to.map(|p| p.display().to_string()).unwrap_or_default(),
    };
    let stream = context.clients.remotes.import_snapshot(request).await.map_err(|s| context.fail(s))?.into_inner();
    let bar = ProgressLine::new(
        !context.json,
        format!("importing {}/{} from {}", args.container, args.snapshot, args.remote),
    );
    let result =
        follow(context, stream, bar, ("written", "downloaded"), "the import", |message| match message.update? {
            Update::Progress(progress) => Some(Step::Progress(progress)),
            Update::Result(result) => Some(Step::Done(result)),
        })
        .await?;
    context.emit(&ImportView::new(&args.remote, result))
}

/// One message of a transfer's stream.
enum Step<R> {
    Progress(proto::TransferProgress),
    Done(R),
}

/// Shows a transfer's progress until its result comes.
async fn follow<M, R>(
    context: &Context,
    mut stream: tonic::Streaming<M>,
    mut bar: ProgressLine,
    (done_verb, moved_verb): (&str, &str),
    what: &str,
    step: fn(M) -> Option<Step<R>>,
) -> Result<R, CliError> {
    while let Some(message) = stream.next().await {
        let message = message.map_err(|status| {
            bar.end();
            context.fail(status)
        })?;
        match step(message) {
            Some(Step::Progress(progress)) => bar.show(&progress, done_verb, moved_verb),
            Some(Step::Done(result)) => {
                bar.end();
                return Ok(result);
            }
            None => {}
        }
    }
    bar.end();
    Err(CliError::ActionFailed { what: format!("{what} (the daemon sent no result)") })
}

/// Progress on stderr: `412 MiB of 2.0 GiB read (20%), 300 MiB uploaded,
/// 45 MiB/s, about 36 s left`.
struct ProgressLine {
    enabled: bool,
    terminal: bool,
    title: String,
    started: Instant,
    last_line: Option<Instant>,
    drawn: bool,
}

impl ProgressLine {
    fn new(enabled: bool, title: String) -> ProgressLine {
        let terminal = std::io::stderr().is_terminal();
        if enabled {
            eprintln!("{title}...");
        }
        ProgressLine { enabled, terminal, title, started: Instant::now(), last_line: None, drawn: false }
    }

    fn show(&mut self, progress: &proto::TransferProgress, done_verb: &str, moved_verb: &str) {
        if !self.enabled {
            return;
        }
        let every = if self.terminal { Duration::from_millis(200) } else { Duration::from_secs(3) };
        if self.last_line.is_some_and(|last| last.elapsed() < every) {
            return;
        }
        self.last_line = Some(Instant::now());
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = progress.bytes_done as f64 / elapsed;
        let mut line = format!("{}: {}", self.title, progress.phase);
        if progress.bytes_total > 0 {
            let percent = progress.bytes_done as f64 * 100.0 / progress.bytes_total as f64;
            line.push_str(&format!(
                ", {} of {} {done_verb} ({percent:.0}%)",
                bytes(progress.bytes_done),
                bytes(progress.bytes_total)
            ));
            if rate > 0.0 && progress.bytes_done < progress.bytes_total {
                let left = (progress.bytes_total - progress.bytes_done) as f64 / rate;
                line.push_str(&format!(", {}/s, about {left:.0} s left", bytes(rate as u64)));
            }
        }
        if progress.bytes_transferred > 0 {
            line.push_str(&format!(", {} {moved_verb}", bytes(progress.bytes_transferred)));
        }
        if progress.files_total > 0 {
            line.push_str(&format!(", {}/{} files", progress.files_done, progress.files_total));
        }
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
            self.drawn = true;
        } else {
            eprintln!("{line}");
        }
    }

    fn end(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}
