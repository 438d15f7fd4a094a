//! `rollpoint group ...`

use super::Context;
use crate::api::proto;
use crate::cli::args::{GroupCommand, GroupSnapshotArgs, SnapshotFields};
use crate::cli::error::CliError;
use crate::cli::views::{GroupRestoreView, GroupSnapshotView, GroupView, ListView, SnapshotView};

pub async fn run(context: &mut Context, command: GroupCommand) -> Result<(), CliError> {
    let mut containers = context.clients.containers.clone();
    let mut snapshots = context.clients.snapshots.clone();
    match command {
        GroupCommand::Set { name, members } => {
            let reply = containers.set_group(proto::SetGroupRequest { name, members }).await;
            context.emit(&GroupView::from(reply.map_err(|status| context.fail(status))?.into_inner()))?;
        }
        GroupCommand::Show { name } => {
            let reply = containers.get_group(proto::GetGroupRequest { name }).await;
            context.emit(&GroupView::from(reply.map_err(|status| context.fail(status))?.into_inner()))?;
        }
        GroupCommand::List => {
            let reply = containers.list_groups(proto::ListGroupsRequest {}).await;
            let groups = reply.map_err(|status| context.fail(status))?.into_inner().groups;
            context.emit(&ListView(groups.into_iter().map(GroupView::from).collect()))?;
        }
        GroupCommand::Delete { name } => {
            let reply = containers.delete_group(proto::DeleteGroupRequest { name: name.clone() }).await;
            reply.map_err(|status| context.fail(status))?;
            context.emit(&GroupView { name, members: Vec::new() })?;
        }
        GroupCommand::Snapshot(GroupSnapshotArgs {
            group,
            fields: SnapshotFields { name, alias, expire_days, comment },
        }) => {
            let request = proto::CreateGroupSnapshotRequest {
                group: group.clone(),
                name: name.unwrap_or_default(),
                alias: alias.unwrap_or_default(),
                expiry_days: expire_days.unwrap_or(0),
                comment: comment.unwrap_or_default(),
            };
            let reply = snapshots.create_group_snapshot(request).await;
            let taken = reply.map_err(|status| context.fail(status))?.into_inner().snapshots;
            context
                .emit(&GroupSnapshotView { group, snapshots: taken.into_iter().map(SnapshotView::from).collect() })?;
        }
        GroupCommand::Restore { name, snapshot } => {
            let reply = snapshots.restore_group(proto::RestoreGroupRequest { group: name, snapshot }).await;
            context.emit(&GroupRestoreView::from(reply.map_err(|status| context.fail(status))?.into_inner()))?;
        }
    }
    Ok(())
}
