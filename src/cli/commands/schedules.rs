//! `rollpoint schedule ...`

use super::{all_pages, Context};
use crate::api::proto;
use crate::cli::args::{ScheduleAddArgs, ScheduleCommand, ScheduleUpdateArgs};
use crate::cli::error::CliError;
use crate::cli::views::{DeletedEntryView, EntryView, ListView, RunView};

pub async fn run(context: &mut Context, command: ScheduleCommand) -> Result<(), CliError> {
    let schedules = &mut context.clients.schedules;
    let response = match command {
        ScheduleCommand::Add(args) => schedules.create_entry(create_request(args)).await.map(view),
        ScheduleCommand::Show(entry) => {
            schedules.get_entry(proto::GetEntryRequest { name: entry.name }).await.map(view)
        }
        ScheduleCommand::Update(args) => schedules.update_entry(update_request(args)).await.map(view),
        ScheduleCommand::Rm(entry) => {
            let request = proto::DeleteEntryRequest { name: entry.name.clone() };
            schedules.delete_entry(request).await.map_err(|status| context.fail(status))?;
            context.emit(&DeletedEntryView { name: entry.name })?;
            return Ok(());
        }
        ScheduleCommand::Run(entry) => {
            if !context.json {
                // Progress goes to stderr so that stdout holds only the result.
                eprintln!("running {}...", entry.name);
            }
            let request = proto::RunEntryRequest { name: entry.name.clone() };
            let response = schedules.run_entry(request).await.map_err(|status| context.fail(status))?;
            let run = RunView::new(&entry.name, response.into_inner());
            context.emit(&run)?;
            // The call went through; what it ran may still have failed.
            if run.outcome != "ok" {
                return Err(CliError::ActionFailed { what: format!("schedule entry {}", entry.name) });
            }
            return Ok(());
        }
        ScheduleCommand::List { user } => {
            let client = schedules.clone();
            let user = user.unwrap_or_default();
            let entries = all_pages(None, |page_size, page_token| {
                let mut client = client.clone();
                let user = user.clone();
                async move {
                    let page = client
                        .list_entries(proto::ListEntriesRequest {
                            user,
                            page_size,
                            page_token,
                            container: String::new(),
                        })
                        .await?;
                    let page = page.into_inner();
                    Ok((page.entries, page.next_page_token))
                }
            })
            .await
            .map_err(|status| context.fail(status))?;
            context.emit(&ListView(entries.into_iter().map(EntryView::from).collect()))?;
            return Ok(());
        }
    };
    let entry = response.map_err(|status| context.fail(status))?;
    context.emit(&entry)?;
    Ok(())
}

/// The entry a create, get or update answered with.
fn view<R: Into<EntryView>>(reply: tonic::Response<R>) -> EntryView {
    reply.into_inner().into()
}

/// The action is a snapshot or a command (clap ensures exactly one).
pub fn create_request(args: ScheduleAddArgs) -> proto::CreateEntryRequest {
    use proto::entry::Action;
    let action = match (args.snapshot, args.command) {
        (_, Some(command)) => {
            Action::Command(proto::CommandAction { command, timeout_seconds: args.timeout.unwrap_or(0) })
        }
        (container, None) => Action::Snapshot(proto::SnapshotAction {
            container: container.unwrap_or_default(),
            alias: args.alias.unwrap_or_default(),
            expiry_days: args.expire_days.unwrap_or(0),
            export_to: args.export_to.unwrap_or_default(),
            group: args.snapshot_group.unwrap_or_default(),
        }),
    };
    proto::CreateEntryRequest {
        user: args.user,
        entry: Some(proto::Entry {
            id: args.id.unwrap_or_default(),
            schedule: args.schedule,
            time_zone: args.time_zone.unwrap_or_default(),
            action: Some(action),
            comment: args.comment.unwrap_or_default(),
            enabled: Some(!args.disabled),
            random_delay_seconds: args.random_delay.unwrap_or(0),
            container: args.container.unwrap_or_default(),
            environment: args.environment.into_iter().collect(),
            ..Default::default()
        }),
    }
}

