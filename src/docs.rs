//! Man pages (clap_mangen) and shell completions (clap_complete) for the
//! packages, generated from the same clap definitions the binaries parse.
//! Run by `rollpoint-docs` (see `packaging/build-deb`); never shipped.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::daemon::Args;

const MANUAL: &str = "rollpoint";

/// FILES and SEE ALSO of rollpointd(8), in roff.
const DAEMON_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/rollpoint/rollpointd.toml\fR
Configuration; every key is optional and shown, commented out, with its default.
.TP
\fI/var/lib/rollpoint\fR
The daemon's records (mode 0700, root only).
.TP
\fI/run/rollpoint/rollpointd.sock\fR
The gRPC socket (mode 0660): root and members of the \fBrollpoint\fR group may use it.
.SH NOTES
Started by \fBrollpointd.service\fR; logs go to the journal (\fBjournalctl \-u rollpointd\fR).
.SH "SEE ALSO"
\fBrollpoint\fR(1), \fBsystemctl\fR(1), \fBjournalctl\fR(1)
"#;

/// Writes, under `out`: `man/rollpoint.1` and one page per subcommand
/// (`man/rollpoint-snapshot-create.1`...), `man/rollpointd.8`, and
/// `completions/rollpoint.bash`, `completions/_rollpoint` (zsh),
/// `completions/rollpoint.fish`. Returns the files written.
pub fn generate(out: &Path) -> io::Result<Vec<PathBuf>> {
    let man = out.join("man");
    let completions = out.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&completions)?;
    let mut written = Vec::new();

    clap_mangen::generate_to(Cli::command(), &man)?;
    // Which pages generate_to wrote (one per visible subcommand).
    for entry in fs::read_dir(&man)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "1") {
            written.push(path);
        }
    }

    let daemon = clap_mangen::Man::new(Args::command()).section("8").manual(MANUAL);
    let path = man.join(daemon.get_filename());
    let mut page = Vec::new();
    daemon.render(&mut page)?;
    page.extend_from_slice(DAEMON_EXTRA.as_bytes());
    fs::write(&path, page)?;
    written.push(path);

    for (shell, name) in [(Shell::Bash, "rollpoint.bash"), (Shell::Zsh, "_rollpoint"), (Shell::Fish, "rollpoint.fish")]
    {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "rollpoint", &mut script);
        let path = completions.join(name);
        fs::File::create(&path)?.write_all(&script)?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_man_pages_and_completions() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        for name in [
            "man/rollpoint.1",
            "man/rollpoint-snapshot-create.1",
            "man/rollpointd.8",
            "completions/rollpoint.bash",
            "completions/_rollpoint",
            "completions/rollpoint.fish",
        ] {
            assert!(files.contains(&dir.path().join(name)), "{name} not written: {files:?}");
        }
        let daemon = fs::read_to_string(dir.path().join("man/rollpointd.8")).unwrap();
        assert!(daemon.contains(".TH rollpointd 8 "), "{daemon}");
        assert!(daemon.contains("\\-\\-state\\-dir") || daemon.contains("state-dir"), "{daemon}");
        assert!(daemon.contains("/etc/rollpoint/rollpointd.toml"), "{daemon}");
        let bash = fs::read_to_string(dir.path().join("completions/rollpoint.bash")).unwrap();
        assert!(bash.contains("complete -F"), "{bash}");
    }
}
