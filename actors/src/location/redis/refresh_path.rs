//! Tests of the register script's refresh fast path (`register_rules.lua`, `refresh_value`;
//! docs/REDIS.md "Script cost") against a real `redis-server`: the node's Contact argument is
//! byte for byte what `cmsgpack.pack` writes, a plain refresh is answered by the fast path (the
//! new value alone) and leaves exactly what the general rules would, and every case the fast
//! path must not decide reaches the general rules.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use ::redis::{Connection, Value};
use bytes::Bytes;
use sipmesh_protocol::peer::{ConnectionId, Transport};
use sipmesh_protocol::registrar::{Binding, Source};
use sipmesh_test_support::RedisServer;

use super::codec::{binding_args, decode_set, millis};
use super::{LAYOUT_SINGLE_LUA, REGISTER_LUA, REGISTER_MANY_LUA, REGISTER_PRELUDE_LUA};

const AOR: &str = "sip:alice@example.test";
const AOR_KEY: &str = "t:aor:sip:alice@example.test";
const EXP_KEY: &str = "t:exp";
const COUNT_KEY: &str = "t:bindings";
const CLOSED_KEY: &str = "t:closed:sip:alice@example.test";
const T0_MS: u64 = 1_764_000_000_000;

fn connect(server: &RedisServer) -> Connection {
    ::redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn binding(contact: &str, call_id: &str, cseq: u32) -> Binding {
    Binding {
        contact: Bytes::from(contact.to_owned()),
        q: 1000,
        expires_at: SystemTime::UNIX_EPOCH + Duration::from_millis(T0_MS + 3_600_000),
        call_id: Bytes::from(call_id.to_owned()),
        cseq,
        path: Vec::new(),
        instance: None,
        reg_id: None,
        source: Source {
            remote: SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 5070)),
            transport: Transport::Udp,
            local: SocketAddr::from((Ipv4Addr::new(192, 0, 2, 9), 5060)),
            connection: None,
        },
    }
}

fn arg(b: &Binding, expires_at_ms: u64) -> Vec<u8> {
    let [arg] = binding_args(b, expires_at_ms, "node-a");
    arg
}

/// One REGISTER through the one-AOR script (single-server layout), unfenced.
fn register(
    conn: &mut Connection,
    now_ms: u64,
    mode: &str,
    call_id: &str,
    cseq: u32,
    contacts: &[&[u8]],
) -> Value {
    let script = format!("{REGISTER_PRELUDE_LUA}\n{LAYOUT_SINGLE_LUA}\n{REGISTER_LUA}");
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(script)
        .arg(4)
        .arg(AOR_KEY)
        .arg(EXP_KEY)
        .arg(COUNT_KEY)
        .arg(CLOSED_KEY)
        .arg(now_ms)
        .arg(mode)
        .arg(call_id)
        .arg(cseq)
        .arg(10)
        .arg(AOR)
        .arg("t:conn:")
        .arg("");
    for c in contacts {
        cmd.arg(*c);
    }
    cmd.query(conn)
        .unwrap_or_else(|e| panic!("register script: {e}"))
}

