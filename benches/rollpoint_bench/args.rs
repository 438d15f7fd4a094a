//! Command line of the suite (after `cargo bench --bench rollpoint_bench --`).

use std::collections::BTreeSet;
use std::path::PathBuf;

pub const USAGE: &str = "\
USAGE: sudo scripts/bench [--quick] [--json FILE] [--markdown FILE] [--compare OLD.json] [--only GROUPS]
                         [--largest-gib N] [--minutes N]

  --quick          small n, the largest data case at 2 GiB, 20,000 small files,
                   1,000 snapshots for the listing, 200 MB in 20,000 files
                   for the off-host copies (a few minutes)
  --json FILE      also write the results and the machine as JSON to FILE
  --markdown FILE  also write the table as Markdown to FILE (for the README)
  --compare FILE   print each case's change against an earlier --json FILE
  --only GROUPS    comma-separated subset of freeze,sizes,burst,metadata,remote,diff,hosts,busy,
                   or soak (never run unless named: 50 clients for --minutes)
  --largest-gib N  size of the largest data case (default: 10, less if the
                   disk holding the temp folder is too small; 2 with --quick)
  --minutes N      how long the soak runs (default 60)";

/// The parts of the suite, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// 1. Freeze window.
    Freeze,
    /// 2-4. Snapshot latency, revert, raw tool and copy, per data size.
    Sizes,
    /// 5. 100 containers at once, and the daemon's memory.
    Burst,
    /// 6. ListSnapshots with many snapshots recorded.
    Metadata,
    /// 7. Export and import against restic, on one S3 server.
    Remote,
    /// 8. DiffSnapshots against diff -rq.
    Diff,
    /// 9. Group snapshots of 10 containers, discovery of 100 machines.
    Hosts,
    /// 10. A restore with dirty data, a snapshot beside busy neighbours.
    Busy,
    /// 11. Soak: 50 clients for an hour (only with `--only soak`).
    Soak,
}

impl Group {
    pub const ALL: [Group; 9] = [
        Group::Freeze,
        Group::Sizes,
        Group::Burst,
        Group::Metadata,
        Group::Remote,
        Group::Diff,
        Group::Hosts,
        Group::Busy,
        Group::Soak,
    ];

    fn parse(text: &str) -> Result<Group, String> {
        match text {
            "freeze" => Ok(Group::Freeze),
            "sizes" => Ok(Group::Sizes),
            "burst" => Ok(Group::Burst),
            "metadata" => Ok(Group::Metadata),
            "remote" => Ok(Group::Remote),
            "diff" => Ok(Group::Diff),
            "hosts" => Ok(Group::Hosts),
            "busy" => Ok(Group::Busy),
            "soak" => Ok(Group::Soak),
            other => Err(format!(
                "--only: unknown group {other:?} (freeze, sizes, burst, metadata, remote, diff, hosts, busy, soak)"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub json: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    pub compare: Option<PathBuf>,
    pub groups: BTreeSet<Group>,
    pub largest_gib: Option<u64>,
    /// How long the soak runs.
    pub minutes: u64,
    pub help: bool,
}

impl Options {
    /// Parses the arguments; `--bench` (added by cargo) is ignored, and so are
    /// the `--test-threads`-style arguments cargo passes to test harnesses.
    pub fn parse(argv: &[String]) -> Result<Options, String> {
        let mut options = Options {
            quick: false,
            json: None,
            markdown: None,
            compare: None,
            groups: Group::ALL.into_iter().filter(|group| *group != Group::Soak).collect(),
            largest_gib: None,
            minutes: 60,
            help: false,
        };
        let mut args = argv.iter();
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| args.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
            match arg.as_str() {
                "--bench" => {}
                "--quick" => options.quick = true,
                "--json" => options.json = Some(PathBuf::from(value("--json")?)),
                "--markdown" => options.markdown = Some(PathBuf::from(value("--markdown")?)),
                "--compare" => options.compare = Some(PathBuf::from(value("--compare")?)),
                "--only" => {
                    options.groups = value("--only")?.split(',').map(Group::parse).collect::<Result<_, _>>()?;
                }
                "--largest-gib" => {
                    let text = value("--largest-gib")?;
                    let gib = text.parse::<u64>().map_err(|_| format!("--largest-gib: {text:?} is not a number"))?;
                    if gib == 0 {
                        return Err("--largest-gib must be at least 1".into());
                    }
                    options.largest_gib = Some(gib);
                }
                "--minutes" => {
                    let text = value("--minutes")?;
                    options.minutes = text
                        .parse::<u64>()
                        .ok()
                        .filter(|minutes| *minutes > 0)
                        .ok_or_else(|| format!("--minutes: {text:?} is not a whole number of minutes above 0"))?;
                }
                "-h" | "--help" => options.help = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(options)
    }

    pub fn runs(&self, group: Group) -> bool {
        self.groups.contains(&group)
    }

    /// `quick` when `--quick`, else `full`.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    pub fn mode(&self) -> &'static str {
        self.pick("quick", "full")
    }
}
