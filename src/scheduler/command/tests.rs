use std::os::unix::process::ExitStatusExt;

use super::*;

/// Root-only tests: skip without root, unless ROLLPOINT_REQUIRE_ROOT_TESTS=1
/// says they must run (then fail). The main crate has this as
/// `crate::testkit::root_or_skip`.
fn root_or_skip(test: &str) -> bool {
    if geteuid().is_root() {
        return true;
    }
    if std::env::var("ROLLPOINT_REQUIRE_ROOT_TESTS").is_ok_and(|value| value == "1") {
        panic!("{test}: needs root and ROLLPOINT_REQUIRE_ROOT_TESTS=1");
    }
    eprintln!("skipping {test}: needs root");
    false
}

/// The user running the tests.
fn me() -> String {
    User::from_uid(geteuid()).unwrap().unwrap().name
}

fn run(command: &str, limits: CommandLimits) -> CommandOutcome {
    run_as_user(&CommandAction { command: command.into(), environment: Vec::new() }, &me(), &limits).unwrap()
}

fn text(output: &CapturedOutput) -> &str {
    std::str::from_utf8(&output.bytes).unwrap()
}

/// A user with a home and one supplementary group, removed on drop (so
/// also when the test fails).
struct TestUser {
    name: String,
    group: String,
}

impl TestUser {
    fn create(tag: &str) -> TestUser {
        let name = format!("rp{tag}{}", std::process::id());
        let group = format!("{name}g");
        let user = TestUser { name, group };
        admin("/usr/sbin/groupadd", &[&user.group]);
        admin("/usr/sbin/useradd", &["--create-home", "--shell", "/bin/sh", "--groups", &user.group, &user.name]);
        user
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/userdel").args(["--remove", &self.name]).stderr(Stdio::null()).status();
        let _ = Command::new("/usr/sbin/groupdel").arg(&self.group).stderr(Stdio::null()).status();
    }
}

fn admin(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?}: {status}");
}

#[test]
fn runs_as_the_user_with_its_groups_home_and_a_clean_environment() {
    if !root_or_skip("runs_as_the_user_with_its_groups_home_and_a_clean_environment") {
        return;
    }
    let user = TestUser::create("cmd");
    let account = User::from_name(&user.name).unwrap().unwrap();
    let extra_group = nix::unistd::Group::from_name(&user.group).unwrap().unwrap();
    let command = "id -u; id -g; id -G; echo \"$HOME\"; pwd; env | cut -d= -f1 | sort | tr '\\n' ' '";
    let action = CommandAction {
        command: command.into(),
        environment: vec![("ROLLPOINT_ENTRY".into(), format!("users/{}/entries/e", user.name))],
    };
    let outcome = run_as_user(&action, &user.name, &CommandLimits::default()).unwrap();

    assert!(outcome.status.success(), "{outcome:?}");
    let lines: Vec<&str> = text(&outcome.stdout).lines().collect();
    let home = format!("/home/{}", user.name);
    assert_eq!(lines[0], account.uid.to_string());
    assert_eq!(lines[1], account.gid.to_string());
    let mut groups: Vec<&str> = lines[2].split(' ').collect();
    groups.sort();
    let mut expected = vec![account.gid.to_string(), extra_group.gid.to_string()];
    expected.sort();
    assert_eq!(groups, expected, "no group of root's is kept");
    assert_eq!(lines[3], home);
    assert_eq!(lines[4], home);
    // The shell adds PWD itself; nothing of ours leaks through, only the
    // action's variables are added.
    assert_eq!(lines[5], "HOME LOGNAME PATH PWD ROLLPOINT_ENTRY SHELL USER ");
    assert_eq!(text(&outcome.stderr), "");
}

#[test]
fn the_environment_has_the_fixed_path_and_shell() {
    let outcome = run("echo \"$PATH $SHELL $USER $LOGNAME\"", CommandLimits::default());
    let me = me();
    assert_eq!(text(&outcome.stdout), format!("/usr/local/bin:/usr/bin:/bin /bin/sh {me} {me}\n"));
}

#[test]
fn exit_status_and_both_streams_are_reported() {
    let outcome = run("echo out; echo err >&2; exit 3", CommandLimits::default());
    assert_eq!(outcome.status.code(), Some(3));
    assert_eq!(text(&outcome.stdout), "out\n");
    assert_eq!(text(&outcome.stderr), "err\n");
    assert!(!outcome.timed_out && !outcome.stdout.truncated);
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let limits = CommandLimits { timeout: Duration::from_millis(300), ..CommandLimits::default() };
    let outcome = run("sleep 30 & echo $!; sleep 30; echo never", limits);
    assert!(outcome.timed_out);
    assert_eq!(outcome.status.signal(), Some(libc::SIGTERM));
    assert!(outcome.duration < Duration::from_secs(5), "{outcome:?}");
    let background: i32 = text(&outcome.stdout).trim().parse().unwrap();
    assert!(gone(background), "background sleep {background} survived");
}

#[test]
fn a_command_ignoring_sigterm_gets_sigkill_after_the_grace() {
    let limits = CommandLimits {
        timeout: Duration::from_millis(200),
        term_grace: Duration::from_millis(300),
        ..CommandLimits::default()
    };
    let started = Instant::now();
    let outcome = run("trap '' TERM; sleep 30", limits);
    assert!(outcome.timed_out);
    assert_eq!(outcome.status.signal(), Some(libc::SIGKILL));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Dead, or a zombie waiting for a reaper we do not control.
fn gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) if stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')) => return true,
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

#[test]
fn output_is_bounded_and_flagged() {
    let limits = CommandLimits { output_limit: 64 * 1024, ..CommandLimits::default() };
    let outcome = run("head -c 1000000 /dev/zero | tr '\\0' x; echo done >&2", limits);
    assert!(outcome.status.success(), "the writer never blocks: {outcome:?}");
    assert_eq!(outcome.stdout.bytes.len(), 64 * 1024);
    assert!(outcome.stdout.bytes.iter().all(|&byte| byte == b'x'));
    assert!(outcome.stdout.truncated);
    assert_eq!(text(&outcome.stderr), "done\n");
    assert!(!outcome.stderr.truncated);
}

#[test]
fn a_background_child_holding_the_pipes_does_not_hold_us() {
    let limits = CommandLimits { timeout: Duration::from_secs(20), ..CommandLimits::default() };
    let outcome = run("echo hi; sleep 30 & echo $!", limits);
    let mut lines = text(&outcome.stdout).lines();
    assert_eq!(lines.next(), Some("hi"));
    assert!(!outcome.timed_out && outcome.status.success());
    assert!(outcome.duration < Duration::from_secs(2), "{outcome:?}");
    // Clean up the straggler we deliberately left.
    let straggler: i32 = lines.next().unwrap().parse().unwrap();
    let _ = nix::sys::signal::kill(Pid::from_raw(straggler), Signal::SIGKILL);
}

#[test]
fn an_unknown_user_is_an_error() {
    let error = run_as_user(
        &CommandAction { command: "true".into(), environment: Vec::new() },
        "no-such-user-rp",
        &CommandLimits::default(),
    );
    assert!(matches!(error, Err(CommandError::UnknownUser { .. })), "{error:?}");
}

#[test]
fn without_root_only_ones_own_user_is_allowed() {
    if geteuid().is_root() {
        return;
    }
    let error = run_as_user(
        &CommandAction { command: "true".into(), environment: Vec::new() },
        "root",
        &CommandLimits::default(),
    );
    assert!(matches!(error, Err(CommandError::NotPermitted { .. })), "{error:?}");
}
