//! # rtpengine's "ng" control protocol, sans-IO
//!
//! sipmesh drives rtpengine (media relay and WebRTC ↔ RTP conversion) over ng: one UDP
//! datagram per request, `<cookie> <bencoded dictionary>`, answered with the same cookie.
//! (rtpengine's `docs/ng_control_protocol.md`; bencode is BitTorrent's BEP 3.)
//!
//! - [`bencode`]: the bounded, never-panicking bencode codec.
//! - [`frame`]: cookies and the datagram framing.
//! - [`request`]: typed requests (ping, offer, answer, delete, query, list, statistics).
//! - [`response`]: typed replies, `result: error` with its reason.
//! - [`client`]: outstanding requests, retransmission and deadlines on explicit `Instant`s.

pub mod bencode;
pub mod client;
pub mod frame;
pub mod request;
pub mod response;

pub use bencode::{Dict, Value};
pub use client::{Incoming, NgClientState, RetransmitPolicy, StartError, Timer};
pub use frame::Cookie;
pub use request::{CallRef, DtlsMode, IceMode, MediaOptions, Request, SdpRequest};
pub use response::{ReplyError, Response};
