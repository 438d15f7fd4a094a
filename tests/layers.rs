//! The layers of DESIGN.md, kept by the imports: the API reaches the state
//! only through the engine (never the store); the engine knows no transport
//! (no API, CLI or daemon); the leaves below it (backends, freezer, store,
//! events, remote, ...) import no engine and nothing above it. Test code
//! (after a file's `#[cfg(test)]`) is not held to it.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/<folder>` (or the file `src/<folder>.rs`).
fn sources(folder: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let single = root.join(format!("{folder}.rs"));
    if single.is_file() {
        found.push(single);
    }
    let mut pending = vec![root.join(folder)];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("read dir").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    assert!(!found.is_empty(), "no sources for {folder}");
    found
}

/// The places in `folder`'s non-test code that name one of the modules
/// `forbidden`.
fn uses(folder: &str, forbidden: &[&str]) -> Vec<String> {
    let patterns: Vec<String> = forbidden
        .iter()
        .flat_map(|module| [format!("crate::{module}::"), format!("crate::{module}}}"), format!("crate::{module};")])
        .collect();
    lines_with(folder, &patterns)
}

/// The places in `folder`'s non-test code that hold one of `patterns`.
fn lines_with(folder: &str, patterns: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for path in sources(folder) {
        if path.file_name().is_some_and(|name| name == "tests.rs" || name == "fakes.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (number, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if patterns.iter().any(|pattern| line.contains(pattern.as_str())) {
                found.push(format!("{}:{}: {}", path.display(), number + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_api_reaches_the_state_only_through_the_engine() {
    let mut found = uses("api", &["store"]);
    found.extend(lines_with("api", &[".store()".to_owned()]));
    assert!(found.is_empty(), "the API imports the store:\n{}", found.join("\n"));
}

#[test]
fn the_engine_knows_no_transport() {
    let found = uses("engine", &["api", "cli", "daemon"]);
    assert!(found.is_empty(), "the engine imports a transport:\n{}", found.join("\n"));
}

#[test]
fn the_leaves_import_no_engine() {
    let above = ["engine", "api", "cli", "daemon", "recover"];
    for leaf in ["backend", "freezer", "store", "events", "remote", "fstree", "sys", "hooks", "lifecycle", "fault"] {
        let found = uses(leaf, &above);
        assert!(found.is_empty(), "{leaf} imports a layer above it:\n{}", found.join("\n"));
    }
}
