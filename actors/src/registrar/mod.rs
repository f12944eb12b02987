//! # The registrar actors: one ractor actor per active AOR
//!
//! ```text
//!  shard ── Registrar::register_with / lookup_with ──► Directory (64 locked map shards)
//!   ▲                                                      │ send (spawn on demand, linked)
//!   │                                                      ▼
//!   └──── reply callback (the shard's completion channel) ─ AorActor ──► LocationStore
//!                                                          ▲ failed: respawn, reload
//!                                    RegistrarSupervisor ──┘ stopped (idle): forget
//! ```
//!
//! DESIGN.md: "Entities with a life longer than a transaction are actors: one per active AOR
//! (serialises its REGISTERs and lookups, caches its bindings, owns their expiry timer) ...
//! created on demand, stopped when idle, restarted from the store by their supervisor after a
//! panic." The store stays the source of truth: a REGISTER is answered only after the store
//! acknowledged the write, and the actor's cache is only ever the store's last answer.
//!
//! # Layout
//! - [`handle`] holds [`Registrar`], the cloneable handle the shards call.
//! - `directory`: the sharded `Aor -> ActorRef` map, spawning, and the idle/restart races.
//! - `aor_actor`: the actor of one AOR.
//! - `aor_core`: its state, shared with the inline path for stores that answer at once.
//! - `supervisor`: `RegistrarSupervisor`, which restarts failed AOR actors.
//! - [`driver`]: [`Driver`], the calls a shard drives itself (an idle actor's job over Redis).
//! - `job`: one request and its reply (never lost: redelivered once, else 503).
//! - `cache`: the cached bindings and the expiry timer's generation.
//! - [`config`] holds [`RegistrarConfig`].

mod aor_actor;
mod aor_core;
mod cache;
pub mod config;
mod directory;
pub mod driver;
pub mod flow_retry;
pub mod handle;
mod job;
mod supervisor;

#[cfg(test)]
mod driver_tests;
#[cfg(test)]
mod tests;

pub use config::{RegistrarConfig, WallClock};
pub use driver::Driver;
pub use flow_retry::FlowRemovalRetry;
pub use handle::Registrar;
