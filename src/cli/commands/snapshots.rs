//! `rollpoint snapshot ...`

use super::{all_pages, Context};
use crate::api::proto;
use crate::cli::args::{
    CreateArgs, DiffArgs, PruneSnapshotsArgs, RestoreFilesArgs, SnapshotCommand, SnapshotFields, UpdateArgs,
};
use crate::cli::error::CliError;
use crate::cli::views::{
    DeletedView, FilesRestoredView, ListView, MountView, PathDiffView, PruneDecisionView, PruneView, SnapshotView,
    UnmountView,
};

pub async fn run(context: &mut Context, command: SnapshotCommand) -> Result<(), CliError> {
    let snapshots = &mut context.clients.snapshots;
    let response = match command {
        SnapshotCommand::Create(CreateArgs {
            container,
            fields: SnapshotFields { name, alias, expire_days, comment },
        }) => {
            let request = proto::CreateSnapshotRequest {
                container,
                name: name.unwrap_or_default(),
                alias: alias.unwrap_or_default(),
                expiry_days: expire_days.unwrap_or(0),
                comment: comment.unwrap_or_default(),
            };
            snapshots.create_snapshot(request).await.map(|response| response.into_inner().snapshot)
        }
        SnapshotCommand::Show { container, snapshot } => snapshots
            .get_snapshot(proto::GetSnapshotRequest { container, snapshot })
            .await
            .map(|response| response.into_inner().snapshot),
        SnapshotCommand::Update(args) => {
            snapshots.update_snapshot(update_request(args)).await.map(|response| response.into_inner().snapshot)
        }
        SnapshotCommand::Hold { container, snapshot, reason } => {
            snapshots.update_snapshot(hold_request(container, snapshot, reason)).await.map(|r| r.into_inner().snapshot)
        }
        SnapshotCommand::Release { container, snapshot } => snapshots
            .update_snapshot(hold_request(container, snapshot, String::new()))
            .await
            .map(|response| response.into_inner().snapshot),
        SnapshotCommand::Mount { container, snapshot, path } => {
            let request = proto::MountSnapshotRequest { container, snapshot, path: absolute(path) };
            let reply = snapshots.mount_snapshot(request).await.map_err(|status| context.fail(status))?.into_inner();
            context.emit(&MountView {
                path: reply.path,
                snapshot: SnapshotView::from(reply.snapshot.unwrap_or_default()),
            })?;
            return Ok(());
        }
        SnapshotCommand::Unmount { container, path } => {
            let request = proto::UnmountSnapshotRequest { container, path: absolute(path.clone()) };
            let reply = snapshots.unmount_snapshot(request).await.map_err(|status| context.fail(status))?.into_inner();
            context.emit(&UnmountView { path: path.display().to_string(), snapshot: reply.snapshot })?;
            return Ok(());
        }
        SnapshotCommand::Delete { container, snapshot } => {
            let request = proto::DeleteSnapshotRequest { container, snapshot };
            let deleted = snapshots.delete_snapshot(request).await.map_err(|status| context.fail(status))?;
            context.emit(&DeletedView(SnapshotView::from(deleted.into_inner().snapshot.unwrap_or_default())))?;
            return Ok(());
        }
        SnapshotCommand::List { container, limit } => {
            let client = snapshots.clone();
            let limit = limit.map(|limit| usize::try_from(limit).unwrap_or(usize::MAX));
            let list = all_pages(limit, |page_size, page_token| {
                let mut client = client.clone();
                let container = container.clone();
                async move {
                    let request = proto::ListSnapshotsRequest { container, page_size, page_token };
                    let page = client.list_snapshots(request).await?.into_inner();
                    Ok((page.snapshots, page.next_page_token))
                }
            })
            .await
            .map_err(|status| context.fail(status))?;
            context.emit(&ListView(list.into_iter().map(SnapshotView::from).collect()))?;
            return Ok(());
        }
    };
    let snapshot = response.map_err(|status| context.fail(status))?;
    context.emit(&SnapshotView::from(snapshot.unwrap_or_default()))?;
    Ok(())
}

/// `rollpoint diff CONTAINER FROM TO`.
pub async fn diff(context: &mut Context, args: DiffArgs) -> Result<(), CliError> {
    let request =
        proto::DiffSnapshotsRequest { container: args.container, from: args.from, to: args.to.unwrap_or_default() };
    let reply = context.clients.snapshots.diff_snapshots(request).await.map_err(|status| context.fail(status))?;
    context.emit(&ListView(reply.into_inner().paths.into_iter().map(PathDiffView::from).collect()))?;
    Ok(())
}

