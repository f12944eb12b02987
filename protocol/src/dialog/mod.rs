//! # Dialogs (RFC 3261 §12), as a proxy sees them, sans-IO
//!
//! A stateful proxy that Record-Routes is on the path of every in-dialog request, but it is not
//! a dialog endpoint: it does not answer in-dialog requests from dialog state, it routes them by
//! their Route headers. What it keeps is a *record* of each dialog that passes through it, so
//! that any node (issue 5) can route from it, a media session (issue 6) can hang off it, and a
//! dialog that was never ended (a lost BYE) is cleaned up at its timeout.
//!
//! The [`proxy::Core`](crate::proxy::Core) sees dialog-creating INVITEs, their responses and
//! in-dialog requests, possibly on different shards, and emits [`DialogEvent`]s carrying what
//! it knows. The dialog actor (one per [`DialogId`], in `sipmesh-actors`) folds those events
//! into one [`DialogState`] with the pure transition [`DialogState::apply`].
//!
//! ```text
//!            1xx with To tag          2xx
//!  (none) ─────────────────► Early ─────────► Confirmed ──┐ re-INVITE / UPDATE 2xx:
//!    │                         │                  │  ▲    │ new remote target, CSeq,
//!    │ 2xx                     │ failure final,   │  └────┘ session timer
//!    └─────────────────────────┼─► Confirmed      │ BYE, timeout
//!                              │ other fork's 2xx ▼
//!                              └────────────► Terminated
//! ```
//!
//! # Layout
//! - [`id`]: [`DialogId`] and its printable key `call-id;caller-tag;callee-tag`.
//! - [`state`]: [`DialogState`], [`Leg`], [`DialogPhase`] and the transition function.
//! - [`event`]: [`DialogEvent`], what the proxy core emits.
//! - [`extract`]: building events from SIP messages (pure functions over [`Message`](crate::Message)).
//! - [`config`]: [`DialogConfig`], the timeouts (RFC 4028 session timer, default lifetime).

pub mod config;
pub mod event;
pub mod extract;
pub mod id;
pub mod state;
#[cfg(test)]
mod tests;

pub use self::config::DialogConfig;
pub use self::event::DialogSnapshot;
pub use self::event::{DialogEvent, EndReason, InDialogUpdate};
pub use self::extract::{DialogError, InDialogFacts, InviteFacts, session_expires};
pub use self::id::{DialogId, DialogIdError};
pub use self::state::{Applied, DialogPhase, DialogState, Leg, MediaNegotiation, Side};
