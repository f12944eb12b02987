//! The location service: where the bindings of every AOR live (RFC 3261 §10.2, "location
//! service").
//!
//! [`LocationStore`] is the async-ready interface the registrar transaction user and the proxy
//! use; the registrar rules themselves are the pure
//! [`apply_register`](sipmesh_protocol::registrar::apply_register), which the memory store runs
//! while it holds the AOR exclusively, and the Redis store mirrors in one server-side Lua script
//! per REGISTER; either way two REGISTERs for one AOR are serialised.
//!
//! # Layout
//! - [`store`]: the [`LocationStore`] trait, [`StoreError`] and [`StoreStats`].
//! - [`memory`]: [`MemoryLocationStore`], the sharded in-process implementation (the default for
//!   a single node).
//! - [`redis`]: [`RedisLocationStore`], bindings in Redis updated by one Lua script per
//!   REGISTER (for clusters and crash recovery).

pub mod memory;
pub mod redis;
pub mod store;

pub use memory::MemoryLocationStore;
pub use redis::{RedisLocationStore, RedisStoreConfig, RedisStoreError};
pub use store::{LocationStore, StoreError, StoreStats, UnavailableReason};