/// `rollpoint prune [CONTAINER] [--dry-run]`.
pub async fn prune(context: &mut Context, args: PruneSnapshotsArgs) -> Result<(), CliError> {
    let request = proto::PruneSnapshotsRequest { container: args.container.unwrap_or_default(), dry_run: args.dry_run };
    let reply = context.clients.snapshots.prune_snapshots(request).await.map_err(|status| context.fail(status))?;
    let decisions = reply.into_inner().decisions.into_iter().map(PruneDecisionView::from).collect();
    context.emit(&PruneView { dry_run: args.dry_run, decisions })?;
    Ok(())
}

/// A path as the user means it: relative to where the command runs.
fn absolute(path: std::path::PathBuf) -> String {
    let path =
        if path.is_relative() { std::env::current_dir().map(|cwd| cwd.join(&path)).unwrap_or(path) } else { path };
    path.to_string_lossy().into_owned()
}

/// `rollpoint restore-files CONTAINER SNAPSHOT PATH... [--to DIR]`.
pub async fn restore_files(context: &mut Context, args: RestoreFilesArgs) -> Result<(), CliError> {
    let request = proto::RestoreFilesRequest {
        container: args.container,
        snapshot: args.snapshot,
        paths: args.paths,
        to: args.to.map(absolute).unwrap_or_default(),
    };
    let reply = context.clients.snapshots.restore_files(request).await.map_err(|status| context.fail(status))?;
    context.emit(&FilesRestoredView::from(reply.into_inner()))?;
    Ok(())
}

/// The update_mask names exactly the fields given on the command line, so
/// `--clear-alias` (an empty alias) and `--expire-days 0` (never) are sent
/// as changes rather than read as "unset".
pub fn update_request(args: UpdateArgs) -> proto::UpdateSnapshotRequest {
    let mut update_mask = Vec::new();
    if args.alias.is_some() || args.clear_alias {
        update_mask.push("alias".to_owned());
    }
    if args.expire_days.is_some() {
        update_mask.push("expiry_days".to_owned());
    }
    proto::UpdateSnapshotRequest {
        container: args.container,
        snapshot: args.snapshot,
        alias: args.alias.unwrap_or_default(),
        expiry_days: args.expire_days.unwrap_or(0),
        update_mask,
        hold_reason: String::new(),
    }
}

/// Holds (a reason) or releases (none) a snapshot.
fn hold_request(container: String, snapshot: String, reason: String) -> proto::UpdateSnapshotRequest {
    proto::UpdateSnapshotRequest {
        container,
        snapshot,
        hold_reason: reason,
        update_mask: vec!["hold".into()],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Command};

    fn update(extra: &[&str]) -> Result<proto::UpdateSnapshotRequest, clap::Error> {
        let base = ["rollpoint", "snapshot", "update", "db-1", "snap-1"];
        let cli = Cli::try_parse_from(base.iter().chain(extra))?;
        match cli.command {
            Command::Snapshot(SnapshotCommand::Update(args)) => Ok(update_request(args)),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn mask_names_only_the_alias() {
        let request = update(&["--alias", "rollback-point"]).unwrap();
        assert_eq!(request.update_mask, ["alias"]);
        assert_eq!(request.alias, "rollback-point");
    }

    #[test]
    fn clear_alias_sends_an_empty_alias_in_the_mask() {
        let request = update(&["--clear-alias"]).unwrap();
        assert_eq!(request.update_mask, ["alias"]);
        assert_eq!(request.alias, "");
    }

    #[test]
    fn zero_expiry_means_never_and_is_in_the_mask() {
        let request = update(&["--expire-days", "0"]).unwrap();
        assert_eq!(request.update_mask, ["expiry_days"]);
        assert_eq!(request.expiry_days, 0);
    }

    #[test]
    fn both_fields() {
        let request = update(&["--clear-alias", "--expire-days", "7"]).unwrap();
        assert_eq!(request.update_mask, ["alias", "expiry_days"]);
        assert_eq!(request.expiry_days, 7);
    }

    #[test]
    fn nothing_to_change_or_contradictions_are_usage_errors() {
        assert!(update(&[]).is_err());
        assert!(update(&["--alias", "a", "--clear-alias"]).is_err());
    }

    #[test]
    fn create_flags_parse() {
        let argv = "rollpoint snapshot create db-1 --alias rollback-point --expire-days 7 --json";
        let cli = Cli::try_parse_from(argv.split_whitespace()).unwrap();
        assert!(cli.global.json);
        match cli.command {
            Command::Snapshot(SnapshotCommand::Create(args)) => {
                assert_eq!(args.container, "db-1");
                assert_eq!(args.fields.alias.as_deref(), Some("rollback-point"));
                assert_eq!(args.fields.expire_days, Some(7));
                assert_eq!(args.fields.name, None);
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
