//! # sipmesh-protocol: the sans-IO SIP core
//!
//! Everything in this crate takes input (bytes, parsed messages, an explicit `Instant`) and
//! returns output (bytes to send, events, the next deadline). It never touches a socket, a
//! timer, a clock, a random-number generator or a store: the I/O shells in `sipmesh-actors`
//! drive it. That keeps every rule here deterministic and unit-testable without sleeps.
//!
//! # Layout
//! - [`message`], [`header`], [`uri`]: the SIP message model, zero-copy over `bytes::Bytes`,
//!   with typed header values parsed on demand, and the forwarding editor.
//! - [`framing`]: Content-Length framing of SIP over byte streams (TCP, TLS).
//! - [`transaction`]: the four RFC 3261 §17 transaction state machines and matching.
//! - [`registrar`]: RFC 3261 §10 binding rules and the location-store trait.
//! - [`proxy`]: RFC 3261 §16 proxy decisions.
//! - [`dialog`]: RFC 3261 §12 dialog records as the proxy keeps them, and their events.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod header;
pub mod message;
pub mod peer;
pub mod proxy;
pub mod registrar;
pub mod transaction;
pub mod uri;

pub use header::HeaderName;
pub use message::{Message, Method, ParseError, StatusCode};
pub mod dialog;
pub mod framing;
pub mod media;
pub mod ng;
