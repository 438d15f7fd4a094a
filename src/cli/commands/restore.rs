//! `rollpoint restore ...`

use super::Context;
use crate::api::proto;
use crate::cli::args::RestoreArgs;
use crate::cli::error::CliError;
use crate::cli::views::RestoreView;

pub async fn run(context: &mut Context, args: RestoreArgs) -> Result<(), CliError> {
    if !context.json {
        // Progress goes to stderr so that stdout holds only the result.
        eprintln!("restoring {} to {}...", args.container, args.snapshot);
    }
    let request = proto::RestoreSnapshotRequest {
        container: args.container.clone(),
        snapshot: args.snapshot,
        request_id: args.request_id.unwrap_or_default(),
    };
    let response = context.clients.snapshots.restore_snapshot(request).await.map_err(|status| context.fail(status))?;
    context.emit(&RestoreView::new(&args.container, response.into_inner()))?;
    Ok(())
}
