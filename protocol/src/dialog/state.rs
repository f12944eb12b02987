//! The record of one dialog and its pure transition function.

use std::time::{Duration, SystemTime};

use crate::peer::Destination;

use super::config::DialogConfig;
use super::event::{DialogEvent, DialogSnapshot, InDialogUpdate};
use super::id::DialogId;

/// Where a dialog is in its life (RFC 3261 §12: early, confirmed; and ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialogPhase {
    /// Created by a provisional response with a To tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    /// Ended: BYE, failure, timeout, or another fork won.
    Terminated,
}

impl DialogPhase {
    /// `early`, `confirmed` or `terminated` (the store's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Early => "early",
            Self::Confirmed => "confirmed",
            Self::Terminated => "terminated",
        }
    }

    /// Reads [`as_str`](Self::as_str) back.
    pub fn from_name(s: &str) -> Option<Self> {
        [Self::Early, Self::Confirmed, Self::Terminated]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// The two ends of a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The UA that sent the dialog-creating INVITE.
    Caller,
    /// The UA that answered it.
    Callee,
}

/// One end of a dialog, as the proxy knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leg {
    /// Its URI (From for the caller, To for the callee), as written.
    pub uri: String,
    /// Its tag.
    pub tag: String,
    /// Its remote target: the Contact URI of its last dialog-creating or target refresh
    /// message (RFC 3261 §12.1, §12.2).
    pub target: Option<String>,
    /// The route set this end puts in its requests (Route values, first hop first), as
    /// Record-Route values (RFC 3261 §12.1.1, §12.1.2).
    pub route_set: Vec<String>,
    /// The highest CSeq number seen in a request from this end (§12.2.1.1).
    pub cseq: Option<u32>,
    /// How the proxy reaches this end: transport, address, connection.
    pub flow: Option<Destination>,
    /// The methods this end listed in Allow (RFC 3261 §20.5) in its dialog-creating message,
    /// comma-separated; `None` when it sent no Allow (issue 6: a proxy re-INVITE skips an
    /// end that listed methods without INVITE).
    pub allow: Option<String>,
}

/// The last ng offer and answer of a call's media, each as the media layer encodes it
/// (bencoded ng dictionaries, see `ng::SdpRequest::from_dict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaNegotiation {
    /// The last accepted offer.
    pub offer: String,
    /// The last accepted answer.
    pub answer: String,
}

/// What [`DialogState::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// The record changed in a way the store must see (confirmed, refreshed).
    pub changed: bool,
    /// The dialog ended with this event.
    pub ended: bool,
}

/// The record of one dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogState {
    /// Call-ID and tags.
    pub id: DialogId,
    /// Early, confirmed or ended.
    pub phase: DialogPhase,
    /// The caller's end.
    pub caller: Leg,
    /// The callee's end.
    pub callee: Leg,
    /// When the first event for the dialog arrived (wall clock, for other nodes to read).
    pub created: SystemTime,
    /// When the 2xx arrived.
    pub confirmed: Option<SystemTime>,
    /// The media session (issue 6: rtpengine instance and call reference) hung off the dialog.
    pub media_session: Option<String>,
    /// The call's last ng offer and answer that rtpengine accepted (issue 6: what a failover
    /// replays on another instance), encoded by the media layer; kept in the record so that
    /// a node adopting the call can fail it over.
    pub media_negotiation: Option<MediaNegotiation>,
    /// The negotiated session interval (RFC 4028), if any.
    pub session_expires: Option<Duration>,
    /// How long the record lives without news, from [`DialogState::timeout_for`].
    pub timeout: Duration,
}

impl DialogState {
    /// A new record from the first snapshot seen (`phase` Early or Confirmed).
    pub fn new(
        snapshot: &DialogSnapshot,
        phase: DialogPhase,
        wall: SystemTime,
        cfg: &DialogConfig,
    ) -> Self {
        let mut state = Self {
            id: snapshot.id.clone(),
            phase,
            caller: snapshot.caller.clone(),
            callee: snapshot.callee.clone(),
            created: wall,
            confirmed: (phase == DialogPhase::Confirmed).then_some(wall),
            media_session: None,
            media_negotiation: None,
            session_expires: snapshot.session_expires,
            timeout: Duration::ZERO,
        };
        state.timeout = state.timeout_for(cfg);
        state
    }

