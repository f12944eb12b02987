//! # Dialog actors: one supervised actor per dialog, records in a store
//!
//! ```text
//!  shard (proxy::Core) ── Output::Dialog ──► Dialogs::handle ──cast──► DialogActor (one per dialog)
//!                                               │ no live actor             │ save / remove
//!                                               ▼                           ▼
//!                                         DialogSupervisor ──spawn──►  DialogStore (memory | Redis)
//!                                          restarts a panicked child from the store
//! ```
//!
//! The protocol crate decides what a message means for a dialog
//! ([`sipmesh_protocol::dialog`]); the actors here only keep the record, mirror it to the
//! store (written on confirmation, updated on refresh, deleted at the end) and end it at its
//! timeout. Routing never waits for any of this: in-dialog requests are routed by their Route
//! headers, and a slow store only delays the record.
//!
//! # Layout
//! - `handle`: [`Dialogs`], the shards' handle (a sharded map of live actors).
//! - `supervisor`: [`DialogSupervisor`](supervisor::DialogSupervisor).
//! - `actor`: [`DialogActor`](actor::DialogActor).
//! - `store`, `memory`, `redis`, `record`: the store trait, its two implementations
//!   and the Redis hash layout.
//! - `retry`: removals refused while fenced, queued and retried.
//! - `takeover`: failover and rebalancing of dialog actors between cluster nodes (issue 5).

pub mod actor;
pub mod handle;
pub mod memory;
pub mod record;
pub mod redis;
pub mod retry;
pub mod store;
pub mod supervisor;
pub mod takeover;
#[cfg(test)]
mod tests;

pub use handle::{DialogHookError, Dialogs, OwnerCheck, OwnerOf, TimeoutHook};
pub use memory::MemoryDialogStore;
pub use redis::RedisDialogStore;
pub use store::{DialogStore, DialogStoreError, EXPIRY_MARGIN, Revision, TimeLeft, WriteRole};
