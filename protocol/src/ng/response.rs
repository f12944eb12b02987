//! Typed ng replies.
//!
//! Every reply is a dictionary with a `result`: `ok`, `pong` (to a ping), `error` (with an
//! `error-reason`) or `load limit` (rtpengine refuses new calls). A [`Response`] keeps the keys
//! sipmesh reads as typed fields and the whole dictionary in [`Response::raw`], so nothing a
//! newer rtpengine adds is lost.

use bytes::Bytes;

use super::bencode::{Dict, Value};

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `result: pong` rather than `ok`.
    pub pong: bool,
    /// `sdp`: the rewritten SDP of an offer or answer.
    pub sdp: Option<Bytes>,
    /// `warning`, when rtpengine had something to say about a successful request.
    pub warning: Option<String>,
    /// `calls`: the Call-IDs of a `list` reply (empty otherwise).
    pub calls: Vec<String>,
    /// `created`: the call's creation time (Unix seconds) in a `query` reply.
    pub created: Option<i64>,
    /// The whole reply dictionary, including the keys above and any unknown ones.
    pub raw: Dict,
}

/// A reply that is not a success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// `result: error` with its `error-reason`.
    #[error("rtpengine refused: {reason}")]
    Refused {
        /// `error-reason` (empty when missing).
        reason: String,
    },
    /// `result: load limit`: rtpengine is over its configured load.
    #[error("rtpengine is at its load limit")]
    LoadLimit,
    /// No `result`, or one that is not a string.
    #[error("reply has no result")]
    NoResult,
    /// A `result` this client does not know.
    #[error("unknown result {0:?}")]
    UnknownResult(String),
}

fn get<'a>(d: &'a Dict, key: &str) -> Option<&'a Value> {
    d.get(key.as_bytes())
}

impl Response {
    /// Reads a reply dictionary.
    pub fn from_dict(raw: Dict) -> Result<Self, ReplyError> {
        let result = get(&raw, "result")
            .and_then(Value::as_str)
            .ok_or(ReplyError::NoResult)?;
        let pong = match result {
            "ok" => false,
            "pong" => true,
            "error" => {
                let reason = get(&raw, "error-reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                return Err(ReplyError::Refused { reason });
            }
            "load limit" => return Err(ReplyError::LoadLimit),
            other => return Err(ReplyError::UnknownResult(other.to_owned())),
        };
        let sdp = get(&raw, "sdp").and_then(Value::as_bytes).cloned();
        let warning = get(&raw, "warning")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let calls = get(&raw, "calls")
            .and_then(Value::as_list)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let created = get(&raw, "created").and_then(Value::as_int);
        Ok(Self {
            pong,
            sdp,
            warning,
            calls,
            created,
            raw,
        })
    }

    /// A key of the raw reply.
    pub fn get(&self, key: &str) -> Option<&Value> {
        get(&self.raw, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ng::bencode::decode;

    fn dict(s: &'static str) -> Dict {
        match decode(&Bytes::from_static(s.as_bytes())) {
            Ok(Value::Dict(d)) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pong_ok_and_error() {
        assert!(Response::from_dict(dict("d6:result4:ponge")).unwrap().pong);
        let ok = Response::from_dict(dict("d6:result2:ok3:sdp3:v=07:unknowni3ee")).unwrap();
        assert!(!ok.pong);
        assert_eq!(ok.sdp.as_deref(), Some(&b"v=0"[..]));
        assert_eq!(ok.get("unknown"), Some(&Value::Int(3)));
        assert_eq!(
            Response::from_dict(dict("d12:error-reason12:Unknown call6:result5:errore")),
            Err(ReplyError::Refused {
                reason: "Unknown call".into()
            })
        );
        assert_eq!(
            Response::from_dict(dict("d6:result10:load limite")),
            Err(ReplyError::LoadLimit)
        );
        assert_eq!(Response::from_dict(dict("de")), Err(ReplyError::NoResult));
        assert_eq!(
            Response::from_dict(dict("d6:result3:fooe")),
            Err(ReplyError::UnknownResult("foo".into()))
        );
    }

    #[test]
    fn list_reply() {
        let r = Response::from_dict(dict("d5:callsl2:c12:c2e6:result2:oke")).unwrap();
        assert_eq!(r.calls, ["c1", "c2"]);
    }
}
