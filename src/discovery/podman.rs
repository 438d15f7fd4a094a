//! Podman (rootful), through its JSON output: `podman ps --all --format
//! json` for the containers, `podman inspect` for each one's process,
//! storage driver and mounts.
//!
//! A container's volume candidates are its root when the storage driver is
//! btrfs (each container's layer is a subvolume), then the sources of its
//! bind mounts and named volumes; its cgroup is its main process's; it is
//! stopped and started with `podman stop` / `podman start`.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use super::{cgroup_of, suggested_id, DiscoveryConfig, Found, Source};
use crate::store::LifecycleSpec;

/// Podman's containers, running or not.
pub async fn list(config: &DiscoveryConfig) -> Result<Vec<Found>, String> {
    let listed = run(config, &["ps", "--all", "--format", "json"]).await?;
    let ids: Vec<String> = as_array(listed)?
        .iter()
        .filter_map(|container| container.get("Id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["inspect", "--type", "container"];
    args.extend(ids.iter().map(String::as_str));
    let inspected = run(config, &args).await?;
    Ok(as_array(inspected)?.iter().filter_map(|container| describe(container, config)).collect())
}

/// Runs Podman with `args` and parses its standard output as JSON.
async fn run(config: &DiscoveryConfig, args: &[&str]) -> Result<Value, String> {
    let (program, before) = config.podman.split_first().ok_or("no podman command configured")?;
    let output = tokio::process::Command::new(program)
        .args(before)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => format!("{program} is not installed"),
            _ => format!("{program}: {error}"),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("podman {} failed ({}): {}", args[0], output.status, stderr.trim()));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("podman {}: unexpected output: {e}", args[0]))
}

fn as_array(value: Value) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(items) => Ok(items),
        // `podman ps --format json` prints null when there is nothing.
        Value::Null => Ok(Vec::new()),
        _ => Err("podman: expected a JSON array".to_owned()),
    }
}

/// One container of `podman inspect`; `None` for an entry with no id.
pub fn describe(container: &Value, config: &DiscoveryConfig) -> Option<Found> {
    let text = |pointer: &str| container.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    let id = text("/Id");
    if id.is_empty() {
        return None;
    }
    let name = Some(text("/Name")).filter(|n| !n.is_empty()).unwrap_or(id).trim_start_matches('/').to_owned();
    let running = container.pointer("/State/Running").and_then(Value::as_bool).unwrap_or(false);
    let pid = container.pointer("/State/Pid").and_then(Value::as_u64).unwrap_or(0);
    let mut volumes = Vec::new();
    if text("/GraphDriver/Name") == "btrfs" && !text("/Mountpoint").is_empty() {
        volumes.push(PathBuf::from(text("/Mountpoint")));
    }
    for mount in container.get("Mounts").and_then(Value::as_array).into_iter().flatten() {
        let kind = mount.get("Type").and_then(Value::as_str).unwrap_or_default();
        let source = mount.get("Source").and_then(Value::as_str).unwrap_or_default();
        if matches!(kind, "bind" | "volume") && source.starts_with('/') {
            volumes.push(PathBuf::from(source));
        }
    }
    let (cgroup, problem) = match u32::try_from(pid) {
        Ok(pid) if running && pid > 0 => match cgroup_of(pid) {
            Ok(group) => (Some(group), None),
            Err(reason) => (None, Some(reason)),
        },
        _ => {
            let status = Some(text("/State/Status")).filter(|s| !s.is_empty()).unwrap_or("unknown");
            (None, Some(format!("not running (state {status})")))
        }
    };
    Some(Found {
        source: Source::Podman,
        suggested_id: suggested_id(&name),
        name,
        running,
        cgroup,
        volumes,
        lifecycle: LifecycleSpec::Podman {
            command: config.podman.clone(),
            container: id.to_owned(),
            timeout: config.lifecycle_timeout,
        },
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_output_is_read() {
        let config = DiscoveryConfig::default();
        let inspected = serde_json::json!({
            "Id": "6b6ac761705b",
            "Name": "My_Db",
            "State": {"Status": "exited", "Running": false, "Pid": 0},
            "GraphDriver": {"Name": "btrfs"},
            "Mountpoint": "/var/lib/containers/storage/btrfs/subvolumes/abc",
            "Mounts": [
                {"Type": "bind", "Source": "/srv/db", "Destination": "/data"},
                {"Type": "tmpfs", "Source": "", "Destination": "/tmp"},
                {"Type": "volume", "Name": "wal", "Source": "/var/lib/containers/storage/volumes/wal/_data"}
            ]
        });
        let found = describe(&inspected, &config).unwrap();
        assert_eq!(found.name, "My_Db");
        assert_eq!(found.suggested_id, "my-db");
        assert!(!found.running);
        assert_eq!(found.cgroup, None);
        assert_eq!(found.problem.as_deref(), Some("not running (state exited)"));
        let volumes: Vec<&str> = found.volumes.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            volumes,
            [
                "/var/lib/containers/storage/btrfs/subvolumes/abc",
                "/srv/db",
                "/var/lib/containers/storage/volumes/wal/_data"
            ]
        );
        let LifecycleSpec::Podman { container, command, .. } = found.lifecycle else { panic!("not podman") };
        assert_eq!((container.as_str(), command), ("6b6ac761705b", vec!["/usr/bin/podman".to_owned()]));
        assert_eq!(describe(&serde_json::json!({"Name": "x"}), &config), None);
    }
}
