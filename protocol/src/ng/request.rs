//! Typed ng requests: ping, offer, answer, delete, query, list and statistics.
//!
//! Each request becomes a bencode dictionary with a `command` key (rtpengine's
//! `docs/ng_control_protocol.md`). Media options carry the keys sipmesh needs (`flags`,
//! `replace`, `rtcp-mux`, `ICE`, `DTLS`, `transport-protocol`, `direction`); anything else goes
//! through [`MediaOptions::extra`] untouched.

use bytes::Bytes;

use super::bencode::{Dict, Value};

/// The dialog a request is about: Call-ID and tags (RFC 3261 §12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRef {
    /// `call-id`.
    pub call_id: String,
    /// `from-tag`: the caller's tag. Optional for `delete` and `query` (the whole call).
    pub from_tag: Option<String>,
    /// `to-tag`: required for `answer`, optional elsewhere.
    pub to_tag: Option<String>,
}

impl CallRef {
    /// A call and its caller's tag.
    pub fn new(call_id: impl Into<String>, from_tag: impl Into<String>) -> Self {
        Self {
            call_id: call_id.into(),
            from_tag: Some(from_tag.into()),
            to_tag: None,
        }
    }

    /// The same with a `to-tag`.
    pub fn with_to_tag(mut self, to_tag: impl Into<String>) -> Self {
        self.to_tag = Some(to_tag.into());
        self
    }

    fn write(&self, d: &mut Dict) {
        put_str(d, "call-id", &self.call_id);
        if let Some(t) = &self.from_tag {
            put_str(d, "from-tag", t);
        }
        if let Some(t) = &self.to_tag {
            put_str(d, "to-tag", t);
        }
    }
}

/// The `ICE` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceMode {
    /// `remove`: strip ICE attributes (legacy leg).
    Remove,
    /// `force`: offer rtpengine's own candidates (browser leg).
    Force,
    /// `default`.
    Default,
}

/// The `DTLS` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsMode {
    /// `off`: no DTLS on this side.
    Off,
    /// `passive`: rtpengine waits for the peer's ClientHello.
    Passive,
    /// `active`.
    Active,
}

/// Options of an `offer` or `answer` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaOptions {
    /// `flags`, for example `trust-address`, `symmetric`, `strict-source`.
    pub flags: Vec<String>,
    /// `replace`, for example `origin`, `session-connection`.
    pub replace: Vec<String>,
    /// `rtcp-mux`, for example `demux`, `offer`, `accept`, `require`.
    pub rtcp_mux: Vec<String>,
    /// `ICE`.
    pub ice: Option<IceMode>,
    /// `DTLS`.
    pub dtls: Option<DtlsMode>,
    /// `transport-protocol`, for example `RTP/AVP` or `UDP/TLS/RTP/SAVPF`.
    pub transport_protocol: Option<String>,
    /// `direction`: the two interfaces (`internal`, `external`…), when configured.
    pub direction: Vec<String>,
    /// Further keys, written as given (they override nothing above).
    pub extra: Dict,
}

impl MediaOptions {
    fn write(&self, d: &mut Dict) {
        for (k, v) in &self.extra {
            d.insert(k.clone(), v.clone());
        }
        put_list(d, "flags", &self.flags);
        put_list(d, "replace", &self.replace);
        put_list(d, "rtcp-mux", &self.rtcp_mux);
        put_list(d, "direction", &self.direction);
        if let Some(ice) = self.ice {
            let v = match ice {
                IceMode::Remove => "remove",
                IceMode::Force => "force",
                IceMode::Default => "default",
            };
            put_str(d, "ICE", v);
        }
        if let Some(dtls) = self.dtls {
            let v = match dtls {
                DtlsMode::Off => "off",
                DtlsMode::Passive => "passive",
                DtlsMode::Active => "active",
            };
            put_str(d, "DTLS", v);
        }
        if let Some(p) = &self.transport_protocol {
            put_str(d, "transport-protocol", p);
        }
    }
}

/// An SDP to rewrite, for one side of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpRequest {
    /// The call and tags (`to-tag` is required for `answer`).
    pub call: CallRef,
    /// The SDP body as received.
    pub sdp: Bytes,
    /// What rtpengine should do with it.
    pub options: MediaOptions,
}

