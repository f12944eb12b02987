//! WebSocket tests on 127.0.0.1 with tokio-tungstenite as the client: upgrade and roundtrip on
//! WS and WSS, the refusals (subprotocol, Origin, connection limit), frame limits and the
//! keep-alive.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use crate::transport::tls::tests::{
    Events, TestPki, WAIT, dest, next, next_message, sip, start_with, v4,
};
use crate::transport::{
    InboundEvent, TlsConfig, Transport, TransportConfig, TransportHandle, WsConfig,
};

async fn ws_server(
    config: WsConfig,
    max_message_size: usize,
) -> (TransportHandle, tokio::task::JoinSet<()>, Events) {
    let mut c = TransportConfig::new(vec![(Transport::Ws, v4())]);
    c.ws = config;
    c.max_message_size = max_message_size;
    start_with(c).await
}

/// Upgrades `stream` as a client offering `sip`.
async fn client<S>(stream: S, url: &str) -> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    let (ws, response) = timeout(WAIT, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("upgrade before timeout")
        .expect("upgrade accepted");
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "sip"
    );
    ws
}

async fn ws_client(addr: SocketAddr) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    client(tcp, &format!("ws://{addr}/")).await
}

/// Sends a hand-written upgrade request and returns the response head.
async fn raw_upgrade(addr: SocketAddr, extra_headers: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         {extra_headers}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = timeout(WAIT, tcp.read(&mut buf)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

/// Reads frames until a close frame (or the end of the stream) and returns its code.
async fn close_code<S>(ws: &mut WebSocketStream<S>) -> Option<CloseCode>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match timeout(WAIT, ws.next())
            .await
            .expect("close before timeout")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

async fn next_text<S>(ws: &mut WebSocketStream<S>) -> Bytes
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match timeout(WAIT, ws.next())
            .await
            .expect("frame before timeout")
        {
            Some(Ok(Message::Text(t))) => return Bytes::from(t),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn ws_upgrade_and_roundtrip() {
    let (handle, _tasks, mut rx) = ws_server(WsConfig::default(), 65_536).await;
    let server = handle.local_addr(Transport::Ws).unwrap();
    let mut ws = ws_client(server).await;
    ws.send(Message::text(String::from_utf8(sip(1)).unwrap()))
        .await
        .unwrap();
    ws.send(Message::binary(sip(2))).await.unwrap();
    let a = next_message(&mut rx).await;
    let b = next_message(&mut rx).await;
    assert_eq!(
        (a.data.as_ref(), b.data.as_ref()),
        (&sip(1)[..], &sip(2)[..])
    );
    assert_eq!(a.transport, Transport::Ws);
    assert_eq!(a.local, server);
    assert_eq!(a.connection, b.connection);
    handle.send(
        dest(Transport::Ws, a.source, a.connection),
        Bytes::from(sip(3)),
    );
    assert_eq!(next_text(&mut ws).await, sip(3));
    // Also by address, without the connection id.
    handle.send(dest(Transport::Ws, a.source, None), Bytes::from(sip(4)));
    assert_eq!(next_text(&mut ws).await, sip(4));
    // CRLF keep-alive inside a frame.
    ws.send(Message::text("\r\n\r\n")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "\r\n");
    // A WS peer without a connection cannot be dialed.
    let nobody: SocketAddr = "127.0.0.1:9".parse().unwrap();
    handle.send(dest(Transport::Ws, nobody, None), Bytes::from(sip(5)));
    assert_eq!(handle.stats().no_route, 1);
    ws.close(None).await.unwrap();
    match next(&mut rx).await {
        InboundEvent::ConnectionClosed { connection, .. } => {
            assert_eq!(Some(connection), a.connection);
        }
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
    assert_eq!(handle.connection_count(), 0);
}

#[tokio::test]
async fn wss_upgrade_and_roundtrip() {
    let pki = TestPki::new();
    let mut c = TransportConfig::new(vec![(Transport::Wss, v4())]);
    c.tls = Some(TlsConfig::load(&pki.server_files()).unwrap());
    let (handle, _tasks, mut rx) = start_with(c).await;
    let server = handle.local_addr(Transport::Wss).unwrap();
    let tcp = TcpStream::connect(server).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = pki.connector().connect(name, tcp).await.unwrap();
    let mut ws = client(tls, &format!("wss://localhost:{}/", server.port())).await;
    ws.send(Message::text(String::from_utf8(sip(1)).unwrap()))
        .await
        .unwrap();
    let m = next_message(&mut rx).await;
    assert_eq!(m.data, sip(1));
    assert_eq!(m.transport, Transport::Wss);
    handle.send(
        dest(Transport::Wss, m.source, m.connection),
        Bytes::from(sip(2)),
    );
    assert_eq!(next_text(&mut ws).await, sip(2));
}

#[tokio::test]
async fn upgrade_without_sip_subprotocol_is_refused_with_400() {
    let (handle, _tasks, _rx) = ws_server(WsConfig::default(), 65_536).await;
    let server = handle.local_addr(Transport::Ws).unwrap();
    let head = raw_upgrade(server, "").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let head = raw_upgrade(server, "Sec-WebSocket-Protocol: chat, superchat\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let head = raw_upgrade(server, "Sec-WebSocket-Protocol: chat, sip\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-protocol: sip")
            || head.contains("Sec-WebSocket-Protocol: sip"),
        "{head}"
    );
    assert_eq!(handle.stats().upgrades_refused, 2);
}

#[tokio::test]
async fn origin_outside_the_allow_list_is_refused_with_403() {
    let config = WsConfig {
        allowed_origins: vec!["https://app.example.com".to_owned()],
        ..WsConfig::default()
    };
    let (handle, _tasks, _rx) = ws_server(config, 65_536).await;
    let server = handle.local_addr(Transport::Ws).unwrap();
    let head = raw_upgrade(
        server,
        "Sec-WebSocket-Protocol: sip\r\nOrigin: https://evil.example.com\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let head = raw_upgrade(server, "Sec-WebSocket-Protocol: sip\r\n").await;
    assert!(head.starts_with("HTTP/1.1 403"), "no Origin: {head}");
    let head = raw_upgrade(
        server,
        "Sec-WebSocket-Protocol: sip\r\nOrigin: https://app.example.com\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

#[tokio::test]
async fn connection_limit_answers_503_and_frees_slots() {
    let config = WsConfig {
        max_connections: 1,
        ..WsConfig::default()
    };
    let (handle, _tasks, mut rx) = ws_server(config, 65_536).await;
    let server = handle.local_addr(Transport::Ws).unwrap();
    let mut first = ws_client(server).await;
    let head = raw_upgrade(server, "Sec-WebSocket-Protocol: sip\r\n").await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert_eq!(handle.stats().connections_refused, 1);
    // The first connection still works; once it is gone a new one is accepted.
    first
        .send(Message::text(String::from_utf8(sip(1)).unwrap()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut rx).await.data, sip(1));
    first.close(None).await.unwrap();
    assert!(matches!(
        next(&mut rx).await,
        InboundEvent::ConnectionClosed { .. }
    ));
    // The slot is returned when the connection task ends, just after the event.
    let mut accepted = false;
    for _ in 0..50 {
        let head = raw_upgrade(server, "Sec-WebSocket-Protocol: sip\r\n").await;
        if head.starts_with("HTTP/1.1 101") {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(accepted);
}

/// Sends a hand-written `sip` upgrade request and returns the response head with the still
/// open stream.
async fn held_upgrade(addr: SocketAddr) -> (String, TcpStream) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: sip\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte: nothing after the head (a close frame) is consumed.
    while !response.ends_with(b"\r\n\r\n") {
        let n = timeout(WAIT, tcp.read(&mut byte)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        response.extend_from_slice(&byte);
    }
    (String::from_utf8_lossy(&response).into_owned(), tcp)
}

/// More concurrent upgrades than the transport's `max_connections`: all pass the accept-time
/// check together, but each 101 is backed by a reserved slot, so exactly the limit is upgraded,
/// every other one gets 503 (none a 101 and then a close), and the listener keeps serving.
#[tokio::test]
async fn concurrent_upgrades_past_the_transport_limit_get_503() {
    const LIMIT: usize = 3;
    const CLIENTS: usize = 16;
    let mut c = TransportConfig::new(vec![(Transport::Ws, v4())]);
    c.max_connections = LIMIT;
    let (handle, _tasks, mut rx) = start_with(c).await;
    let server = handle.local_addr(Transport::Ws).unwrap();

    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        set.spawn(held_upgrade(server));
    }
    let mut upgraded = Vec::new();
    let mut refused = 0;
    while let Some(done) = set.join_next().await {
        let (head, stream) = done.unwrap();
        if head.starts_with("HTTP/1.1 101") {
            upgraded.push(stream);
        } else {
            assert!(head.starts_with("HTTP/1.1 503"), "{head}");
            refused += 1;
        }
    }
    assert_eq!(upgraded.len(), LIMIT, "{refused} refused");
    assert_eq!(refused, CLIENTS - LIMIT);
    let stats = handle.stats();
    assert_eq!(stats.connections_refused, (CLIENTS - LIMIT) as u64);
    assert_eq!(stats.upgrades_refused, (CLIENTS - LIMIT) as u64);

    // Every upgraded connection is registered and usable: none was closed after its 101.
    let mut upgraded: Vec<WebSocketStream<TcpStream>> = {
        let mut v = Vec::new();
        for stream in upgraded {
            v.push(
                WebSocketStream::from_raw_socket(
                    stream,
                    tokio_tungstenite::tungstenite::protocol::Role::Client,
                    None,
                )
                .await,
            );
        }
        v
    };
    for (i, ws) in upgraded.iter_mut().enumerate() {
        let cseq = i + 1;
        ws.send(Message::text(String::from_utf8(sip(cseq)).unwrap()))
            .await
            .unwrap();
        assert_eq!(next_message(&mut rx).await.data, sip(cseq));
    }

    // Once they are gone, new upgrades are served again (slots and reservations returned).
    let closing = upgraded.len();
    for mut ws in upgraded {
        ws.close(None).await.unwrap();
    }
    let mut closed = 0;
    while closed < closing {
        if let InboundEvent::ConnectionClosed { .. } = next(&mut rx).await {
            closed += 1;
        }
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut fresh = loop {
        let (head, stream) = held_upgrade(server).await;
        if head.starts_with("HTTP/1.1 101") {
            break WebSocketStream::from_raw_socket(
                stream,
                tokio_tungstenite::tungstenite::protocol::Role::Client,
                None,
            )
            .await;
        }
        assert!(tokio::time::Instant::now() < deadline, "{head}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    fresh
        .send(Message::text(String::from_utf8(sip(99)).unwrap()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut rx).await.data, sip(99));
}

#[tokio::test]
async fn messages_larger_than_the_read_buffer_arrive_whole() {
    let (handle, _tasks, mut rx) = ws_server(WsConfig::default(), 65_536).await;
    let server = handle.local_addr(Transport::Ws).unwrap();
    let mut ws = ws_client(server).await;
    let body = "x".repeat(30_000);
    let big = format!(
        "MESSAGE sip:n@example.com SIP/2.0\r\nl: {}\r\n\r\n{body}",
        body.len()
    );
    ws.send(Message::text(big.clone())).await.unwrap();
    ws.send(Message::text(String::from_utf8(sip(1)).unwrap()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut rx).await.data, big.as_bytes());
    assert_eq!(next_message(&mut rx).await.data, sip(1));
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let (handle, _tasks, mut rx) = ws_server(WsConfig::default(), 2048).await;
    let server = handle.local_addr(Transport::Ws).unwrap();
    let mut ws = ws_client(server).await;
    ws.send(Message::binary(vec![b'x'; 4096])).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));
    assert!(matches!(
        next(&mut rx).await,
        InboundEvent::ConnectionClosed { .. }
    ));
    assert_eq!(handle.stats().too_large, 1);
}

#[tokio::test]
async fn invalid_utf8_text_frame_closes_with_1007() {
    let (handle, _tasks, mut rx) = ws_server(WsConfig::default(), 65_536).await;
    let server = handle.local_addr(Transport::Ws).unwrap();
    let mut ws = ws_client(server).await;
    let frame = Frame::message(
        Bytes::from_static(b"INVITE \xff\xfe"),
        OpCode::Data(Data::Text),
        true,
    );
    ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Invalid));
    assert!(matches!(
        next(&mut rx).await,
        InboundEvent::ConnectionClosed { .. }
    ));
}

#[tokio::test]
async fn pings_keep_a_live_peer_and_drop_a_silent_one() {
    let config = WsConfig {
        ping_interval: Duration::from_millis(250),
        ..WsConfig::default()
    };
    let (handle, _tasks, mut rx) = ws_server(config, 65_536).await;
    let server = handle.local_addr(Transport::Ws).unwrap();
    // A reading client sees pings (and tungstenite answers them).
    let mut live = ws_client(server).await;
    let (pinged, mut pings) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = live.next().await {
            if matches!(message, Message::Ping(_)) {
                let _ = pinged.send(());
            }
        }
    });
    for _ in 0..3 {
        timeout(WAIT, pings.recv())
            .await
            .expect("ping before timeout");
    }
    // A client that never reads never answers: closed after two intervals.
    let silent = ws_client(server).await;
    match timeout(WAIT, rx.recv()).await {
        Ok(Some(InboundEvent::ConnectionClosed { .. })) => {}
        other => panic!("expected the silent connection to close, got {other:?}"),
    }
    assert_eq!(handle.connection_count(), 1, "the live one stays");
    reader.abort();
    drop(silent);
}

#[tokio::test]
async fn shutdown_closes_websockets_with_1001() {
    let (handle, _tasks, _rx) = ws_server(WsConfig::default(), 65_536).await;
    let server = handle.local_addr(Transport::Ws).unwrap();
    let mut ws = ws_client(server).await;
    handle.shutdown();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
}

#[tokio::test]
async fn idle_connection_is_closed_with_1001() {
    let mut c = TransportConfig::new(vec![(Transport::Ws, v4())]);
    c.tcp_idle_timeout = Duration::from_millis(300);
    let (handle, _tasks, mut rx) = start_with(c).await;
    let server = handle.local_addr(Transport::Ws).unwrap();
    let mut ws = ws_client(server).await;
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
    assert!(matches!(
        next(&mut rx).await,
        InboundEvent::ConnectionClosed { .. }
    ));
}

#[tokio::test]
async fn panicking_connection_actor_closes_only_that_websocket() {
    let (handle, _tasks, mut rx) = ws_server(WsConfig::default(), 65_536).await;
    let server = handle.local_addr(Transport::Ws).unwrap();
    let mut a = ws_client(server).await;
    let mut b = ws_client(server).await;
    a.send(Message::text(String::from_utf8(sip(1)).unwrap()))
        .await
        .unwrap();
    let a_id = next_message(&mut rx).await.connection.unwrap();
    b.send(Message::text(String::from_utf8(sip(2)).unwrap()))
        .await
        .unwrap();
    let from_b = next_message(&mut rx).await;
    let b_id = from_b.connection.unwrap();
    // The actor attaches right after the upgrade; retry until it has.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !handle.inject_connection_panic(a_id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a's actor never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match next(&mut rx).await {
        InboundEvent::ConnectionClosed { connection, .. } => assert_eq!(connection, a_id),
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
    // a is closed with a close frame (the I/O task flushed and closed when its entry went).
    assert_eq!(close_code(&mut a).await, Some(CloseCode::Normal));
    assert_eq!(handle.connection_count(), 1);
    assert_eq!(handle.stats().actor_failures, 1);
    // b still works both ways.
    handle.send(
        dest(Transport::Ws, from_b.source, Some(b_id)),
        Bytes::from(sip(3)),
    );
    assert_eq!(next_text(&mut b).await, sip(3));
    b.send(Message::text(String::from_utf8(sip(4)).unwrap()))
        .await
        .unwrap();
    assert_eq!(next_message(&mut rx).await.connection, Some(b_id));
}
