//! A dialog record as the fields of a Redis hash (layout in `docs/REDIS.md`): readable with
//! `HGETALL`, one field per fact, so operators and other tools can inspect a call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use sipmesh_protocol::dialog::{DialogId, DialogPhase, DialogState, Leg, MediaNegotiation};
use sipmesh_protocol::peer::{ConnectionId, Destination, Transport};

use super::store::DialogStoreError;

/// Separator of route-set values inside one field (a header value never holds a line break).
const ROUTE_SEPARATOR: char = '\n';

/// A flow as text: `udp:10.0.0.1:5060`, then `;local=ADDR` and `;conn=N` when known.
pub fn encode_flow(d: &Destination) -> String {
    let mut s = format!(
        "{}:{}",
        d.transport.via_token().to_ascii_lowercase(),
        d.addr
    );
    if let Some(local) = d.local {
        s.push_str(&format!(";local={local}"));
    }
    if let Some(c) = d.connection {
        s.push_str(&format!(";conn={}", c.0));
    }
    s
}

/// Reads [`encode_flow`] back.
pub fn decode_flow(s: &str) -> Option<Destination> {
    let mut parts = s.split(';');
    let (transport, addr) = parts.next()?.split_once(':')?;
    let mut d = Destination {
        transport: Transport::from_token(transport)?,
        addr: addr.parse::<SocketAddr>().ok()?,
        local: None,
        connection: None,
    };
    for p in parts {
        match p.split_once('=')? {
            ("local", v) => d.local = Some(v.parse().ok()?),
            ("conn", v) => d.connection = Some(ConnectionId(v.parse().ok()?)),
            _ => return None,
        }
    }
    Some(d)
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn leg_fields(prefix: &'static str, leg: &Leg, out: &mut Vec<(String, String)>) {
    let mut put = |name: &str, value: String| out.push((format!("{prefix}_{name}"), value));
    put("uri", leg.uri.clone());
    put("tag", leg.tag.clone());
    if let Some(t) = &leg.target {
        put("target", t.clone());
    }
    put("route", leg.route_set.join(&ROUTE_SEPARATOR.to_string()));
    if let Some(c) = leg.cseq {
        put("cseq", c.to_string());
    }
    if let Some(f) = &leg.flow {
        put("flow", encode_flow(f));
    }
    if let Some(a) = &leg.allow {
        put("allow", a.clone());
    }
}

/// The hash fields of a record.
pub fn encode(state: &DialogState) -> Vec<(String, String)> {
    let mut out = vec![
        ("state".to_owned(), state.phase.as_str().to_owned()),
        ("call_id".to_owned(), state.id.call_id.clone()),
        ("created_ms".to_owned(), millis(state.created).to_string()),
        ("timeout_s".to_owned(), state.timeout.as_secs().to_string()),
    ];
    if let Some(c) = state.confirmed {
        out.push(("confirmed_ms".to_owned(), millis(c).to_string()));
    }
    if let Some(m) = &state.media_session {
        out.push(("media_session".to_owned(), m.clone()));
    }
    if let Some(n) = &state.media_negotiation {
        out.push(("media_offer".to_owned(), n.offer.clone()));
        out.push(("media_answer".to_owned(), n.answer.clone()));
    }
    if let Some(se) = state.session_expires {
        out.push(("session_expires_s".to_owned(), se.as_secs().to_string()));
    }
    leg_fields("caller", &state.caller, &mut out);
    leg_fields("callee", &state.callee, &mut out);
    out
}

fn leg(prefix: &str, f: &HashMap<String, String>) -> Result<Leg, DialogStoreError> {
    let get = |name: &str| f.get(&format!("{prefix}_{name}"));
    Ok(Leg {
        uri: get("uri")
            .cloned()
            .ok_or(DialogStoreError::BadRecord("uri"))?,
        tag: get("tag")
            .cloned()
            .ok_or(DialogStoreError::BadRecord("tag"))?,
        target: get("target").cloned(),
        route_set: get("route")
            .map(|r| {
                r.split(ROUTE_SEPARATOR)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        cseq: get("cseq")
            .map(|c| c.parse().map_err(|_| DialogStoreError::BadRecord("cseq")))
            .transpose()?,
        flow: get("flow")
            .map(|v| decode_flow(v).ok_or(DialogStoreError::BadRecord("flow")))
            .transpose()?,
        allow: get("allow").cloned(),
    })
}

fn number(
    f: &HashMap<String, String>,
    name: &'static str,
) -> Result<Option<u64>, DialogStoreError> {
    f.get(name)
        .map(|v| v.parse().map_err(|_| DialogStoreError::BadRecord(name)))
        .transpose()
}

/// Reads the fields written by [`encode`].
pub fn decode(f: &HashMap<String, String>) -> Result<DialogState, DialogStoreError> {
    let phase = f
        .get("state")
        .and_then(|s| DialogPhase::from_name(s))
        .ok_or(DialogStoreError::BadRecord("state"))?;
    let call_id = f
        .get("call_id")
        .cloned()
        .ok_or(DialogStoreError::BadRecord("call_id"))?;
    let caller = leg("caller", f)?;
    let callee = leg("callee", f)?;
    let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    Ok(DialogState {
        id: DialogId::new(call_id, caller.tag.clone(), callee.tag.clone()),
        phase,
        caller,
        callee,
        created: at(number(f, "created_ms")?.unwrap_or_default()),
        confirmed: number(f, "confirmed_ms")?.map(at),
        media_session: f.get("media_session").cloned(),
        media_negotiation: match (f.get("media_offer"), f.get("media_answer")) {
            (Some(offer), Some(answer)) => Some(MediaNegotiation {
                offer: offer.clone(),
                answer: answer.clone(),
            }),
            _ => None,
        },
        session_expires: number(f, "session_expires_s")?.map(Duration::from_secs),
        timeout: Duration::from_secs(
            number(f, "timeout_s")?.ok_or(DialogStoreError::BadRecord("timeout_s"))?,
        ),
    })
}
