//! Tests without LVM: a fake `lvm` prints canned reports and records every
//! other call, so what the backend asks of LVM is checked on any machine.
//! The real thing runs in a virtual machine (tests/vm_lvm.rs, tests/vm/run).

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use super::*;

const POOL_93: &str = r#"{"report":[{"lv":[
 {"lv_name":"db-1","vg_name":"vg0","lv_uuid":"uuid-vol","lv_attr":"Vwi-aotz--","lv_size":"104857600","data_percent":"50.00","metadata_percent":"","pool_lv":"pool","origin":"","lv_tags":"","segtype":"thin","lv_kernel_major":"254","lv_kernel_minor":"4","thin_id":"1"},
 {"lv_name":"pool","vg_name":"vg0","lv_uuid":"uuid-pool","lv_attr":"twi-aotz--","lv_size":"67108864","data_percent":"93.75","metadata_percent":"10.94","pool_lv":"","origin":"","lv_tags":"","segtype":"thin-pool","lv_kernel_major":"254","lv_kernel_minor":"2","thin_id":""},
 {"lv_name":"thick","vg_name":"vg0","lv_uuid":"uuid-thick","lv_attr":"-wi-a-----","lv_size":"4194304","data_percent":"","metadata_percent":"","pool_lv":"","origin":"","lv_tags":"","segtype":"linear","lv_kernel_major":"254","lv_kernel_minor":"5","thin_id":""},
 {"lv_name":"rp-db-1.old","vg_name":"vg0","lv_uuid":"uuid-old","lv_attr":"Vri---tz-k","lv_size":"104857600","data_percent":"","metadata_percent":"","pool_lv":"pool","origin":"db-1","lv_tags":"rollpoint","segtype":"thin","lv_kernel_major":"-1","lv_kernel_minor":"-1","thin_id":"2"},
 {"lv_name":"rp-db-1.users","vg_name":"vg0","lv_uuid":"uuid-users","lv_attr":"Vwi---tz--","lv_size":"104857600","data_percent":"","metadata_percent":"","pool_lv":"pool","origin":"","lv_tags":"","segtype":"thin","lv_kernel_major":"-1","lv_kernel_minor":"-1","thin_id":"3"},
 {"lv_name":"rp-db-10.other","vg_name":"vg0","lv_uuid":"uuid-other","lv_attr":"Vri---tz-k","lv_size":"104857600","data_percent":"","metadata_percent":"","pool_lv":"pool","origin":"","lv_tags":"rollpoint","segtype":"thin","lv_kernel_major":"-1","lv_kernel_minor":"-1","thin_id":"4"}
]}]}"#;

/// A fake lvm: `lvs` prints `lvs.<n>.json` for its n-th call when that file
/// exists (else `lvs.json`); every other call is appended to `calls`, and
/// fails with the text of `fail` when that file exists.
struct FakeLvm {
    dir: PathBuf,
}

impl FakeLvm {
    fn new(report: &str) -> FakeLvm {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rollpoint-fake-lvm-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("lvs.json"), report).expect("write");
        let script = format!(
            r#"#!/bin/sh
d='{}'
if [ "$1" = lvs ]; then
    n=$(cat "$d/lvs-count" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$d/lvs-count"
    if [ -f "$d/lvs.$n.json" ]; then cat "$d/lvs.$n.json"; else cat "$d/lvs.json"; fi
    exit 0
fi
echo "$*" >> "$d/calls"
if [ -f "$d/fail" ]; then cat "$d/fail" >&2; exit 5; fi
"#,
            dir.display()
        );
        let path = dir.join("lvm");
        std::fs::write(&path, script).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        FakeLvm { dir }
    }

