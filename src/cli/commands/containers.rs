//! `rollpoint container ...`

use super::{all_pages, Context};
use crate::api::convert::policy_to_proto;
use crate::api::proto;
use crate::cli::args::{Argv, ContainerCommand, DiscoverArgs, HookArgs, RegisterArgs, UnregisterArgs};
use crate::cli::error::CliError;
use crate::cli::views::{ContainerView, DiscoverView, ListView, UnregisterView};

pub async fn run(context: &mut Context, command: ContainerCommand) -> Result<(), CliError> {
    match command {
        ContainerCommand::Register(args) => {
            let response = context.clients.containers.register_container(register_request(args)).await;
            let container = response.map_err(|status| context.fail(status))?.into_inner().container;
            context.emit(&ContainerView::from(container.unwrap_or_default()))?;
        }
        ContainerCommand::List => {
            let client = context.clients.containers.clone();
            let containers = all_pages(None, |page_size, page_token| {
                let mut client = client.clone();
                async move {
                    let page = client
                        .list_containers(proto::ListContainersRequest { page_size, page_token })
                        .await?
                        .into_inner();
                    Ok((page.containers, page.next_page_token))
                }
            })
            .await
            .map_err(|status| context.fail(status))?;
            context.emit(&ListView(containers.into_iter().map(ContainerView::from).collect()))?;
        }
        ContainerCommand::Clone(args) => {
            let request = proto::CloneContainerRequest {
                container: args.container,
                snapshot: args.snapshot,
                id: args.id,
                cgroup: args.cgroup,
                subvolume: args.subvolume.unwrap_or_default(),
            };
            let response = context.clients.containers.clone_container(request).await;
            let container = response.map_err(|status| context.fail(status))?.into_inner().container;
            context.emit(&ContainerView::from(container.unwrap_or_default()))?;
        }
        ContainerCommand::Update(args) => {
            // clap makes sure that one of them is given.
            let hooks = if args.no_hooks { Some(proto::Hooks::default()) } else { hooks_of(args.hooks) };
            let request = proto::UpdateContainerRequest {
                id: args.id,
                hooks,
                retention: args.retention.map(policy_to_proto),
                pre_restore_retention: args.pre_restore_retention.map(policy_to_proto),
                default_retention: args.default_retention,
            };
            let response = context.clients.containers.update_container(request).await;
            let container = response.map_err(|status| context.fail(status))?.into_inner().container;
            context.emit(&ContainerView::from(container.unwrap_or_default()))?;
        }
        ContainerCommand::Show { id } => {
            let response = context.clients.containers.get_container(proto::GetContainerRequest { id }).await;
            let container = response.map_err(|status| context.fail(status))?.into_inner().container;
            context.emit(&ContainerView::from(container.unwrap_or_default()))?;
        }
        ContainerCommand::Unregister(UnregisterArgs { id, delete_snapshots, keep_snapshots }) => {
            let request = proto::UnregisterContainerRequest { id: id.clone(), delete_snapshots, keep_snapshots };
            let response = context.clients.containers.unregister_container(request).await;
            let snapshots_deleted = response
                .map_err(|status| {
                    let hint = "add --delete-snapshots to delete them, or --keep-snapshots to leave them on disk";
                    context.fail(status).hint_on(tonic::Code::FailedPrecondition, hint)
                })?
                .into_inner()
                .snapshots_deleted;
            context.emit(&UnregisterView { id, snapshots_deleted })?;
        }
    }
    Ok(())
}

/// `rollpoint discover [--register] [--source M]...`.
pub async fn discover(context: &mut Context, args: DiscoverArgs) -> Result<(), CliError> {
    let request = proto::DiscoverContainersRequest { register: args.register, sources: args.sources };
    let reply = context.clients.containers.discover_containers(request).await.map_err(|status| context.fail(status))?;
    let view = DiscoverView { register: args.register, ..DiscoverView::from(reply.into_inner()) };
    context.emit(&view)?;
    Ok(())
}

/// The lifecycle is commands, a systemd unit, or none (clap ensures at most one).
pub fn register_request(args: RegisterArgs) -> proto::RegisterContainerRequest {
    use proto::lifecycle::Kind;
    let kind = match (args.stop_command, args.start_command, args.systemd_unit, args.podman) {
        (Some(stop), Some(start), _, _) => Kind::Command(proto::CommandLifecycle {
            stop: stop.0,
            start: start.0,
            timeout_seconds: args.command_timeout.unwrap_or(0),
        }),
        (_, _, Some(unit), _) => {
            Kind::Systemd(proto::SystemdLifecycle { unit, timeout_seconds: args.systemd_timeout.unwrap_or(0) })
        }
        (_, _, _, Some(container)) => Kind::Podman(proto::PodmanLifecycle {
            container,
            command: Vec::new(),
            timeout_seconds: args.podman_timeout.unwrap_or(0),
        }),
        _ => Kind::None(proto::NoLifecycle {}),
    };
    proto::RegisterContainerRequest {
        id: args.id,
        cgroup: args.cgroup.or(args.cgroup_of_pid).unwrap_or_default(),
        subvolume: args.subvolume,
        lifecycle: Some(proto::Lifecycle { kind: Some(kind) }),
        labels: args.labels.into_iter().collect(),
        hooks: hooks_of(args.hooks),
    }
}

