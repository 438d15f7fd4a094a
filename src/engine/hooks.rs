//! Running a container's hooks around its snapshots and restores, with
//! their failure policy and their events.
//!
//! `pre_freeze`, `hold` and `pre_restore` come before anything is done, so
//! a failure with policy `abort` refuses the operation (FAILED_PRECONDITION
//! naming the hook and the end of its output). `post_thaw` and
//! `post_restore` come after: what was done stands, so their failure is a
//! `hook.failed` warning on the timeline whatever the policy.

use std::time::Instant;

use super::error::{EngineError, EngineResult};
use super::Engine;
use crate::events::Event;
use crate::hooks::{self, Held, HookContext, HookError, HookPoint};
use crate::store::{ContainerRecord, HookSpec, OnFailure};

/// Longest timeout of a hook.
pub const MAX_HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

impl Engine {
    /// Runs the container's hook at `point`, if it has one.
    pub(super) fn run_hook(
        &self,
        container: &ContainerRecord,
        point: HookPoint,
        snapshot: &str,
        actor: &str,
    ) -> EngineResult<()> {
        self.run_hook_in(container, point, &context(container, snapshot), actor)
    }

    /// Runs the container's `pre_restore` or `post_restore` hook, if it has
    /// one, with the restore's key in `ROLLPOINT_RESTORE_ID`.
    pub(super) fn run_restore_hook(
        &self,
        container: &ContainerRecord,
        point: HookPoint,
        restore: &crate::store::RestoreIntent,
        actor: &str,
    ) -> EngineResult<()> {
        let context =
            HookContext { restore_id: Some(restore.restore_id.clone()), ..context(container, &restore.target) };
        self.run_hook_in(container, point, &context, actor)
    }

    fn run_hook_in(
        &self,
        container: &ContainerRecord,
        point: HookPoint,
        context: &HookContext,
        actor: &str,
    ) -> EngineResult<()> {
        let Some(spec) = point.of(&container.hooks) else { return Ok(()) };
        let started = Instant::now();
        let result = hooks::run(container, point, spec, context);
        self.hook_done(container, point, spec, &context.snapshot, actor, started, result)
    }

    /// Starts the container's hold hook, if it has one, and waits until it
    /// says its hold is in place.
    pub(super) fn start_hold(
        &self,
        container: &ContainerRecord,
        snapshot: &str,
        actor: &str,
    ) -> EngineResult<Option<(Held, Instant)>> {
        let Some(spec) = container.hooks.hold.as_ref() else { return Ok(None) };
        let started = Instant::now();
        match hooks::hold(container, spec, &context(container, snapshot)) {
            Ok(held) => Ok(Some((held, started))),
            Err(error) => {
                self.hook_done(container, HookPoint::Hold, spec, snapshot, actor, started, Err(error)).map(|()| None)
            }
        }
    }

    /// Ends a hold after the thaw. An error (policy `abort`) means the hold
    /// may not have spanned the snapshot: the caller must not keep it.
    pub(super) fn release_hold(
        &self,
        container: &ContainerRecord,
        held: Option<(Held, Instant)>,
        snapshot: &str,
        actor: &str,
    ) -> EngineResult<()> {
        let (Some((held, started)), Some(spec)) = (held, container.hooks.hold.as_ref()) else { return Ok(()) };
        self.hook_done(container, HookPoint::Hold, spec, snapshot, actor, started, held.release())
    }

    /// Records how a hook went and applies its failure policy.
    #[allow(clippy::too_many_arguments)]
    fn hook_done(
        &self,
        container: &ContainerRecord,
        point: HookPoint,
        spec: &HookSpec,
        snapshot: &str,
        actor: &str,
        started: Instant,
        result: Result<(), HookError>,
    ) -> EngineResult<()> {
        let event = |outcome: &str| {
            Event::new(if outcome == "ok" { "hook.finished" } else { "hook.failed" }, outcome)
                .container(&container.id)
                .snapshot(snapshot)
                .actor(actor)
                .duration(started.elapsed())
        };
        let Err(error) = result else {
            self.emit(event("ok").detail(point.name()));
            return Ok(());
        };
        let stops = spec.on_failure == OnFailure::Abort
            && matches!(point, HookPoint::PreFreeze | HookPoint::Hold | HookPoint::PreRestore);
        let reason = format!("{} of container {}: {error}", point.name(), container.id);
        tracing::warn!(container = %container.id, hook = point.name(), %error, "hook failed");
        self.emit(event(if stops { "failed" } else { "warning" }).detail(reason.clone()));
        if stops {
            return Err(EngineError::FailedPrecondition { reason: format!("hook {reason}") });
        }
        Ok(())
    }
}

fn context(container: &ContainerRecord, snapshot: &str) -> HookContext {
    HookContext { container: container.id.clone(), snapshot: snapshot.to_owned(), restore_id: None }
}

/// Checks a container's hooks as given at registration or update; the
/// field names the hook (`hooks.pre_freeze.command`).
pub(super) fn check_hooks(hooks: &crate::store::Hooks) -> EngineResult<()> {
    for point in HookPoint::ALL {
        let Some(spec) = point.of(hooks) else { continue };
        super::containers::check_argv(field(point, Part::Command), &spec.command, false)?;
        let user_ok = spec.user.len() <= 64
            && spec.user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !user_ok {
            return Err(EngineError::invalid(
                field(point, Part::User),
                format!("{:?} is not a user name, uid or uid:gid", spec.user),
            ));
        }
        if spec.timeout.is_zero() || spec.timeout > MAX_HOOK_TIMEOUT {
            return Err(EngineError::invalid(
                field(point, Part::Timeout),
                format!("must be between 1 s and {} s", MAX_HOOK_TIMEOUT.as_secs()),
            ));
        }
    }
    Ok(())
}

/// The request field of a hook's part, for errors.
fn field(point: HookPoint, part: Part) -> &'static str {
    macro_rules! fields {
        ($($point:ident => $name:literal),*) => {
            match (point, part) {
                $(
                    (HookPoint::$point, Part::Command) => concat!("hooks.", $name, ".command"),
                    (HookPoint::$point, Part::User) => concat!("hooks.", $name, ".user"),
                    (HookPoint::$point, Part::Timeout) => concat!("hooks.", $name, ".timeout_seconds"),
                )*
            }
        };
    }
    fields!(PreFreeze => "pre_freeze", PostThaw => "post_thaw", PreRestore => "pre_restore",
        PostRestore => "post_restore", Hold => "hold")
}

#[derive(Clone, Copy)]
enum Part {
    Command,
    User,
    Timeout,
}
