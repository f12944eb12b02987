//! # Media: which rtpengine flags each call leg gets, and SDP body glue (sans-IO)
//!
//! sipmesh relays media through rtpengine (issue 6). For every INVITE or UPDATE that carries an
//! SDP offer the proxy asks rtpengine to rewrite it (`offer`), for every 18x/2xx with an SDP
//! answer it asks again (`answer`), and a BYE or a final failure deletes the session. This
//! module holds the pure parts of that:
//!
//! - [`profile`]: the kind of each leg ([`LegKind`]: a WebRTC browser or a legacy phone), from
//!   its transport and its SDP, and the ng [`MediaOptions`](crate::ng::MediaOptions) rtpengine
//!   needs to produce SDP for that leg ([`MediaProfiles::options_towards`]);
//! - [`route`]: `[[media.route]]` overrides of those flags per call (domain, user prefix,
//!   transport);
//! - [`sdp`]: spotting an SDP body and replacing it (with its Content-Length) in a message;
//! - [`bye`]: the BYEs that end a call at both ends when its media stopped;
//! - [`reinvite`] and [`cseq_shift`]: the re-INVITEs that move a call to another rtpengine
//!   instance when its own died, and the CSeq offsets they leave in the dialog;
//! - [`raw_call_id`]: a message's Call-ID found in its raw bytes (the offsets' fast path).
//!
//! The proxy side (parking a request until rtpengine answered) is in `proxy/media.rs`.

pub mod bye;
pub mod cseq_shift;
pub mod profile;
pub mod raw_call_id;
pub mod reinvite;
pub mod route;
pub mod sdp;
#[cfg(test)]
mod test_dialog;

pub use bye::{Bye, byes_for};
pub use cseq_shift::{CseqShifts, ShiftError};
pub use profile::{LegKind, MediaProfiles};
pub use reinvite::{End, OwnRequest, ReInvite};
pub use route::{MediaRoute, RouteError, RouteMatch};
pub use sdp::{SdpError, has_sdp, replace_body};
