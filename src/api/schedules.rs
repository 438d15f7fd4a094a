//! `rollpoint.v1.ScheduleService`: cron entries that fire snapshots or
//! commands.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::auth::{authorize, Caller};
use super::proto::schedule_service_server::ScheduleService;
use super::proto::*;
use super::status::from_engine;
use super::{admission_deadline, blocking, changing, convert, unadmitted};
use crate::engine::entries::{parse_entry_name, EntryPatch, EntrySpec, DEFAULT_COMMAND_TIMEOUT};
use crate::engine::tokens::Scope;
use crate::engine::views::{EntryAction, EntryRecord};
use crate::engine::{Engine, EngineError};

pub struct Schedules {
    pub engine: Arc<Engine>,
}

fn action_from_proto(action: Option<entry::Action>) -> Result<EntryAction, EngineError> {
    match action {
        Some(entry::Action::Snapshot(snapshot)) => Ok(EntryAction::Snapshot {
            container: snapshot.container,
            alias: snapshot.alias,
            expiry_days: snapshot.expiry_days,
            export_to: snapshot.export_to,
            group: snapshot.group,
        }),
        Some(entry::Action::Command(command)) => Ok(EntryAction::Command {
            command: command.command,
            timeout: match command.timeout_seconds {
                0 => DEFAULT_COMMAND_TIMEOUT,
                seconds => Duration::from_secs(u64::from(seconds)),
            },
        }),
        None => Err(EngineError::invalid("entry.action", "set snapshot or command")),
    }
}

/// A snapshot entry needs the schedule scope for its container; a command
/// entry runs as its user, so only root or that very user (on the socket)
/// may create or change one.
fn authorize_entry<T>(
    request: &Request<T>,
    engine: &Engine,
    user: &str,
    action: &EntryAction,
) -> Result<Caller, Status> {
    match action {
        EntryAction::Snapshot { group, .. } if !group.is_empty() => {
            super::groups::authorize_group(request, engine, group, Scope::Schedule)
        }
        EntryAction::Snapshot { container, .. } => authorize(request, Scope::Schedule, Some(container)),
        EntryAction::Command { .. } => {
            let caller = authorize(request, Scope::Schedule, None)?;
            let allowed = match &caller {
                Caller::Local { uid } => {
                    *uid == 0
                        || nix::unistd::User::from_name(user).ok().flatten().is_some_and(|u| u.uid.as_raw() == *uid)
                }
                Caller::Token(_) | Caller::Run(_) => false,
            };
            if allowed {
                Ok(caller)
            } else {
                Err(Status::permission_denied(format!(
                    "only root or {user} itself, on the Unix socket, may set a command entry for {user}"
                )))
            }
        }
    }
}

impl Schedules {
    /// The entry a request names, once the caller is authorized for it as
    /// it stands; with the caller's actor name.
    async fn entry_as_authorized<T>(&self, request: &Request<T>, name: &str) -> Result<(EntryRecord, String), Status> {
        let (user, _) = parse_entry_name(name).map_err(from_engine)?;
        let current = {
            let name = name.to_owned();
            blocking(&self.engine, move |engine| engine.entry(&name)).await?
        };
        let actor = authorize_entry(request, &self.engine, &user, &current.action)?.actor();
        Ok((current, actor))
    }
}

fn entry_message(engine: &Engine, entry: &EntryRecord) -> Entry {
    convert::entry(entry, engine.next_fire(entry, chrono::Utc::now()))
}

#[tonic::async_trait]
impl ScheduleService for Schedules {
    async fn create_entry(
        &self,
        request: Request<CreateEntryRequest>,
    ) -> Result<Response<CreateEntryResponse>, Status> {
        let user = request.get_ref().user.clone();
        let entry =
            request.get_ref().entry.clone().ok_or_else(|| from_engine(EngineError::invalid("entry", "is required")))?;
        let action = action_from_proto(entry.action).map_err(from_engine)?;
        let actor = authorize_entry(&request, &self.engine, &user, &action)?.actor();
        let spec = EntrySpec {
            id: entry.id,
            schedule: entry.schedule,
            time_zone: entry.time_zone,
            action,
            comment: entry.comment,
            enabled: entry.enabled.unwrap_or(true),
            random_delay_seconds: entry.random_delay_seconds,
            container: entry.container,
            environment: entry.environment,
        };
        let created = changing(&self.engine, admission_deadline(request.metadata()), None, move |engine| {
            let record = engine.create_entry(&user, spec, &actor)?;
            Ok(entry_message(engine, &record))
        })
        .await?;
        Ok(Response::new(CreateEntryResponse { entry: Some(created) }))
    }

    async fn get_entry(&self, request: Request<GetEntryRequest>) -> Result<Response<GetEntryResponse>, Status> {
        authorize(&request, Scope::Read, None)?;
        let name = request.into_inner().name;
        let entry = blocking(&self.engine, move |engine| Ok(entry_message(engine, &engine.entry(&name)?))).await?;
        Ok(Response::new(GetEntryResponse { entry: Some(entry) }))
    }

