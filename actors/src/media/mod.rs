//! # Media: rtpengine instances and one media-session actor per call
//!
//! ```text
//!  shard (proxy Core) ── Output::Media ──► MediaSessions ──► session task (one per leg pair)
//!        ▲                                   │ pick by weight      │ offer/answer/delete, in order
//!        └──── handle_media_result ◄─────────┘                     ▼
//!                                                       RtpenginePool: NgClient per instance,
//!                                                       ping every 500 ms, healthy flags
//! ```
//!
//! - [`RtpenginePool`] holds one [`NgClient`](crate::rtpengine::NgClient) per configured
//!   instance (`--rtpengine udp:IP:PORT[=weight]`) and pings each every
//!   [`MediaConfig::ping_interval`]; an instance whose ping fails is out at once (within the
//!   ping timeout, well under 2 s) and back after its next pong.
//! - [`MediaSessions`] is the supervisor: it maps a call leg pair ([`SessionKey`]: Call-ID +
//!   the first offer's From tag) to its session task, starts one on
//!   the first offer (on a healthy instance picked by weight), restarts a task that died (on
//!   the instance it recorded), and forgets it after its `delete`. A request for a call it
//!   does not know (an answer or delete that reached another node, a restart) goes to the
//!   instance recorded for the call, or, for a delete, to every instance (rtpengine answers
//!   a delete of an unknown call with ok and a warning).
//! - A session task runs the ng requests of its call one after another, each bounded by the
//!   client's timeout, so an offer is always applied before its answer and a dead instance
//!   costs a call at most that timeout; other calls have their own tasks and never wait.
//! - Media timeout: a session that has been answered polls `query` every
//!   [`MediaConfig::poll_interval`]; when rtpengine saw no new RTP for
//!   [`MediaConfig::media_timeout`], the session reports it ([`TimedOut`]); the engine then
//!   sends a BYE to both ends from the dialog record (`sipmesh_protocol::media::byes_for`),
//!   ends the dialog and deletes the session.
//! - Takeover (`takeover`, `pending`): a survivor watches the media of the confirmed calls it
//!   adopts from a dead node, and deletes the sessions of the calls that node had offered but
//!   not confirmed (logged in Redis by [`PendingMedia`]).
//! - Failover (`failover`, `shift_sync`): calls on an instance that died move to another
//!   one with proxy re-INVITEs; the CSeq offsets these leave are shared through Redis
//!   ([`ShiftSync`]) so that every node shifts the ends' later requests.

mod failover;
mod pending;
mod pool;
mod session;
mod shift_sync;
mod supervisor;
mod takeover;

pub use failover::{ANSWER_WAIT, DOWN_AFTER, FailoverError, FailoverShell, OWN_BRANCH, OwnReplies};
pub use pending::{KEY_LIFE, PENDING_PREFIX, PendingEntry, PendingError, PendingMedia};
pub use pool::{InstanceSpec, MediaConfig, RtpenginePool};
pub use session::{Negotiated, TimedOut};
pub use shift_sync::{RELOAD, SHIFTS_CHANNEL, SHIFTS_KEY, ShiftNews, ShiftSync, ShiftSyncError};
pub use supervisor::{MediaSessions, SessionKey};
pub use takeover::Sweep;