/// The update_mask names exactly the fields given on the command line, so
/// `--disable` (false), `--comment ""` and `--time-zone ""` (back to UTC) are
/// sent as changes rather than read as "unset".
pub fn update_request(args: ScheduleUpdateArgs) -> proto::UpdateEntryRequest {
    let mut update_mask = Vec::new();
    let mut entry = proto::Entry::default();
    if let Some(schedule) = args.schedule {
        update_mask.push("schedule".to_owned());
        entry.schedule = schedule;
    }
    if let Some(time_zone) = args.time_zone {
        update_mask.push("time_zone".to_owned());
        entry.time_zone = time_zone;
    }
    if let Some(comment) = args.comment {
        update_mask.push("comment".to_owned());
        entry.comment = comment;
    }
    if let Some(seconds) = args.random_delay {
        update_mask.push("random_delay_seconds".to_owned());
        entry.random_delay_seconds = seconds;
    }
    if let Some(container) = args.container {
        update_mask.push("container".to_owned());
        entry.container = container;
    }
    if !args.environment.is_empty() || args.no_env {
        update_mask.push("environment".to_owned());
        entry.environment = args.environment.into_iter().collect();
    }
    if args.enable || args.disable {
        update_mask.push("enabled".to_owned());
        entry.enabled = Some(args.enable);
    }
    proto::UpdateEntryRequest { name: args.entry.name, entry: Some(entry), update_mask }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{entry_name, Cli, Command};

    fn parse(argv: &[&str]) -> Result<ScheduleCommand, clap::Error> {
        let cli = Cli::try_parse_command_line_from(["rollpoint", "schedule"].iter().chain(argv))?;
        match cli.command {
            Command::Schedule(command) => Ok(command),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn add(argv: &[&str]) -> Result<proto::CreateEntryRequest, clap::Error> {
        match parse(&[&["add"], argv].concat())? {
            ScheduleCommand::Add(args) => Ok(create_request(args)),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn update(argv: &[&str]) -> Result<proto::UpdateEntryRequest, clap::Error> {
        match parse(&[&["update"], argv].concat())? {
            ScheduleCommand::Update(args) => Ok(update_request(args)),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn the_pre_migration_snapshot_entry() {
        let request = add(&[
            "--schedule",
            "55 2 * * *",
            "--snapshot",
            "db-1",
            "--alias",
            "rollback-point",
            "--expire-days",
            "7",
            "--comment",
            "pre-migration snapshot",
        ])
        .unwrap();
        assert_eq!(request.user, "root");
        let entry = request.entry.unwrap();
        assert_eq!(entry.schedule, "55 2 * * *");
        assert_eq!(entry.time_zone, "");
        assert_eq!(entry.comment, "pre-migration snapshot");
        assert_eq!(entry.enabled, Some(true));
        assert_eq!(entry.id, "");
        let expected = proto::SnapshotAction {
            container: "db-1".into(),
            alias: "rollback-point".into(),
            expiry_days: 7,
            export_to: String::new(),
            group: String::new(),
        };
        assert_eq!(entry.action, Some(proto::entry::Action::Snapshot(expected)));
    }

    #[test]
    fn a_command_entry_of_another_user() {
        let request = add(&[
            "--user",
            "backup",
            "--schedule",
            "@daily",
            "--time-zone",
            "Europe/Berlin",
            "--command",
            "pg_dumpall > /srv/dump.sql",
            "--timeout",
            "600",
            "--disabled",
            "--id",
            "nightly-dump",
        ])
        .unwrap();
        assert_eq!(request.user, "backup");
        let entry = request.entry.unwrap();
        assert_eq!(
            (entry.id.as_str(), entry.time_zone.as_str(), entry.enabled),
            ("nightly-dump", "Europe/Berlin", Some(false))
        );
        let expected = proto::CommandAction { command: "pg_dumpall > /srv/dump.sql".into(), timeout_seconds: 600 };
        assert_eq!(entry.action, Some(proto::entry::Action::Command(expected)));
    }

    #[test]
    fn one_action_exactly_with_its_own_options() {
        assert!(add(&["--schedule", "@daily"]).is_err());
        assert!(add(&["--schedule", "@daily", "--snapshot", "db-1", "--command", "true"]).is_err());
        assert!(add(&["--schedule", "@daily", "--command", "true", "--alias", "a"]).is_err());
        assert!(add(&["--schedule", "@daily", "--snapshot", "db-1", "--timeout", "5"]).is_err());
        assert!(add(&["--snapshot", "db-1"]).is_err());
    }

    #[test]
    fn update_mask_names_exactly_the_flags_given() {
        let request = update(&["pre-migration", "--schedule", "50 2 * * *"]).unwrap();
        assert_eq!(request.name, "users/root/entries/pre-migration");
        assert_eq!(request.update_mask, ["schedule"]);
        assert_eq!(request.entry.unwrap().schedule, "50 2 * * *");

        let request = update(&["pre-migration", "--disable"]).unwrap();
        assert_eq!(request.update_mask, ["enabled"]);
        assert_eq!(request.entry.unwrap().enabled, Some(false));

        let request = update(&["pre-migration", "--enable", "--comment", "", "--time-zone", "Europe/Berlin"]).unwrap();
        assert_eq!(request.update_mask, ["time_zone", "comment", "enabled"]);
        let entry = request.entry.unwrap();
        assert_eq!(entry.enabled, Some(true));
        assert_eq!((entry.comment.as_str(), entry.time_zone.as_str()), ("", "Europe/Berlin"));
    }

    #[test]
    fn update_needs_a_change_and_no_contradiction() {
        assert!(update(&["pre-migration"]).is_err());
        assert!(update(&["pre-migration", "--enable", "--disable"]).is_err());
    }

    #[test]
    fn entry_names_are_built_from_an_id_and_the_user() {
        assert_eq!(entry_name("pre-migration", None).unwrap(), "users/root/entries/pre-migration");
        assert_eq!(entry_name("nightly", Some("backup")).unwrap(), "users/backup/entries/nightly");
        assert_eq!(entry_name("users/backup/entries/nightly", None).unwrap(), "users/backup/entries/nightly");
        assert_eq!(entry_name("users/backup/entries/nightly", Some("backup")).unwrap(), "users/backup/entries/nightly");
        assert!(entry_name("users/backup/entries/nightly", Some("root")).is_err());
        for bad in ["", "users/root", "users//entries/x", "users/root/entries/", "groups/root/entries/x", "a/b"] {
            assert!(entry_name(bad, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commands_that_name_an_entry_get_the_full_name() {
        let name = |argv: &[&str]| match parse(argv).unwrap() {
            ScheduleCommand::Show(entry) | ScheduleCommand::Rm(entry) | ScheduleCommand::Run(entry) => {
                assert_eq!(entry.user, None);
                entry.name
            }
            other => panic!("parsed as {other:?}"),
        };
        assert_eq!(name(&["show", "pre-migration"]), "users/root/entries/pre-migration");
        assert_eq!(name(&["run", "nightly", "--user", "backup"]), "users/backup/entries/nightly");
        assert_eq!(name(&["delete", "users/backup/entries/nightly"]), "users/backup/entries/nightly");
        let error = parse(&["rm", "users/backup/entries/nightly", "--user", "root"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(error.exit_code(), 2);
        assert!(parse(&["show", "a/b"]).is_err());
    }
}
