//! # rtpengine: the ng control client's I/O shell
//!
//! [`NgClient`] owns one UDP socket connected to one rtpengine instance and a driver task that
//! runs the sans-IO [`sipmesh_protocol::ng::NgClientState`]: it sends requests, retransmits
//! them, matches replies by cookie and fails each request at its deadline. Every call is
//! asynchronous and bounded: a dead rtpengine costs a caller at most the request timeout, and
//! no more than [`RetransmitPolicy::max_outstanding`](sipmesh_protocol::ng::RetransmitPolicy)
//! requests wait at once (further ones fail at once with [`NgError::Busy`]).

mod client;
mod error;

pub use client::NgClient;
pub use error::NgError;