fn get(conn: &mut Connection, args: &[&str]) -> Value {
    let mut cmd = ::redis::cmd(args.first().copied().unwrap_or("PING"));
    for a in args.iter().skip(1) {
        cmd.arg(*a);
    }
    cmd.query(conn).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn stored(conn: &mut Connection) -> Vec<u8> {
    match get(conn, &["GET", AOR_KEY]) {
        Value::BulkString(v) => v,
        other => panic!("no AOR value: {other:?}"),
    }
}

fn score(conn: &mut Connection) -> Value {
    get(conn, &["ZSCORE", EXP_KEY, AOR])
}

fn is_fast(reply: &Value) -> bool {
    matches!(reply, Value::BulkString(_))
}

fn status(reply: &Value) -> Option<&[u8]> {
    match reply {
        Value::Array(items) => match items.first() {
            Some(Value::BulkString(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn location_contact_argument_is_what_cmsgpack_writes() {
    let server = RedisServer::start();
    let mut conn = connect(&server);
    let mut cases = Vec::new();
    for call_id_len in [1, 31, 32, 255, 256, 70_000] {
        for cseq in [0, 127, 128, 255, 256, 65_535, 65_536, u32::MAX] {
            cases.push(binding("sip:a@192.0.2.1", &"c".repeat(call_id_len), cseq));
        }
    }
    let mut flow = binding("sip:a@[2001:db8::1]:5061;transport=tls;ob", "f@h", 7);
    flow.instance = Some(Bytes::from_static(
        b"\"<urn:uuid:00000000-0000-1000-8000-000000000001>\"",
    ));
    flow.reg_id = Some(2);
    flow.path = vec![
        Bytes::from_static(b"<sip:edge.example.test;lr>"),
        Bytes::new(),
    ];
    flow.source.transport = Transport::Tls;
    flow.source.connection = Some(ConnectionId(u64::MAX));
    cases.push(flow.clone());
    flow.reg_id = None;
    cases.push(flow);
    for b in &cases {
        for exp in [0, 1, millis(b.expires_at)] {
            let a = arg(b, exp);
            let repacked = ::redis::cmd("EVAL")
                .arg("return cmsgpack.pack({cmsgpack.unpack(ARGV[1])[1]})")
                .arg(0)
                .arg(a.as_slice())
                .query::<Vec<u8>>(&mut conn)
                .unwrap_or_else(|e| panic!("repack: {e}"));
            assert!(repacked == a, "cmsgpack writes another form for {b:?}");
            let mut expected = b.clone();
            expected.expires_at = SystemTime::UNIX_EPOCH + Duration::from_millis(exp);
            assert_eq!(decode_set(&Bytes::from(a)), Ok(vec![expected]));
        }
    }
}

#[test]
fn location_plain_refresh_is_one_write_of_the_argument() {
    let server = RedisServer::start();
    let mut conn = connect(&server);
    let b = binding("sip:alice@192.0.2.1:5070", "first@ua", 1);
    let first = arg(&b, T0_MS + 3_600_000);
    let reply = register(&mut conn, T0_MS, "L", "first@ua", 1, &[&first]);
    assert_eq!(status(&reply), Some(&b"OK"[..]), "{reply:?}");
    assert_eq!(
        stored(&mut conn),
        first,
        "a first registration stores the argument's bytes"
    );
    let score0 = score(&mut conn);

    // A new Call-ID, a later expiry: the fast path answers with the value alone.
    let mut r = b.clone();
    r.call_id = Bytes::from_static(b"second@ua");
    let refresh = arg(&r, T0_MS + 3_601_000);
    let reply = register(&mut conn, T0_MS + 1_000, "L", "second@ua", 1, &[&refresh]);
    assert_eq!(reply, Value::BulkString(refresh.clone()));
    assert_eq!(stored(&mut conn), refresh);
    assert_eq!(score(&mut conn), score0, "the index keeps its lower bound");
    assert_eq!(
        get(&mut conn, &["GET", COUNT_KEY]),
        Value::BulkString(b"1".to_vec())
    );

    // The same Call-ID: a higher CSeq refreshes, the same or a lower one is refused.
    let mut same = r.clone();
    same.cseq = 2;
    let next = arg(&same, T0_MS + 3_602_000);
    let reply = register(&mut conn, T0_MS + 2_000, "L", "second@ua", 2, &[&next]);
    assert_eq!(reply, Value::BulkString(next.clone()));
    for cseq in [2, 1] {
        same.cseq = cseq;
        let again = arg(&same, T0_MS + 3_603_000);
        let reply = register(&mut conn, T0_MS + 3_000, "L", "second@ua", cseq, &[&again]);
        assert_eq!(status(&reply), Some(&b"CSEQ"[..]), "{reply:?}");
        assert_eq!(stored(&mut conn), next, "a refused refresh writes nothing");
    }
    // A Call-ID of the same length with another text is a new Call-ID: CSeq 1 is fine.
    let mut other = r;
    other.call_id = Bytes::from_static(b"secont@ua");
    let renamed = arg(&other, T0_MS + 3_604_000);
    let reply = register(&mut conn, T0_MS + 4_000, "L", "secont@ua", 1, &[&renamed]);
    assert_eq!(reply, Value::BulkString(renamed));

    // A Call-ID longer than 31 bytes (a `str 8` item) takes the fast path too.
    let long_id = "l".repeat(40);
    let mut long = b;
    long.call_id = Bytes::from(long_id.clone());
    let long_arg = arg(&long, T0_MS + 3_605_000);
    let reply = register(&mut conn, T0_MS + 5_000, "L", &long_id, 1, &[&long_arg]);
    assert_eq!(reply, Value::BulkString(long_arg.clone()));
    let reply = register(&mut conn, T0_MS + 6_000, "L", &long_id, 1, &[&long_arg]);
    assert_eq!(status(&reply), Some(&b"CSEQ"[..]), "{reply:?}");
}

#[test]
fn location_what_the_fast_path_leaves_to_the_rules() {
    let server = RedisServer::start();
    let mut conn = connect(&server);
    let b = binding("sip:alice@192.0.2.1:5070", "c@ua", 1);
    let exp = T0_MS + 3_600_000;
    assert!(!is_fast(&register(
        &mut conn,
        T0_MS,
        "L",
        "c@ua",
        1,
        &[&arg(&b, exp)]
    )));

    // An earlier expiry: the rules move the index score forward.
    let mut r = b;
    r.cseq = 2;
    let reply = register(
        &mut conn,
        T0_MS + 1,
        "L",
        "c@ua",
        2,
        &[&arg(&r, exp - 60_000)],
    );
    assert_eq!(status(&reply), Some(&b"OK"[..]), "{reply:?}");
    assert_eq!(
        score(&mut conn),
        Value::BulkString((exp - 60_000).to_string().into_bytes())
    );

    // Other bytes after the CSeq (another source address): the rules replace the binding.
    r.cseq = 3;
    r.source.remote = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 2), 5070));
    let moved = arg(&r, exp);
    let reply = register(&mut conn, T0_MS + 2, "L", "c@ua", 3, &[&moved]);
    assert_eq!(status(&reply), Some(&b"OK"[..]), "{reply:?}");
    assert_eq!(stored(&mut conn), moved);

    // Another Contact: a second binding.
    let other = binding("sip:alice@192.0.2.3:5070", "c@ua", 4);
    let reply = register(&mut conn, T0_MS + 3, "L", "c@ua", 4, &[&arg(&other, exp)]);
    assert_eq!(status(&reply), Some(&b"OK"[..]), "{reply:?}");
    let two = decode_set(&Bytes::from(stored(&mut conn))).map(|s| s.len());
    assert_eq!(two, Ok(2));

    // Two bindings stored: never the fast path, even for a plain refresh of one of them.
    r.cseq = 5;
    let reply = register(&mut conn, T0_MS + 4, "L", "c@ua", 5, &[&arg(&r, exp + 1)]);
    assert_eq!(status(&reply), Some(&b"OK"[..]), "{reply:?}");

    // Removal of the second one, then a refresh after the stored binding expired.
    let mut gone = other;
    gone.cseq = 6;
    let reply = register(&mut conn, T0_MS + 5, "L", "c@ua", 6, &[&arg(&gone, 0)]);
    assert_eq!(status(&reply), Some(&b"OK"[..]), "{reply:?}");
    r.cseq = 7;
    let late = exp + 10_000;
    let reply = register(
        &mut conn,
        late,
        "L",
        "c@ua",
        7,
        &[&arg(&r, late + 3_600_000)],
    );
    assert_eq!(status(&reply), Some(&b"OK"[..]), "{reply:?}");

    // A removal of the only binding, and a query: both for the rules.
    r.cseq = 8;
    let reply = register(&mut conn, late + 1, "L", "c@ua", 8, &[&arg(&r, 0)]);
    assert_eq!(status(&reply), Some(&b"OK"[..]), "{reply:?}");
    assert_eq!(get(&mut conn, &["EXISTS", AOR_KEY]), Value::Int(0));
    assert_eq!(
        get(&mut conn, &["GET", COUNT_KEY]),
        Value::BulkString(b"0".to_vec())
    );
    let reply = register(&mut conn, late + 2, "Q", "c@ua", 9, &[]);
    assert_eq!(status(&reply), Some(&b"OK"[..]), "{reply:?}");
}

#[test]
fn location_several_aors_call_takes_the_fast_path_per_register() {
    let server = RedisServer::start();
    let mut conn = connect(&server);
    let script = format!("{REGISTER_PRELUDE_LUA}\n{REGISTER_MANY_LUA}");
    let b = binding("sip:alice@192.0.2.1:5070", "m@ua", 1);
    let mut r = b.clone();
    r.cseq = 2;
    // The same AOR three times in one call: a first registration, a refresh, a repeated CSeq.
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(script).arg(8).arg(EXP_KEY).arg(COUNT_KEY);
    for _ in 0..3 {
        cmd.arg(AOR_KEY).arg(CLOSED_KEY);
    }
    cmd.arg("t:conn:").arg("");
    let refresh = arg(&r, T0_MS + 3_601_000);
    for (cseq, a) in [
        (1, arg(&b, T0_MS + 3_600_000)),
        (2, refresh.clone()),
        (2, refresh.clone()),
    ] {
        cmd.arg(T0_MS)
            .arg("L")
            .arg("m@ua")
            .arg(cseq)
            .arg(10)
            .arg(AOR)
            .arg(1)
            .arg(a);
    }
    let reply: Vec<Value> = cmd
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("register_many: {e}"));
    let [first, second, third] = reply.as_slice() else {
        panic!("three replies: {reply:?}");
    };
    assert_eq!(status(first), Some(&b"OK"[..]), "{first:?}");
    assert_eq!(second, &Value::BulkString(refresh.clone()));
    assert_eq!(status(third), Some(&b"CSEQ"[..]), "{third:?}");
    assert_eq!(stored(&mut conn), refresh);
}