/// The hooks the flags give, if any: each with the common user, timeout
/// and failure policy.
fn hooks_of(args: HookArgs) -> Option<proto::Hooks> {
    let on_failure = match args.hook_on_failure.as_deref() {
        Some("continue") => proto::HookFailure::Continue,
        _ => proto::HookFailure::Abort,
    };
    let hook = |command: Option<Argv>| {
        command.map(|command| proto::Hook {
            command: command.0,
            user: args.hook_user.clone().unwrap_or_default(),
            timeout_seconds: args.hook_timeout.unwrap_or(0),
            on_failure: on_failure as i32,
        })
    };
    let hooks = proto::Hooks {
        pre_freeze: hook(args.pre_freeze),
        post_thaw: hook(args.post_thaw),
        pre_restore: hook(args.pre_restore),
        post_restore: hook(args.post_restore),
        hold: hook(args.hold),
    };
    (hooks != proto::Hooks::default()).then_some(hooks)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Command};

    #[test]
    fn pid_gives_the_cgroup_proc_prints_v2_first() {
        use crate::sys::proc_cgroup::cgroup_in_proc_file;
        let hybrid = "12:freezer:/machine.slice/db-1.scope\n1:name=systemd:/x\n0::/machine.slice/db-1.scope\n";
        assert_eq!(cgroup_in_proc_file(hybrid).as_deref(), Some("/machine.slice/db-1.scope"));
        assert_eq!(cgroup_in_proc_file("7:cpu,freezer:/lxc/a\n").as_deref(), Some("/lxc/a"));
        assert_eq!(cgroup_in_proc_file("3:cpu:/a\n"), None);
        let own = std::process::id().to_string();
        let argv = ["rollpoint", "container", "register", "db-1", "--pid", own.as_str(), "--subvolume", "/srv/db"];
        let Command::Container(ContainerCommand::Register(args)) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not a register")
        };
        let expected = cgroup_in_proc_file(&std::fs::read_to_string("/proc/self/cgroup").unwrap());
        assert_eq!(register_request(args).cgroup, expected.unwrap());
        let both = ["rollpoint", "container", "register", "db-1", "--pid", "1", "--cgroup", "a", "--subvolume", "/s"];
        assert!(Cli::try_parse_from(both).is_err(), "--pid and --cgroup conflict");
        let no_such = ["rollpoint", "container", "register", "db-1", "--pid", "999999999", "--subvolume", "/s"];
        let error = Cli::try_parse_from(no_such).unwrap_err().to_string();
        assert!(error.contains("/proc/999999999/cgroup"), "{error}");
    }

    fn register(argv: &[&str]) -> proto::RegisterContainerRequest {
        let base = ["rollpoint", "container", "register", "db-1", "--cgroup", "db.scope", "--subvolume", "/srv/db"];
        let cli = Cli::try_parse_from(base.iter().chain(argv)).unwrap();
        match cli.command {
            Command::Container(ContainerCommand::Register(args)) => register_request(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn default_lifecycle_is_none() {
        let request = register(&["--label", "env=prod", "--label", "team=db"]);
        assert_eq!(request.lifecycle.unwrap().kind, Some(proto::lifecycle::Kind::None(proto::NoLifecycle {})));
        assert_eq!(request.labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!(request.labels.len(), 2);
    }

    #[test]
    fn commands_are_split_on_whitespace() {
        let request = register(&[
            "--stop-command",
            "docker stop db-1",
            "--start-command",
            "docker  start db-1",
            "--command-timeout",
            "60",
        ]);
        let expected = proto::CommandLifecycle {
            stop: vec!["docker".into(), "stop".into(), "db-1".into()],
            start: vec!["docker".into(), "start".into(), "db-1".into()],
            timeout_seconds: 60,
        };
        assert_eq!(request.lifecycle.unwrap().kind, Some(proto::lifecycle::Kind::Command(expected)));
    }

    #[test]
    fn systemd_unit() {
        let request = register(&["--systemd-unit", "db-1.service"]);
        let expected = proto::SystemdLifecycle { unit: "db-1.service".into(), timeout_seconds: 0 };
        assert_eq!(request.lifecycle.unwrap().kind, Some(proto::lifecycle::Kind::Systemd(expected)));
    }

    #[test]
    fn lifecycles_exclude_each_other_and_commands_come_in_pairs() {
        let base = ["rollpoint", "container", "register", "db-1", "--cgroup", "c", "--subvolume", "/s"];
        let parse = |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra)).map(|_| ());
        assert!(parse(&["--stop-command", "a", "--start-command", "b", "--systemd-unit", "u"]).is_err());
        assert!(parse(&["--stop-command", "a"]).is_err());
        assert!(parse(&["--command-timeout", "5"]).is_err());
        assert!(parse(&["--label", "novalue"]).is_err());
        assert!(parse(&["--stop-command", " ", "--start-command", "b"]).is_err());
    }
}
