//! # The stateful proxy and registrar front end (RFC 3261 §16, §10), sans-IO
//!
//! [`Core`] owns every server and client transaction of one shard, the response context of each
//! forwarded request, and the decisions around them: validation (§16.3), Route processing
//! (§16.4), target determination through the location service (§16.5), forwarding with
//! Record-Route and parallel forking (§16.6), response selection (§16.7), CANCEL (§16.10) and
//! the locally answered requests (OPTIONS to the node, REGISTER).
//!
//! It is driven like every machine in this crate:
//!
//! ```text
//!  handle_message(now, msg, origin) ─┐                      ┌─► poll_output(): Transmit,
//!  handle_timeout(now)               ├─► Core (no I/O) ─────┤   Register, Lookup
//!  handle_register_result(..)        │                      └─► poll_timeout(): next deadline
//!  handle_lookup_result(..) ─────────┘
//! ```
//!
//! The location store is reached through [`Output::Register`] / [`Output::Lookup`]: the shell
//! runs the operation (in memory or in Redis) and feeds the result back with the token. A
//! REGISTER is answered only from that result, so a 200 is never sent for state the store did
//! not take.
//!
//! In a cluster, a destination over a connection held by another node process comes out as
//! [`Output::RemoteTransmit`] (see [`Incarnation`]); the shell carries it there, and calls
//! [`Core::handle_flow_unreachable`] when it cannot.
//!
//! Dialogs (see [`crate::dialog`]) come out as [`Output::Dialog`] events; the 2xx that confirms
//! a dialog comes out as [`Output::StoreDialog`] and is held until
//! [`Core::handle_dialog_stored`] or [`DIALOG_HOLD`]. In-dialog requests are still routed by
//! their Route headers alone.

mod ack;
mod addressing;
mod arena;
mod cancel;
mod cluster;
mod config;
mod core;
#[cfg(test)]
mod dialog_tests;
mod dialogs;
mod flow;
#[cfg(test)]
mod flow_tests;
mod forward;
mod local;
mod locality;
mod matching;
mod media;
mod media_fork;
#[cfg(test)]
mod media_fork_tests;
mod media_late;
mod media_prack;
#[cfg(test)]
mod media_prack_tests;
#[cfg(test)]
mod media_tests;
mod originate;
mod response_context;
mod rng;
mod routing;
#[cfg(test)]
mod tests;
mod timers;
mod wire;

pub use self::cluster::Incarnation;
pub use self::config::{CoreConfig, DEFAULT_MAX_FORWARDS, TIMER_C};
pub use self::core::{Core, Output, StoreFailure};
pub use self::dialogs::DIALOG_HOLD;
pub use self::flow::{FlowTokenKey, FlowTokenKeyError, MAC_LEN as FLOW_TOKEN_MAC_LEN};
pub use self::locality::Locality;
pub use self::media::MediaFailure;
pub use self::originate::{OriginateError, origin_branch};
pub use self::response_context::{ResponseAction, ResponseContext};
pub use self::rng::IdGenerator;
pub use self::timers::TimerQueue;
pub use self::wire::shard_of_branch;
pub use crate::peer::{ConnectionId, Destination, Listener, Origin, Transmit, Transport};