    async fn list_entries(
        &self,
        request: Request<ListEntriesRequest>,
    ) -> Result<Response<ListEntriesResponse>, Status> {
        authorize(&request, Scope::Read, None)?;
        let request = request.into_inner();
        let response = blocking(&self.engine, move |engine| {
            let page =
                engine.list_entries(&request.user, &request.container, request.page_size, &request.page_token)?;
            Ok(ListEntriesResponse {
                entries: page.items.iter().map(|e| entry_message(engine, e)).collect(),
                next_page_token: page.next_page_token,
            })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn update_entry(
        &self,
        request: Request<UpdateEntryRequest>,
    ) -> Result<Response<UpdateEntryResponse>, Status> {
        let name = request.get_ref().name.clone();
        // Authorized for the entry as it is and as it will be.
        let (current, _) = self.entry_as_authorized(&request, &name).await?;
        let update = request.get_ref().entry.clone().unwrap_or_default();
        let mask = request.get_ref().update_mask.clone();
        let patch = patch_from_mask(update, &mask).map_err(from_engine)?;
        let action = patch.action.clone().unwrap_or_else(|| current.action.clone());
        let actor = authorize_entry(&request, &self.engine, &current.user, &action)?.actor();
        let updated = changing(&self.engine, admission_deadline(request.metadata()), None, move |engine| {
            let record = engine.update_entry(&name, patch, &actor)?;
            Ok(entry_message(engine, &record))
        })
        .await?;
        Ok(Response::new(UpdateEntryResponse { entry: Some(updated) }))
    }

    async fn delete_entry(
        &self,
        request: Request<DeleteEntryRequest>,
    ) -> Result<Response<DeleteEntryResponse>, Status> {
        let name = request.get_ref().name.clone();
        let (_, actor) = self.entry_as_authorized(&request, &name).await?;
        changing(&self.engine, admission_deadline(request.metadata()), None, move |engine| {
            engine.delete_entry(&name, &actor)
        })
        .await?;
        Ok(Response::new(DeleteEntryResponse {}))
    }

    async fn run_entry(&self, request: Request<RunEntryRequest>) -> Result<Response<RunEntryResponse>, Status> {
        let name = request.get_ref().name.clone();
        let (current, actor) = self.entry_as_authorized(&request, &name).await?;
        let run = move |engine: &Engine| {
            let fired = engine.run_entry_now(&name, &actor)?;
            let entry = engine.entry(&name)?;
            Ok(RunEntryResponse {
                entry: Some(entry_message(engine, &entry)),
                outcome: fired.outcome,
                detail: fired.detail,
                snapshot: fired.snapshot.as_ref().map(convert::snapshot),
            })
        };
        let response = match current.action {
            EntryAction::Command { .. } => unadmitted(&self.engine, run).await?,
            EntryAction::Snapshot { .. } => {
                changing(&self.engine, admission_deadline(request.metadata()), None, run).await?
            }
        };
        Ok(Response::new(response))
    }
}

/// Which fields an update changes: those named in `update_mask`, or, with no
/// mask, those that are set.
fn patch_from_mask(update: Entry, mask: &[String]) -> Result<EntryPatch, EngineError> {
    let action = || action_from_proto(update.action.clone());
    if mask.is_empty() {
        return Ok(EntryPatch {
            schedule: Some(update.schedule.clone()).filter(|s| !s.is_empty()),
            time_zone: Some(update.time_zone.clone()).filter(|s| !s.is_empty()),
            action: update.action.as_ref().map(|_| action()).transpose()?,
            comment: Some(update.comment.clone()).filter(|s| !s.is_empty()),
            enabled: None,
            random_delay_seconds: Some(update.random_delay_seconds).filter(|s| *s != 0),
            container: Some(update.container.clone()).filter(|s| !s.is_empty()),
            environment: Some(update.environment.clone()).filter(|e| !e.is_empty()),
        });
    }
    let mut patch = EntryPatch::default();
    for field in mask {
        match field.as_str() {
            "schedule" => patch.schedule = Some(update.schedule.clone()),
            "time_zone" => patch.time_zone = Some(update.time_zone.clone()),
            "action" | "snapshot" | "command" => patch.action = Some(action()?),
            "comment" => patch.comment = Some(update.comment.clone()),
            "enabled" => patch.enabled = Some(update.enabled.unwrap_or(true)),
            "random_delay_seconds" => patch.random_delay_seconds = Some(update.random_delay_seconds),
            "container" => patch.container = Some(update.container.clone()),
            "environment" => patch.environment = Some(update.environment.clone()),
            other => {
                return Err(EngineError::invalid(
                    "update_mask",
                    format!(
                        "{other:?} cannot be updated; only schedule, time_zone, action, comment, enabled, \
                         random_delay_seconds, container, environment"
                    ),
                ))
            }
        }
    }
    Ok(patch)
}
