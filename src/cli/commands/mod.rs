//! One function per command: build the request, call, hand a view to `output`.

mod containers;
mod events;
mod groups;
pub mod recover;
mod remotes;
mod restore;
mod schedules;
mod snapshots;
mod tokens;

use std::future::Future;

use serde::Serialize;

use super::args::Command;
use super::error::CliError;
use super::output::{emit, Human};
use crate::api::client::{Clients, Target};

/// What every command needs: the connection and how to print.
pub struct Context {
    pub clients: Clients,
    pub target: Target,
    pub json: bool,
}

impl Context {
    fn emit<V: Human + Serialize>(&self, view: &V) -> Result<(), CliError> {
        emit(view, self.json).map_err(|source| CliError::Output { source })
    }

    fn fail(&self, status: tonic::Status) -> CliError {
        CliError::status(&self.target, status)
    }
}

pub async fn dispatch(context: &mut Context, command: Command) -> Result<(), CliError> {
    match command {
        Command::Container(command) => containers::run(context, command).await,
        Command::Snapshot(command) => snapshots::run(context, command).await,
        Command::Restore(args) => restore::run(context, args).await,
        Command::Diff(args) => snapshots::diff(context, args).await,
        Command::Prune(args) => snapshots::prune(context, args).await,
        Command::RestoreFiles(args) => snapshots::restore_files(context, args).await,
        Command::Discover(args) => containers::discover(context, args).await,
        Command::Group(command) => groups::run(context, command).await,
        Command::Token(command) => tokens::run(context, command).await,
        Command::Events(args) => events::run(context, args).await,
        Command::Status => {
            let reply = context.clients.daemon.get_status(crate::api::proto::GetStatusRequest {}).await;
            let status = reply.map_err(|status| context.fail(status))?.into_inner();
            context.emit(&crate::cli::views::StatusView::from(status))
        }
        Command::Schedule(command) => schedules::run(context, command).await,
        Command::Remote(command) => remotes::run(context, command).await,
        Command::Export(args) => remotes::export(context, args).await,
        Command::Import(args) => remotes::import(context, args).await,
        // Offline: run before any connection (see `cli::run_async`).
        Command::Recover(args) => recover::run(&args, context.json),
        Command::Store(command) => recover::store(&command, context.json),
    }
}

/// Follows `next_page_token` until the last page or until `limit` items.
/// `fetch(page_size, page_token)` returns a page and the next token.
async fn all_pages<T, F, Fut>(limit: Option<usize>, mut fetch: F) -> Result<Vec<T>, tonic::Status>
where
    F: FnMut(i32, String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    // 0 asks for the server's default page size; never more than it allows.
    let page_size = limit.map_or(0, |limit| i32::try_from(limit.min(1000)).unwrap_or(1000));
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = fetch(page_size, token.clone()).await?;
        items.extend(page);
        if limit.is_some_and(|limit| items.len() >= limit) {
            items.truncate(limit.unwrap_or(usize::MAX));
            break;
        }
        // An unchanged token would loop forever; treat it as the end.
        if next.is_empty() || next == token {
            break;
        }
        token = next;
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of 2 over 0..5, with the token the index of the next item.
    async fn fake_page(page_size: i32, token: String) -> Result<(Vec<u32>, String), tonic::Status> {
        let start: u32 = if token.is_empty() { 0 } else { token.parse().unwrap() };
        let size = if page_size == 0 { 2 } else { u32::try_from(page_size).unwrap().min(2) };
        let end = (start + size).min(5);
        let next = if end < 5 { end.to_string() } else { String::new() };
        Ok(((start..end).collect(), next))
    }

    #[tokio::test]
    async fn pages_are_followed_to_the_end() {
        assert_eq!(all_pages(None, fake_page).await.unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn limit_stops_early() {
        assert_eq!(all_pages(Some(3), fake_page).await.unwrap(), vec![0, 1, 2]);
    }
}