/// One ng command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `ping`: liveness; the reply is `result: pong`.
    Ping,
    /// `offer`: the SDP offer from the caller's side.
    Offer(SdpRequest),
    /// `answer`: the SDP answer from the callee's side.
    Answer(SdpRequest),
    /// `delete`: ends the call (or one branch, with tags).
    Delete(CallRef),
    /// `delete` of one losing branch of a forked call (issue 6): the branch answered with the
    /// call's `to-tag`, or, without one, the offer made with `via_branch`. The call and its
    /// other branches stay. Measured against rtpengine 10.5: once another branch has
    /// answered, a delete naming the loser's `to-tag` releases that branch's ports and
    /// `query` still lists its tag, without ports; a delete with `from-tag` and `via-branch`
    /// does the same for an offer's branch that no answer named. A tagged delete of the only
    /// answered branch ends the whole call (so the proxy sends one only after another branch
    /// answered).
    DeleteBranch {
        /// The call, the offerer's `from-tag` and, for an answered branch, its `to-tag`.
        call: CallRef,
        /// `via-branch` of the offer, for a branch no answer named.
        via_branch: Option<String>,
    },
    /// `query`: the call's state and counters.
    Query(CallRef),
    /// `list`: the Call-IDs rtpengine knows, at most `limit` of them (rtpengine 10.5 returns
    /// 32 when no limit is given).
    List {
        /// `limit`, when set.
        limit: Option<u32>,
    },
    /// `statistics`: the daemon's global counters.
    Statistics,
}

impl Request {
    /// The `command` value.
    pub fn command(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Offer(_) => "offer",
            Self::Answer(_) => "answer",
            Self::Delete(_) | Self::DeleteBranch { .. } => "delete",
            Self::Query(_) => "query",
            Self::List { .. } => "list",
            Self::Statistics => "statistics",
        }
    }

    /// The request dictionary.
    pub fn to_dict(&self) -> Dict {
        let mut d = Dict::new();
        match self {
            Self::Ping | Self::Statistics => {}
            Self::Offer(r) | Self::Answer(r) => {
                r.options.write(&mut d);
                r.call.write(&mut d);
                d.insert(Bytes::from_static(b"sdp"), Value::Bytes(r.sdp.clone()));
            }
            Self::Delete(c) | Self::Query(c) => c.write(&mut d),
            Self::DeleteBranch { call, via_branch } => {
                call.write(&mut d);
                if let Some(b) = via_branch {
                    put_str(&mut d, "via-branch", b);
                }
            }
            Self::List { limit } => {
                if let Some(l) = limit {
                    d.insert(Bytes::from_static(b"limit"), Value::Int(i64::from(*l)));
                }
            }
        }
        put_str(&mut d, "command", self.command());
        d
    }
}

