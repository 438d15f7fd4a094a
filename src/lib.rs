//! rollpoint: consistent copy-on-write snapshots of cgroup-scoped containers,
//! and one-call restores, served over gRPC by `rollpointd`.
//!
//! Layers (see DESIGN.md): `api` (gRPC, CLI client) is thin and translates;
//! `engine` holds the logic over the `backend` (btrfs) and `freezer` (cgroup)
//! traits and the `store` (sled). `testkit` holds fixtures shared by the
//! integration tests and the benchmarks (loop-backed btrfs, test cgroups,
//! workload processes), behind the `testkit` feature: never in a release
//! binary.

pub mod api;
pub mod backend;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod discovery;
pub mod docs;
pub mod engine;
pub mod events;
pub mod fault;
pub mod freezer;
pub mod fstree;
pub mod hex;
pub mod hooks;
pub mod lifecycle;
pub mod recover;
pub mod remote;
pub mod scheduler;
pub mod store;
pub mod sys;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod units;
