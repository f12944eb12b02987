//! Connection actors on loopback sockets: registration and end through the actor, the idle
//! timer, and a failure that closes exactly one connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

use crate::transport::activity::Activity;
use crate::transport::{
    ConnectionId, Destination, InboundEvent, Transport, TransportConfig, TransportHandle, start,
};

const WAIT: Duration = Duration::from_secs(5);

type Events = mpsc::UnboundedReceiver<InboundEvent>;

fn sip(n: usize) -> Vec<u8> {
    format!("OPTIONS sip:n@example.com SIP/2.0\r\nCall-ID: {n}\r\nContent-Length: 0\r\n\r\n")
        .into_bytes()
}

async fn tcp_transport(idle: Option<Duration>) -> (TransportHandle, JoinSet<()>, Events) {
    let mut config = TransportConfig::new(vec![(
        Transport::Tcp,
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    )]);
    if let Some(idle) = idle {
        config.tcp_idle_timeout = idle;
    }
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

/// Connects a client and sends one message; returns the client and its connection id.
async fn client(handle: &TransportHandle, rx: &mut Events, n: usize) -> (TcpStream, ConnectionId) {
    let addr = handle.local_addr(Transport::Tcp).expect("tcp listener");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(&sip(n)).await.expect("write");
    match next(rx).await {
        InboundEvent::Message(m) => (stream, m.connection.expect("a connection id")),
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn expect_closed(rx: &mut Events, id: ConnectionId) {
    match next(rx).await {
        InboundEvent::ConnectionClosed { connection, .. } => assert_eq!(connection, id),
        other => panic!("expected ConnectionClosed for {id}, got {other:?}"),
    }
}

async fn expect_eof(stream: &mut TcpStream) {
    let mut buf = [0u8; 256];
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

/// Polls until `done` holds or the wait is over.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[tokio::test]
async fn connection_is_registered_and_unregistered_through_its_actor() {
    let (handle, _tasks, mut rx) = tcp_transport(None).await;
    let (stream, id) = client(&handle, &mut rx, 1).await;
    let tcp = Arc::clone(&handle.inner.tcp);
    assert!(
        eventually(|| tcp.actor_of(id).is_some()).await,
        "actor attached"
    );
    let actor = tcp.actor_of(id).expect("actor");
    assert_eq!(actor.get_status(), ActorStatus::Running);
    let supervisor = tcp.supervisor.get().cloned().expect("supervisor");
    assert!(
        supervisor
            .get_children()
            .iter()
            .any(|c| c.get_id() == actor.get_id()),
        "the actor is linked to the supervisor"
    );
    assert_eq!(handle.connection_count(), 1);
    let peer = stream.local_addr().expect("local addr");
    assert_eq!(handle.connection_to(Transport::Tcp, peer), Some(id));

    drop(stream);
    expect_closed(&mut rx, id).await;
    assert_eq!(handle.connection_count(), 0);
    assert_eq!(handle.connection_to(Transport::Tcp, peer), None);
    assert!(
        eventually(|| actor.get_status() == ActorStatus::Stopped).await,
        "actor stopped"
    );
    assert!(
        eventually(|| supervisor.get_children().is_empty()).await,
        "the supervisor forgot it"
    );
    // Exactly one notification.
    assert!(
        timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn idle_timer_rearms_while_the_connection_is_busy_then_closes_it() {
    let idle = Duration::from_millis(300);
    let (handle, _tasks, mut rx) = tcp_transport(Some(idle)).await;
    let (mut stream, id) = client(&handle, &mut rx, 1).await;
    // Keep-alive pings for twice the idle timeout: the timer fires and re-arms.
    let busy_until = Instant::now() + 2 * idle;
    let mut pong = [0u8; 2];
    while Instant::now() < busy_until {
        tokio::time::sleep(idle / 4).await;
        stream.write_all(b"\r\n\r\n").await.expect("ping");
        timeout(WAIT, stream.read_exact(&mut pong))
            .await
            .expect("pong")
            .expect("read");
    }
    assert_eq!(handle.connection_count(), 1, "a busy connection stays open");
    assert!(rx.try_recv().is_err(), "no event while busy");
    let quiet = Instant::now();
    expect_closed(&mut rx, id).await;
    let waited = quiet.elapsed();
    assert!(
        waited >= idle - Duration::from_millis(50),
        "closed after {waited:?}"
    );
    expect_eof(&mut stream).await;
}

#[tokio::test]
async fn panicking_actor_closes_only_its_connection() {
    let (handle, _tasks, mut rx) = tcp_transport(None).await;
    let (mut a, a_id) = client(&handle, &mut rx, 1).await;
    let (mut b, b_id) = client(&handle, &mut rx, 2).await;
    let tcp = Arc::clone(&handle.inner.tcp);
    assert!(eventually(|| tcp.actor_of(a_id).is_some() && tcp.actor_of(b_id).is_some()).await);

    assert!(handle.inject_connection_panic(a_id));
    expect_closed(&mut rx, a_id).await;
    expect_eof(&mut a).await;
    assert_eq!(handle.connection_count(), 1);
    assert_eq!(handle.stats().actor_failures, 1);
    assert!(!handle.inject_connection_panic(a_id), "a is gone");

    // b is untouched, both ways.
    let dest = Destination {
        transport: Transport::Tcp,
        addr: b.local_addr().expect("addr"),
        connection: Some(b_id),
        local: None,
    };
    handle.send(dest, sip(3).into());
    let mut buf = vec![0u8; sip(3).len()];
    timeout(WAIT, b.read_exact(&mut buf))
        .await
        .expect("read in time")
        .expect("read");
    assert_eq!(buf, sip(3));
    b.write_all(&sip(4)).await.expect("write");
    match next(&mut rx).await {
        InboundEvent::Message(m) => assert_eq!(m.connection, Some(b_id)),
        other => panic!("expected a message on b, got {other:?}"),
    }
    let b_actor = tcp.actor_of(b_id).expect("b's actor");
    assert_eq!(b_actor.get_status(), ActorStatus::Running);
}

#[tokio::test]
async fn panicking_io_task_fails_the_actor_and_closes_the_connection() {
    let (handle, _tasks, mut rx) = tcp_transport(None).await;
    let tcp = Arc::clone(&handle.inner.tcp);
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
    let (id, channels) = tcp
        .register(&mut tcp.lock(), Transport::Tcp, peer)
        .expect("registered");
    let io = async move {
        let _channels = channels;
        panic!("I/O bug");
    };
    super::spawn(
        Arc::clone(&tcp),
        Transport::Tcp,
        id,
        peer,
        Arc::new(Activity::new()),
        Box::pin(io),
    )
    .await;
    expect_closed(&mut rx, id).await;
    assert_eq!(handle.connection_count(), 0);
    assert!(eventually(|| handle.stats().actor_failures == 1).await);
}

#[tokio::test]
async fn supervisor_stops_after_shutdown_once_connections_are_gone() {
    let (handle, mut tasks, mut rx) = tcp_transport(None).await;
    let (stream, id) = client(&handle, &mut rx, 1).await;
    let supervisor = handle
        .inner
        .tcp
        .supervisor
        .get()
        .cloned()
        .expect("supervisor");
    handle.shutdown();
    expect_closed(&mut rx, id).await;
    drop(stream);
    assert!(
        eventually(|| supervisor.get_status() == ActorStatus::Stopped).await,
        "supervisor stopped"
    );
    while tasks.join_next().await.is_some() {}
}