    /// A record from the first event of a dialog: `None` for events that cannot create one
    /// (refreshes and ends of dialogs we have no record of).
    pub fn from_event(event: &DialogEvent, wall: SystemTime, cfg: &DialogConfig) -> Option<Self> {
        match event {
            DialogEvent::Early(s) => Some(Self::new(s, DialogPhase::Early, wall, cfg)),
            DialogEvent::Confirmed(s) => Some(Self::new(s, DialogPhase::Confirmed, wall, cfg)),
            DialogEvent::Refreshed(_) | DialogEvent::Terminated { .. } => None,
        }
    }

    /// The lifetime of the record without news: an early dialog lives as long as its INVITE
    /// can (Timer C); a confirmed one for its session interval plus a grace (RFC 4028 §10),
    /// or the configured default.
    pub fn timeout_for(&self, cfg: &DialogConfig) -> Duration {
        match (self.phase, self.session_expires) {
            (DialogPhase::Early, _) => cfg.early_timeout,
            (_, Some(interval)) => interval + cfg.session_grace,
            (_, None) => cfg.default_timeout,
        }
    }

    /// Which end has `tag`.
    pub fn side_of(&self, tag: &str) -> Option<Side> {
        if tag == self.caller.tag {
            Some(Side::Caller)
        } else if tag == self.callee.tag {
            Some(Side::Callee)
        } else {
            None
        }
    }

    /// True when `id` names this dialog in either orientation.
    pub fn is_named_by(&self, id: &DialogId) -> bool {
        id.call_id == self.id.call_id
            && ((id.caller_tag == self.id.caller_tag && id.callee_tag == self.id.callee_tag)
                || (id.caller_tag == self.id.callee_tag && id.callee_tag == self.id.caller_tag))
    }

    /// One end, mutably.
    pub fn leg_mut(&mut self, side: Side) -> &mut Leg {
        match side {
            Side::Caller => &mut self.caller,
            Side::Callee => &mut self.callee,
        }
    }

    /// Folds one event into the record. Events for another dialog, and anything after the
    /// end, change nothing. `wall` stamps the confirmation.
    pub fn apply(&mut self, event: &DialogEvent, wall: SystemTime, cfg: &DialogConfig) -> Applied {
        if self.phase == DialogPhase::Terminated || !self.is_named_by(event.id()) {
            return Applied::default();
        }
        let applied = match event {
            DialogEvent::Early(s) => {
                if self.phase == DialogPhase::Early {
                    // A later provisional response (183 after 180) may carry a Contact the
                    // first lacked; the record is not stored before confirmation anyway.
                    self.merge_snapshot(s);
                }
                Applied::default()
            }
            DialogEvent::Confirmed(s) => {
                if self.phase == DialogPhase::Early {
                    self.phase = DialogPhase::Confirmed;
                    self.confirmed = Some(wall);
                    self.merge_snapshot(s);
                    Applied {
                        changed: true,
                        ended: false,
                    }
                } else {
                    Applied::default()
                }
            }
            DialogEvent::Refreshed(u) => Applied {
                changed: self.refresh(u),
                ended: false,
            },
            DialogEvent::Terminated { .. } => {
                self.phase = DialogPhase::Terminated;
                Applied {
                    changed: true,
                    ended: true,
                }
            }
        };
        self.timeout = self.timeout_for(cfg);
        applied
    }

    fn merge_snapshot(&mut self, s: &DialogSnapshot) {
        let media = self.media_session.take();
        self.caller = s.caller.clone();
        self.callee = s.callee.clone();
        self.session_expires = s.session_expires.or(self.session_expires);
        self.media_session = media;
    }

    /// A target refresh (RFC 3261 §12.2.2): the requester's CSeq, both remote targets when
    /// the messages carried a Contact, and the session interval. A refresh with a CSeq not
    /// above the requester's last one is stale (reordered) and changes nothing.
    fn refresh(&mut self, u: &InDialogUpdate) -> bool {
        let Some(requester) = self.side_of(&u.id.caller_tag) else {
            return false;
        };
        let responder = match requester {
            Side::Caller => Side::Callee,
            Side::Callee => Side::Caller,
        };
        let leg = self.leg_mut(requester);
        if leg.cseq.is_some_and(|c| u.cseq <= c) {
            return false;
        }
        leg.cseq = Some(u.cseq);
        if let Some(t) = &u.requester_target {
            leg.target = Some(t.clone());
        }
        if let Some(f) = u.requester_flow {
            leg.flow = Some(f);
        }
        if let Some(t) = &u.responder_target {
            self.leg_mut(responder).target = Some(t.clone());
        }
        if u.session_expires.is_some() {
            self.session_expires = u.session_expires;
        }
        true
    }
}
