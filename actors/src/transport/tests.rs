//! Loopback tests of the transport: real sockets on 127.0.0.1 / [::1] with port 0.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::*;

const WAIT: Duration = Duration::from_secs(5);

type Events = mpsc::UnboundedReceiver<InboundEvent>;

fn v4() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

fn v6() -> SocketAddr {
    SocketAddr::from((Ipv6Addr::LOCALHOST, 0))
}

fn sip(n: usize) -> Vec<u8> {
    format!("OPTIONS sip:n@example.com SIP/2.0\r\nCall-ID: {n}\r\nContent-Length: 0\r\n\r\n")
        .into_bytes()
}

fn sip_with_body(body: &str) -> Vec<u8> {
    format!(
        "MESSAGE sip:n@example.com SIP/2.0\r\nl: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn start_with(config: TransportConfig) -> (TransportHandle, JoinSet<()>, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (handle, tasks) = start(config, tx).await.expect("transport starts");
    (handle, tasks, rx)
}

async fn next(rx: &mut Events) -> InboundEvent {
    timeout(WAIT, rx.recv())
        .await
        .expect("event before timeout")
        .expect("sink open")
}

async fn next_message(rx: &mut Events) -> Inbound {
    match next(rx).await {
        InboundEvent::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    timeout(WAIT, stream.read_exact(&mut buf))
        .await
        .expect("read before timeout")
        .expect("read ok");
    buf
}

async fn expect_eof(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("EOF before timeout")
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn tcp_dest(addr: SocketAddr, connection: Option<ConnectionId>) -> Destination {
    Destination {
        transport: Transport::Tcp,
        addr,
        connection,
        local: None,
    }
}

async fn udp_roundtrip(bind: SocketAddr, direct: bool) {
    let mut config = TransportConfig::new(vec![(Transport::Udp, bind)]);
    config.udp_direct_send = direct;
    let (handle, _tasks, mut rx) = start_with(config).await;
    let server = handle.local_addr(Transport::Udp).expect("bound");
    assert_ne!(server.port(), 0);
    let client = UdpSocket::bind(SocketAddr::new(bind.ip(), 0))
        .await
        .unwrap();
    let client_addr = client.local_addr().unwrap();
    const N: usize = 300;
    for i in 0..N {
        client.send_to(&sip(i), server).await.unwrap();
    }
    for i in 0..N {
        let m = next_message(&mut rx).await;
        assert_eq!(m.data, sip(i));
        assert_eq!(m.source, client_addr);
        assert_eq!(m.local, server);
        assert_eq!(m.transport, Transport::Udp);
        assert_eq!(m.connection, None);
    }
    // Replies are queued without awaiting and go out in sendmmsg batches; rounds of 100 keep
    // the client's default receive buffer from overflowing.
    let dest = Destination {
        transport: Transport::Udp,
        addr: client_addr,
        connection: None,
        local: None,
    };
    let mut buf = vec![0u8; 2048];
    for round in 0..N / 100 {
        for i in round * 100..(round + 1) * 100 {
            handle.send(dest, Bytes::from(sip(i)));
        }
        for i in round * 100..(round + 1) * 100 {
            let (n, from) = timeout(WAIT, client.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("reply {i} not received; {:?}", handle.stats()))
                .unwrap();
            assert_eq!(from, server);
            assert_eq!(&buf[..n], sip(i).as_slice());
        }
    }
    assert_eq!(handle.stats(), StatsSnapshot::default());
}

#[tokio::test]
async fn udp_roundtrip_in_batches_v4() {
    udp_roundtrip(v4(), false).await;
}

#[tokio::test]
async fn udp_roundtrip_direct_v4() {
    udp_roundtrip(v4(), true).await;
}

#[tokio::test]
async fn udp_roundtrip_v6() {
    udp_roundtrip(v6(), true).await;
}

#[tokio::test]
async fn udp_too_large_datagram_is_reported() {
    let mut config = TransportConfig::new(vec![(Transport::Udp, v4())]);
    config.max_message_size = 100;
    let (handle, _tasks, mut rx) = start_with(config).await;
    let server = handle.local_addr(Transport::Udp).unwrap();
    let client = UdpSocket::bind(v4()).await.unwrap();
    client.send_to(&[b'a'; 100], server).await.unwrap();
    client.send_to(&[b'b'; 101], server).await.unwrap();
    assert_eq!(next_message(&mut rx).await.data.len(), 100);
    match next(&mut rx).await {
        InboundEvent::TooLarge {
            partial,
            transport: Transport::Udp,
            connection: None,
            ..
        } => assert_eq!(partial, Bytes::from_static(&[b'b'; 100])),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(handle.stats().too_large, 1);
}

#[tokio::test]
async fn udp_full_queue_drops_without_blocking() {
    // On the current-thread runtime the writer cannot run while this test sends, so the
    // one-slot queue overflows deterministically.
    let mut config = TransportConfig::new(vec![(Transport::Udp, v4())]);
    config.udp_send_queue = 1;
    config.udp_direct_send = false;
    let (handle, _tasks, _rx) = start_with(config).await;
    let client = UdpSocket::bind(v4()).await.unwrap();
    let dest = Destination {
        transport: Transport::Udp,
        addr: client.local_addr().unwrap(),
        connection: None,
        local: None,
    };
    for i in 0..10 {
        handle.send(dest, Bytes::from(sip(i)));
    }
    assert_eq!(handle.stats().udp_queue_full, 9);
    let mut buf = [0u8; 2048];
    let n = timeout(WAIT, client.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], sip(0).as_slice());
}

#[tokio::test]
async fn udp_direct_sends_need_no_writer_and_keep_their_order() {
    // As above, the writer cannot run while this test sends: with an empty queue every
    // datagram goes straight to the kernel, so the one-slot queue never fills.
    let mut config = TransportConfig::new(vec![(Transport::Udp, v4())]);
    config.udp_send_queue = 1;
    let (handle, _tasks, _rx) = start_with(config).await;
    // One turn of the reactor, which reports the new socket writable.
    tokio::task::yield_now().await;
    let client = UdpSocket::bind(v4()).await.unwrap();
    let dest = Destination {
        transport: Transport::Udp,
        addr: client.local_addr().unwrap(),
        connection: None,
        local: None,
    };
    for i in 0..10 {
        handle.send(dest, Bytes::from(sip(i)));
    }
    assert_eq!(handle.stats(), StatsSnapshot::default());
    let mut buf = [0u8; 2048];
    for i in 0..10 {
        let n = timeout(WAIT, client.recv(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf[..n], sip(i).as_slice());
    }
}

#[tokio::test]
async fn udp_no_socket_for_family_is_counted() {
    let (handle, _tasks, _rx) =
        start_with(TransportConfig::new(vec![(Transport::Udp, v4())])).await;
    let dest = Destination {
        transport: Transport::Udp,
        addr: "[::1]:5060".parse().unwrap(),
        connection: None,
        local: None,
    };
    handle.send(dest, Bytes::from_static(b"x"));
    assert_eq!(handle.stats().no_route, 1);
}

async fn tcp_pipelined_split_and_reply(bind: SocketAddr) {
    let (handle, _tasks, mut rx) =
        start_with(TransportConfig::new(vec![(Transport::Tcp, bind)])).await;
    let server = handle.local_addr(Transport::Tcp).unwrap();
    let mut client = TcpStream::connect(server).await.unwrap();
    let client_addr = client.local_addr().unwrap();
    // Three pipelined messages in one write.
    let mut burst = sip(0);
    burst.extend_from_slice(&sip_with_body("hello\r\n\r\nworld"));
    burst.extend_from_slice(&sip(2));
    client.write_all(&burst).await.unwrap();
    // One message split into many small writes.
    let split = sip_with_body("split body");
    for chunk in split.chunks(7) {
        client.write_all(chunk).await.unwrap();
        client.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    let first = next_message(&mut rx).await;
    assert_eq!(first.data, sip(0));
    assert_eq!(first.source, client_addr);
    assert_eq!(first.transport, Transport::Tcp);
    let id = first
        .connection
        .expect("stream messages carry a connection");
    assert_eq!(
        next_message(&mut rx).await.data,
        sip_with_body("hello\r\n\r\nworld")
    );
    assert_eq!(next_message(&mut rx).await.data, sip(2));
    let last = next_message(&mut rx).await;
    assert_eq!(last.data, split);
    assert_eq!(last.connection, Some(id));
    // The reply goes back on the inbound connection.
    let reply = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    handle.send(tcp_dest(client_addr, Some(id)), Bytes::from_static(reply));
    assert_eq!(read_exactly(&mut client, reply.len()).await, reply);
    assert_eq!(handle.connection_count(), 1);
    drop(client);
    match next(&mut rx).await {
        InboundEvent::ConnectionClosed { connection, peer } => {
            assert_eq!((connection, peer), (id, client_addr));
        }
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
    assert_eq!(handle.connection_count(), 0);
}

#[tokio::test]
async fn tcp_pipelined_split_and_reply_v4() {
    tcp_pipelined_split_and_reply(v4()).await;
}

#[tokio::test]
async fn tcp_pipelined_split_and_reply_v6() {
    tcp_pipelined_split_and_reply(v6()).await;
}

#[tokio::test]
async fn tcp_reuses_connection_toward_peer() {
    let (a, _ta, mut a_rx) = start_with(TransportConfig::new(vec![(Transport::Tcp, v4())])).await;
    let (b, _tb, mut b_rx) = start_with(TransportConfig::new(vec![(Transport::Tcp, v4())])).await;
    let b_addr = b.local_addr(Transport::Tcp).unwrap();
    // Two sends without a connection id: one outgoing connection, opened on demand.
    a.send(tcp_dest(b_addr, None), Bytes::from(sip(1)));
    a.send(tcp_dest(b_addr, None), Bytes::from(sip(2)));
    let m1 = next_message(&mut b_rx).await;
    let m2 = next_message(&mut b_rx).await;
    assert_eq!(
        (m1.data.as_ref(), m2.data.as_ref()),
        (&sip(1)[..], &sip(2)[..])
    );
    assert_eq!(m1.connection, m2.connection);
    assert_eq!(a.connection_count(), 1);
    // B answers on the inbound connection; A receives it on its outgoing connection.
    b.send(tcp_dest(m1.source, m1.connection), Bytes::from(sip(3)));
    let reply = next_message(&mut a_rx).await;
    assert_eq!(reply.data, sip(3));
    assert_eq!(reply.source, b_addr);
    let a_conn = reply.connection.expect("outgoing connections have ids");
    // A sends again by address: the same connection carries it.
    a.send(tcp_dest(b_addr, None), Bytes::from(sip(4)));
    let m4 = next_message(&mut b_rx).await;
    assert_eq!(m4.connection, m1.connection);
    // A connection id that is gone falls back to the address.
    a.send(
        tcp_dest(b_addr, Some(ConnectionId(9_999))),
        Bytes::from(sip(5)),
    );
    assert_eq!(next_message(&mut b_rx).await.connection, m1.connection);
    assert_eq!((a.connection_count(), b.connection_count()), (1, 1));
    // Closing from A flushes, then closes both ends.
    a.send(tcp_dest(b_addr, Some(a_conn)), Bytes::from(sip(6)));
    a.close(a_conn);
    assert_eq!(next_message(&mut b_rx).await.data, sip(6));
    assert!(matches!(
        next(&mut b_rx).await,
        InboundEvent::ConnectionClosed { .. }
    ));
    match next(&mut a_rx).await {
        InboundEvent::ConnectionClosed { connection, peer } => {
            assert_eq!((connection, peer), (a_conn, b_addr));
        }
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
}

#[tokio::test]
async fn tcp_connect_failure_reports_closed() {
    let (a, _ta, mut a_rx) = start_with(TransportConfig::default()).await;
    // A port that was just free: nothing listens there.
    let free = std::net::TcpListener::bind(v4())
        .unwrap()
        .local_addr()
        .unwrap();
    a.send(tcp_dest(free, None), Bytes::from(sip(1)));
    match next(&mut a_rx).await {
        InboundEvent::ConnectionClosed { peer, .. } => assert_eq!(peer, free),
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
    let stats = a.stats();
    assert_eq!((stats.connect_failures, stats.no_route), (1, 1));
    assert_eq!(a.connection_count(), 0);
}

#[tokio::test]
async fn tcp_idle_timeout_closes() {
    let mut config = TransportConfig::new(vec![(Transport::Tcp, v4())]);
    config.tcp_idle_timeout = Duration::from_millis(300);
    let (handle, _tasks, mut rx) = start_with(config).await;
    let mut client = TcpStream::connect(handle.local_addr(Transport::Tcp).unwrap())
        .await
        .unwrap();
    client.write_all(&sip(1)).await.unwrap();
    let m = next_message(&mut rx).await;
    let started = tokio::time::Instant::now();
    assert!(matches!(
        next(&mut rx).await,
        InboundEvent::ConnectionClosed { connection, .. } if Some(connection) == m.connection
    ));
    assert!(started.elapsed() >= Duration::from_millis(200));
    expect_eof(&mut client).await;
}

#[tokio::test]
async fn tcp_too_large_lets_the_answer_out_then_closes() {
    let mut config = TransportConfig::new(vec![(Transport::Tcp, v4())]);
    config.max_message_size = 200;
    let (handle, _tasks, mut rx) = start_with(config).await;
    let mut client = TcpStream::connect(handle.local_addr(Transport::Tcp).unwrap())
        .await
        .unwrap();
    let head = b"MESSAGE sip:n@example.com SIP/2.0\r\nContent-Length: 1000\r\n\r\n";
    client.write_all(head).await.unwrap();
    client.write_all(&[b'x'; 300]).await.unwrap();
    let (partial, source, connection) = match next(&mut rx).await {
        InboundEvent::TooLarge {
            partial,
            source,
            transport: Transport::Tcp,
            connection: Some(connection),
            ..
        } => (partial, source, connection),
        other => panic!("expected TooLarge, got {other:?}"),
    };
    assert_eq!(partial, Bytes::from_static(head));
    let answer = b"SIP/2.0 513 Message Too Large\r\nContent-Length: 0\r\n\r\n";
    handle.send(
        tcp_dest(source, Some(connection)),
        Bytes::from_static(answer),
    );
    assert_eq!(read_exactly(&mut client, answer.len()).await, answer);
    expect_eof(&mut client).await;
    drop(client);
    assert!(matches!(
        next(&mut rx).await,
        InboundEvent::ConnectionClosed { .. }
    ));
    assert_eq!(handle.stats().too_large, 1);
}

#[tokio::test]
async fn tcp_missing_content_length_closes() {
    let mut config = TransportConfig::new(vec![(Transport::Tcp, v4())]);
    config.require_content_length = true;
    let (handle, _tasks, mut rx) = start_with(config).await;
    let mut client = TcpStream::connect(handle.local_addr(Transport::Tcp).unwrap())
        .await
        .unwrap();
    client
        .write_all(b"OPTIONS sip:n@example.com SIP/2.0\r\nCall-ID: x\r\n\r\n")
        .await
        .unwrap();
    assert!(matches!(
        next(&mut rx).await,
        InboundEvent::ConnectionClosed { .. }
    ));
    expect_eof(&mut client).await;
}

#[tokio::test]
async fn tcp_keepalive_ping_gets_pong() {
    let (handle, _tasks, mut rx) =
        start_with(TransportConfig::new(vec![(Transport::Tcp, v4())])).await;
    let mut client = TcpStream::connect(handle.local_addr(Transport::Tcp).unwrap())
        .await
        .unwrap();
    client.write_all(b"\r\n\r\n").await.unwrap();
    assert_eq!(read_exactly(&mut client, 2).await, b"\r\n");
    // A lone CRLF (a pong, or stray CRLF before a request) is not answered; the request is read.
    client.write_all(b"\r\n").await.unwrap();
    client.write_all(&sip(1)).await.unwrap();
    assert_eq!(next_message(&mut rx).await.data, sip(1));
}

#[tokio::test]
async fn tcp_max_connections_refuses_extra() {
    let mut config = TransportConfig::new(vec![(Transport::Tcp, v4())]);
    config.max_connections = 1;
    let (handle, _tasks, mut rx) = start_with(config).await;
    let server = handle.local_addr(Transport::Tcp).unwrap();
    let mut first = TcpStream::connect(server).await.unwrap();
    first.write_all(&sip(1)).await.unwrap();
    assert_eq!(next_message(&mut rx).await.data, sip(1));
    let mut second = TcpStream::connect(server).await.unwrap();
    expect_eof(&mut second).await;
    assert_eq!(handle.stats().connections_refused, 1);
    // An outgoing connection is refused too while the limit is reached.
    let other = std::net::TcpListener::bind(v4()).unwrap();
    handle.send(
        tcp_dest(other.local_addr().unwrap(), None),
        Bytes::from(sip(2)),
    );
    assert_eq!(handle.stats().no_route, 1);
}

#[tokio::test]
async fn bind_conflict_is_an_error() {
    let taken = std::net::UdpSocket::bind(v4()).unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let config = TransportConfig::new(vec![(Transport::Udp, taken.local_addr().unwrap())]);
    assert!(matches!(
        start(config, tx).await,
        Err(TransportError::Bind {
            transport: Transport::Udp,
            ..
        })
    ));
}

#[tokio::test]
async fn shutdown_stops_long_lived_tasks() {
    let (handle, mut tasks, _rx) = start_with(TransportConfig::new(vec![
        (Transport::Udp, v4()),
        (Transport::Tcp, v4()),
    ]))
    .await;
    assert_eq!(handle.local_addrs().len(), 2);
    handle.shutdown();
    timeout(WAIT, async {
        while let Some(res) = tasks.join_next().await {
            res.expect("task ended cleanly");
        }
    })
    .await
    .expect("tasks end after shutdown");
}

#[test]
fn config_validation() {
    assert!(TransportConfig::default().validate().is_ok());
    let config = TransportConfig {
        max_message_size: 0,
        ..TransportConfig::default()
    };
    assert!(matches!(
        config.validate(),
        Err(TransportError::InvalidConfig(_))
    ));
}

#[tokio::test]
async fn close_of_unknown_connection_is_ignored() {
    let (handle, _tasks, _rx) = start_with(TransportConfig::default()).await;
    handle.close(ConnectionId(42));
    assert_eq!(handle.connection_count(), 0);
}

async fn wildcard_udp_reports_destination(wildcard: SocketAddr, loopback: std::net::IpAddr) {
    let (handle, _tasks, mut rx) =
        start_with(TransportConfig::new(vec![(Transport::Udp, wildcard)])).await;
    let bound = handle.local_addr(Transport::Udp).unwrap();
    assert!(bound.ip().is_unspecified());
    let target = SocketAddr::new(loopback, bound.port());
    let client = UdpSocket::bind(SocketAddr::new(loopback, 0)).await.unwrap();
    client.send_to(&sip(1), target).await.unwrap();
    assert_eq!(next_message(&mut rx).await.local, target);
}

#[tokio::test]
async fn wildcard_udp_reports_destination_v4() {
    wildcard_udp_reports_destination(
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        Ipv4Addr::LOCALHOST.into(),
    )
    .await;
}

#[tokio::test]
async fn wildcard_udp_reports_destination_v6() {
    wildcard_udp_reports_destination(
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        Ipv6Addr::LOCALHOST.into(),
    )
    .await;
}

#[tokio::test]
async fn tcp_missing_content_length_is_bodiless_when_lenient() {
    let (handle, _tasks, mut rx) =
        start_with(TransportConfig::new(vec![(Transport::Tcp, v4())])).await;
    let mut client = TcpStream::connect(handle.local_addr(Transport::Tcp).unwrap())
        .await
        .unwrap();
    client
        .write_all(b"OPTIONS sip:n@example.com SIP/2.0\r\nCall-ID: x\r\n\r\n")
        .await
        .unwrap();
    match next(&mut rx).await {
        InboundEvent::Message(m) => assert!(m.data.ends_with(b"Call-ID: x\r\n\r\n")),
        other => panic!("expected the message, got {other:?}"),
    }
}

#[tokio::test]
async fn close_all_streams_closes_every_connection_and_keeps_listening() {
    let (handle, _tasks, mut rx) =
        start_with(TransportConfig::new(vec![(Transport::Tcp, v4())])).await;
    let server = handle.local_addr(Transport::Tcp).expect("bound");
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = TcpStream::connect(server).await.unwrap();
        c.write_all(&sip(i)).await.unwrap();
        next_message(&mut rx).await;
        clients.push(c);
    }
    assert_eq!(handle.connection_count(), 3);
    assert_eq!(handle.close_all_streams(), 3);
    for c in &mut clients {
        expect_eof(c).await;
    }
    for _ in 0..3 {
        assert!(matches!(
            next(&mut rx).await,
            InboundEvent::ConnectionClosed { .. }
        ));
    }
    assert_eq!(handle.connection_count(), 0);
    // The listener still accepts: a client reconnects at once.
    let mut again = TcpStream::connect(server).await.unwrap();
    again.write_all(&sip(9)).await.unwrap();
    assert_eq!(next_message(&mut rx).await.data, sip(9));
    assert_eq!(handle.close_all_streams(), 1);
}
