//! What the engine hands out and takes in: its records of containers,
//! snapshots, schedule entries, events and tokens, and the specifications
//! inside them. Each is a copy: changing one changes nothing until it is
//! given back through an engine call. The API turns these into messages and
//! reaches the state only through the engine, never through the store (the
//! `layers` test checks the imports).

pub use crate::store::{
    ContainerRecord, EntryAction, EntryRecord, EventRecord, HookSpec, Hooks, LifecycleSpec, OnFailure, RetentionPolicy,
    SnapshotOrigin, SnapshotRecord, SnapshotState, TokenRecord,
};