impl SdpRequest {
    /// Reads back an `offer` or `answer` written by [`Request::to_dict`] (issue 6: a call's
    /// last accepted offer and answer are kept in its dialog record so that the node that
    /// adopts the call can replay them); `None` for other commands or a malformed dict.
    /// Keys this type does not name go to [`MediaOptions::extra`].
    pub fn from_dict(d: &Dict) -> Option<Request> {
        let text = |key: &str| {
            d.get(key.as_bytes())
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let list = |key: &str| -> Vec<String> {
            d.get(key.as_bytes())
                .and_then(Value::as_list)
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let ice = match text("ICE").as_deref() {
            None => None,
            Some("remove") => Some(IceMode::Remove),
            Some("force") => Some(IceMode::Force),
            Some("default") => Some(IceMode::Default),
            Some(_) => return None,
        };
        let dtls = match text("DTLS").as_deref() {
            None => None,
            Some("off") => Some(DtlsMode::Off),
            Some("passive") => Some(DtlsMode::Passive),
            Some("active") => Some(DtlsMode::Active),
            Some(_) => return None,
        };
        const NAMED: [&str; 12] = [
            "command",
            "call-id",
            "from-tag",
            "to-tag",
            "sdp",
            "flags",
            "replace",
            "rtcp-mux",
            "direction",
            "ICE",
            "DTLS",
            "transport-protocol",
        ];
        let extra = d
            .iter()
            .filter(|(k, _)| !NAMED.iter().any(|n| n.as_bytes() == k.as_ref()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let request = Self {
            call: CallRef {
                call_id: text("call-id")?,
                from_tag: text("from-tag"),
                to_tag: text("to-tag"),
            },
            sdp: d.get(&b"sdp"[..]).and_then(Value::as_bytes)?.clone(),
            options: MediaOptions {
                flags: list("flags"),
                replace: list("replace"),
                rtcp_mux: list("rtcp-mux"),
                ice,
                dtls,
                transport_protocol: text("transport-protocol"),
                direction: list("direction"),
                extra,
            },
        };
        match text("command").as_deref() {
            Some("offer") => Some(Request::Offer(request)),
            Some("answer") => Some(Request::Answer(request)),
            _ => None,
        }
    }
}

fn put_str(d: &mut Dict, key: &'static str, value: &str) {
    d.insert(Bytes::from_static(key.as_bytes()), Value::str(value));
}

fn put_list(d: &mut Dict, key: &'static str, values: &[String]) {
    if !values.is_empty() {
        let list = values.iter().map(|v| Value::str(v)).collect();
        d.insert(Bytes::from_static(key.as_bytes()), Value::List(list));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_is_just_the_command() {
        assert_eq!(
            Value::Dict(Request::Ping.to_dict()).encode(),
            b"d7:command4:pinge"
        );
    }

    #[test]
    fn offer_carries_all_options_sorted() {
        let req = Request::Offer(SdpRequest {
            call: CallRef::new("c1", "f1"),
            sdp: Bytes::from_static(b"v=0\r\n"),
            options: MediaOptions {
                flags: vec!["trust-address".into()],
                replace: vec!["origin".into()],
                rtcp_mux: vec!["demux".into()],
                ice: Some(IceMode::Remove),
                dtls: Some(DtlsMode::Off),
                transport_protocol: Some("RTP/AVP".into()),
                direction: vec![],
                extra: Dict::new(),
            },
        });
        let wire = String::from_utf8(Value::Dict(req.to_dict()).encode()).unwrap();
        assert_eq!(
            wire,
            "d4:DTLS3:off3:ICE6:remove7:call-id2:c17:command5:offer5:flagsl13:trust-addresse\
             8:from-tag2:f17:replacel6:origine8:rtcp-muxl5:demuxe3:sdp5:v=0\r\n\
             18:transport-protocol7:RTP/AVPe"
        );
    }

    #[test]
    fn an_offer_and_an_answer_read_back_from_their_dicts() {
        let mut extra = Dict::new();
        extra.insert(Bytes::from_static(b"via-branch"), Value::str("browser"));
        let offer = Request::Offer(SdpRequest {
            call: CallRef::new("c1", "f1"),
            sdp: Bytes::from_static(b"v=0\r\n"),
            options: MediaOptions {
                flags: vec!["trust-address".into(), "SDES-off".into()],
                replace: vec!["origin".into()],
                rtcp_mux: vec!["offer".into(), "require".into()],
                ice: Some(IceMode::Force),
                dtls: Some(DtlsMode::Passive),
                transport_protocol: Some("UDP/TLS/RTP/SAVPF".into()),
                direction: vec!["internal".into(), "external".into()],
                extra,
            },
        });
        assert_eq!(SdpRequest::from_dict(&offer.to_dict()), Some(offer));
        let answer = Request::Answer(SdpRequest {
            call: CallRef::new("c1", "f1").with_to_tag("t1"),
            sdp: Bytes::from_static(b"v=0\r\n"),
            options: MediaOptions::default(),
        });
        assert_eq!(SdpRequest::from_dict(&answer.to_dict()), Some(answer));
        let delete = Request::Delete(CallRef::new("c", "f"));
        assert_eq!(SdpRequest::from_dict(&delete.to_dict()), None);
    }

    #[test]
    fn delete_and_list() {
        let del = Request::Delete(CallRef::new("c", "f").with_to_tag("t"));
        assert_eq!(
            Value::Dict(del.to_dict()).encode(),
            b"d7:call-id1:c7:command6:delete8:from-tag1:f6:to-tag1:te"
        );
        let branch = Request::DeleteBranch {
            call: CallRef::new("c", "f"),
            via_branch: Some("browser".into()),
        };
        assert_eq!(
            Value::Dict(branch.to_dict()).encode(),
            b"d7:call-id1:c7:command6:delete8:from-tag1:f10:via-branch7:browsere"
        );
        let list = Request::List { limit: Some(10) };
        assert_eq!(
            Value::Dict(list.to_dict()).encode(),
            b"d7:command4:list5:limiti10ee"
        );
    }
}
