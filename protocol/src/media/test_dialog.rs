//! A confirmed dialog between alice and bob through one proxy, shared by the unit tests of
//! the node-originated requests (BYE, failover re-INVITE).

use std::time::{Duration, SystemTime};

use crate::dialog::{DialogId, DialogPhase, DialogState, Leg};
use crate::peer::{Destination, Transport};

fn flow(addr: &str) -> Option<Destination> {
    Some(Destination {
        transport: Transport::Udp,
        addr: addr.parse().unwrap(),
        local: None,
        connection: None,
    })
}

pub(crate) fn dialog() -> DialogState {
    let proxy_rr = "<sip:10.0.0.1:5060;lr>".to_owned();
    DialogState {
        id: DialogId::new("c1", "atag", "btag"),
        phase: DialogPhase::Confirmed,
        caller: Leg {
            uri: "sip:alice@example.com".into(),
            tag: "atag".into(),
            target: Some("sip:alice@10.0.0.2:5070".into()),
            route_set: vec![proxy_rr.clone()],
            cseq: Some(1),
            flow: flow("10.0.0.2:5070"),
            allow: None,
        },
        callee: Leg {
            uri: "sip:bob@example.com".into(),
            tag: "btag".into(),
            target: Some("sip:bob@10.0.0.3:5080".into()),
            route_set: vec![proxy_rr, "<sip:10.9.9.9;lr>".into()],
            cseq: None,
            flow: flow("10.0.0.3:5080"),
            allow: None,
        },
        created: SystemTime::UNIX_EPOCH,
        confirmed: None,
        media_session: None,
        media_negotiation: None,
        session_expires: None,
        timeout: Duration::from_secs(60),
    }
}