    fn backend(&self) -> LvmBackend {
        LvmBackend::new().with_lvm_binary(self.dir.join("lvm"))
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("calls")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn fail_with(&self, stderr: &str) {
        std::fs::write(self.dir.join("fail"), stderr).expect("write");
    }

    fn report_for_call(&self, n: usize, report: &str) {
        std::fs::write(self.dir.join(format!("lvs.{n}.json")), report).expect("write");
    }
}

impl Drop for FakeLvm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn inspect_accepts_thin_volumes_only() {
    let lvm = FakeLvm::new(POOL_93);
    let backend = lvm.backend();
    let info = backend.inspect("vg0/db-1", "db-1").expect("thin volume");
    assert_eq!(info.path, PathBuf::from("vg0/db-1"));
    assert_eq!(info.snapshot_dir, PathBuf::from("vg0/rp-db-1."));
    assert_eq!(backend.location(&info, "snap-2026-05-04"), "vg0/rp-db-1.snap-2026-05-04");
    assert!(matches!(backend.inspect("vg0/thick", "db-1"), Err(BackendError::NotThinVolume { .. })));
    assert!(matches!(backend.inspect("vg0/pool", "db-1"), Err(BackendError::NotThinVolume { .. })));
    assert!(matches!(backend.inspect("vg0/nope", "db-1"), Err(BackendError::NotFound { .. })));
    assert!(matches!(backend.inspect("vg0/rp-db-1.old", "db-1"), Err(BackendError::InvalidName { .. })));
    assert!(matches!(backend.inspect("/srv/db", "db-1"), Err(BackendError::InvalidName { .. })));
    assert!(matches!(backend.inspect("vg0/db-1", "db.1"), Err(BackendError::InvalidName { .. })));
    assert!(lvm.calls().is_empty(), "inspect changes nothing: {:?}", lvm.calls());
}

#[test]
fn a_full_pool_refuses_snapshots_with_the_figures() {
    let lvm = FakeLvm::new(POOL_93);
    let backend = lvm.backend();
    let error = backend.create_snapshot("vg0/db-1", "vg0/rp-db-1.snap", true).expect_err("pool is 93.75% full");
    match &error {
        BackendError::PoolFull { pool, data_percent, metadata_percent, threshold } => {
            assert_eq!(pool, "vg0/pool");
            assert_eq!(*data_percent, 93.75);
            assert_eq!(*metadata_percent, 10.94);
            assert_eq!(*threshold, DEFAULT_POOL_THRESHOLD_PERCENT);
        }
        other => panic!("expected PoolFull, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("vg0/pool") && message.contains("93.8%") && message.contains("90.0%"), "{message}");
    assert!(lvm.calls().is_empty(), "nothing was created: {:?}", lvm.calls());
}

#[test]
fn snapshots_are_tagged_thin_snapshots_that_skip_activation() {
    let lvm = FakeLvm::new(POOL_93);
    let made = POOL_93.replace("rp-db-1.old", "rp-db-1.snap");
    lvm.report_for_call(2, &made);
    let backend = lvm.backend().with_pool_threshold(95.0);
    let details = backend.create_snapshot("vg0/db-1", "vg0/rp-db-1.snap", true).expect("below 95%");
    assert_eq!(
        lvm.calls(),
        vec![
            "lvcreate --snapshot --name rp-db-1.snap --setactivationskip y --addtag rollpoint --permission r vg0/db-1"
        ]
    );
    assert_eq!(details.uuid, "uuid-old");
    assert!(details.read_only);
    assert!(details.generation >= 1 << 63, "unknown generation for an inactive LV");
    assert!(matches!(
        backend.create_snapshot("vg0/db-1", "vg0/rp-db-1.old", true),
        Err(BackendError::AlreadyExists { .. })
    ));
    assert!(matches!(
        backend.create_snapshot("vg0/db-1", "vg1/rp-db-1.x", true),
        Err(BackendError::InvalidName { .. })
    ));
    assert!(matches!(backend.create_snapshot("vg0/db-1", "vg0/mine", true), Err(BackendError::InvalidName { .. })));
    assert!(matches!(
        backend.create_snapshot("vg0/thick", "vg0/rp-db-1.t", true),
        Err(BackendError::NotThinVolume { .. })
    ));
}

#[test]
fn lists_and_deletes_only_tagged_snapshots_of_the_container() {
    let lvm = FakeLvm::new(POOL_93);
    let backend = lvm.backend();
    let info = backend.inspect("vg0/db-1", "db-1").expect("inspect");
    // `rp-db-1.users` lacks the tag (the user's); `rp-db-10.other` is db-10's.
    assert_eq!(backend.list_snapshots(&info).expect("list"), vec!["vg0/rp-db-1.old"]);
    assert!(matches!(backend.delete_snapshot("vg0/rp-db-1.users"), Err(BackendError::NotOurs { .. })));
    assert!(!backend.delete_snapshot("vg0/rp-db-1.gone").expect("absent"));
    assert!(backend.delete_snapshot("vg0/rp-db-1.old").expect("ours"));
    assert_eq!(lvm.calls(), vec!["lvremove --yes vg0/rp-db-1.old"]);
    assert!(backend.snapshot_exists("vg0/rp-db-1.old").expect("exists"));
    assert!(!backend.snapshot_exists("vg0/rp-db-1.new").expect("exists"));
}

#[test]
fn read_only_changes_only_when_needed() {
    let lvm = FakeLvm::new(POOL_93);
    let backend = lvm.backend();
    backend.set_read_only("vg0/rp-db-1.old", true).expect("already read-only");
    assert!(lvm.calls().is_empty());
    backend.set_read_only("vg0/rp-db-1.old", false).expect("make writable");
    assert_eq!(lvm.calls(), vec!["lvchange --permission rw vg0/rp-db-1.old"]);
}

#[test]
fn lvm_failures_become_typed_errors() {
    let lvm = FakeLvm::new(POOL_93);
    lvm.fail_with("  WARNING: something harmless\n  Logical Volume \"x\" already exists in volume group \"vg0\"\n");
    let backend = lvm.backend();
    let error = backend.rename("vg0/rp-db-1.old", "vg0/rp-db-1.x").expect_err("fails");
    assert!(matches!(error, BackendError::AlreadyExists { .. }), "{error:?}");
    assert!(matches!(
        classify_failure(
            "lvm lvcreate",
            "vg0/x",
            "Cannot create new thin volume, free space in thin pool vg0/pool reached threshold.".into()
        ),
        BackendError::NoSpace { .. }
    ));
    assert!(matches!(
        classify_failure("lvm lvs", "vg9", "Volume group \"vg9\" not found".into()),
        BackendError::NotFound { .. }
    ));
    let other = classify_failure("lvm lvchange -an vg0/x", "vg0/x", "Logical volume vg0/x in use.".into());
    assert_eq!(other.to_string(), "lvm lvchange -an vg0/x: Logical volume vg0/x in use.");
}

#[test]
fn an_exchange_caught_half_way_is_finished_before_anything_else() {
    // The volume was moved aside (under its swap name) and the staging LV not
    // yet moved in: the next call renames staging in, the old state out to
    // staging's name, flags both, and removes the swap tags.
    let aside = names::swap_aside_lv("db-1");
    let tags = format!("{}db-1,{}rp-db-1.staging", swap_tags::VOLUME, swap_tags::WITH);
    let half = format!(
        r#"{{"report":[{{"lv":[
 {{"lv_name":"{aside}","vg_name":"vg0","lv_uuid":"uuid-vol","lv_attr":"Vwi-a-tz--","lv_size":"1048576","data_percent":"5","metadata_percent":"","pool_lv":"pool","origin":"","lv_tags":"{tags}","segtype":"thin","lv_kernel_major":"254","lv_kernel_minor":"4","thin_id":"1"}},
 {{"lv_name":"rp-db-1.staging","vg_name":"vg0","lv_uuid":"uuid-new","lv_attr":"Vwi-a-tz-k","lv_size":"1048576","data_percent":"5","metadata_percent":"","pool_lv":"pool","origin":"","lv_tags":"rollpoint","segtype":"thin","lv_kernel_major":"254","lv_kernel_minor":"6","thin_id":"5"}}
]}}]}}"#
    );
    let done = format!(
        r#"{{"report":[{{"lv":[
 {{"lv_name":"rp-db-1.staging","vg_name":"vg0","lv_uuid":"uuid-vol","lv_attr":"Vwi-a-tz--","lv_size":"1048576","data_percent":"5","metadata_percent":"","pool_lv":"pool","origin":"","lv_tags":"{tags}","segtype":"thin","lv_kernel_major":"254","lv_kernel_minor":"4","thin_id":"1"}},
 {{"lv_name":"db-1","vg_name":"vg0","lv_uuid":"uuid-new","lv_attr":"Vwi-a-tz-k","lv_size":"1048576","data_percent":"5","metadata_percent":"","pool_lv":"pool","origin":"","lv_tags":"rollpoint","segtype":"thin","lv_kernel_major":"254","lv_kernel_minor":"6","thin_id":"5"}}
]}}]}}"#
    );
    let settled = done.replace(&tags, "rollpoint").replacen(
        "\"rollpoint\",\"segtype\":\"thin\",\"lv_kernel_major\":\"254\",\"lv_kernel_minor\":\"6\"",
        "\"\",\"segtype\":\"thin\",\"lv_kernel_major\":\"254\",\"lv_kernel_minor\":\"6\"",
        1,
    );
    let lvm = FakeLvm::new(&settled);
    // 1: the first look, 2: the look again under the claim, 3: after the renames.
    lvm.report_for_call(1, &half);
    lvm.report_for_call(2, &half);
    lvm.report_for_call(3, &done);
    let backend = lvm.backend();
    let details = backend.details("vg0/db-1").expect("settled, then read");
    assert_eq!(details.uuid, "uuid-new", "the volume name holds the new state");
    let expected = vec![
        "lvrename vg0 rp-db-1.staging db-1".to_string(),
        format!("lvrename vg0 {aside} rp-db-1.staging"),
        "lvchange --setactivationskip n --deltag rollpoint vg0/db-1".to_string(),
        "lvchange --activate n vg0/rp-db-1.staging".to_string(),
        format!(
            "lvchange --deltag {}db-1 --deltag {}rp-db-1.staging --setactivationskip y --addtag rollpoint vg0/rp-db-1.staging",
            swap_tags::VOLUME,
            swap_tags::WITH
        ),
    ];
    assert_eq!(lvm.calls(), expected);
}

#[test]
fn thin_ls_output_parses() {
    let text = "       1     4194304\n       2   123731968\n  garbage\n";
    assert_eq!(parse_thin_ls(text), vec![(1, 4_194_304), (2, 123_731_968)]);
}
