//! # sipmesh-cluster: membership, failure detection, fencing and placement
//!
//! Every sipmesh node is equal. This crate lets a node know who else is in the cluster, which
//! of them are alive, whether it may itself act as an owner, and which member owns a key.
//!
//! - **Membership** ([`mesh`]): a ractor_cluster `NodeServer` with cookie authentication on the
//!   cluster address; nodes dial their seeds and every member in the Redis registry, in
//!   transitive mode, so they form a full mesh, and redial with back-off after a restart.
//! - **Failure detection** ([`detector`], [`heartbeat`]): a member is live while its Redis
//!   lease exists *and* its UDP heartbeats (every 400 ms, HMAC-authenticated with the cookie)
//!   carry that lease's epoch; silent for 1 s it is suspect, for 2.4 s dead.
//! - **Fencing** ([`lease`], [`store`]): each node renews a lease (`P node:<id>`, 3 s) every
//!   second; the lease holds an epoch from `INCR P epoch:<id>`. A node whose lease lapsed
//!   (Redis unreachable, process frozen) is fenced at once, waits a hold-off, and returns with a
//!   new epoch. Owner writes carry the epoch and [`store::CHECK_EPOCH_LUA`] refuses stale ones.
//!   A node that hears fewer than a majority of the leased members (cut off from its peers but
//!   not from Redis, or just started) is fenced too (`FenceReason::Isolated`), and a node that
//!   just (re)gained lease or contact waits `Timing::settle` before owning (`Settling`), so no
//!   key has two acting owners (checked by the seeded simulation in `tests/sim.rs`).
//! - **Placement** ([`placement`]): rendezvous hashing over the live set.
//! - **Pruning** ([`prune`]): a member without a lease for `Timing::prune_after` (60 s) leaves
//!   the registry.
//! - **Routers** ([`router`]): one actor per service per node in process group
//!   `sipmesh.<service>`.
//! - **Flows** ([`flow`]): the `transport` service hands a SIP message to the node that holds
//!   the TCP/TLS/WS connection it must go over, and relays the responses back;
//!   [`suspects`] fails deliveries to a holder that stopped answering at once.
//!
//! The decision logic ([`lease::Lease`], [`detector::MemberTable`], [`placement`],
//! [`heartbeat::Heartbeat`]) is sans-IO and tested with explicit instants; [`Membership`] is
//! the Tokio shell around it.
//!
//! # Layout
//!
//! `id` (NodeId, Epoch), `config` (ClusterConfig, Timing), `placement`, `lease`, `detector`,
//! `heartbeat`, `store` (Redis keys and Lua), `mesh` (ractor_cluster), `router`, `flow`, `view`
//! (admin JSON), `membership` (the handle), `tasks` (the loops behind it).

pub mod config;
pub mod detector;
pub mod flow;
pub mod heartbeat;
pub mod id;
pub mod lease;
pub mod membership;
pub mod mesh;
pub mod placement;
pub mod prune;
pub mod router;
pub mod store;
pub mod suspects;
mod tasks;
pub mod tls;
pub mod view;

pub use config::{ClusterConfig, Timing};
pub use detector::MemberState;
pub use id::{Epoch, NodeId};
pub use membership::{ClusterError, Membership};
pub use view::{ActorCounts, ClusterView, FenceReason, MemberView};
