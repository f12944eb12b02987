//! TLS, WS and WSS from the node's side: a REGISTER over WebSocket through the whole engine,
//! the `dev-cert` subcommand's files serving a WSS upgrade, and the configuration checks.
//!
//! The node is run in-process (`sipmesh_node::run`) on a per-test loopback address.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use sipmesh_actors::transport::{
    self, InboundEvent, TlsConfig, TlsFiles, Transport, TransportConfig,
};
use sipmesh_node::config::Cli;
use sipmesh_test_support::{free_port, test_ip};

const WAIT: Duration = Duration::from_secs(5);

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

async fn ws_client<S>(stream: S, url: &str) -> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    let (ws, _) = timeout(WAIT, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("upgrade before timeout")
        .expect("upgrade accepted");
    ws
}

async fn connect_retrying(addr: SocketAddr) -> TcpStream {
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(addr).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node never listened on {addr}");
}

fn register(branch: &str) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=ws1\r\n\
         To: <sip:alice@example.com>\r\n\
         Call-ID: {branch}@ws.test\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[tokio::test]
async fn register_over_websocket_through_the_node() {
    let ip = test_ip("transport-tls-ws-register-ws");
    let port = free_port(ip);
    let addr = SocketAddr::new(ip, port);
    let config = Cli::try_parse_from([
        "sipmesh",
        "--listen",
        &format!("ws:{addr}"),
        "--domain",
        "example.com",
    ])
    .unwrap()
    .into_config()
    .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let node = tokio::spawn(sipmesh_node::run(config, async {
        let _ = stopped.await;
    }));
    let tcp = connect_retrying(addr).await;
    let mut ws = ws_client(tcp, &format!("ws://{addr}/")).await;
    ws.send(Message::text(register("wsreg1"))).await.unwrap();
    let answer = loop {
        match timeout(WAIT, ws.next())
            .await
            .expect("answer before timeout")
        {
            Some(Ok(Message::Text(t))) if t.starts_with("SIP/2.0 1") => {}
            Some(Ok(Message::Text(t))) => break t.to_string(),
            Some(Ok(_)) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    };
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    assert!(answer.contains("df7jal23ls0d.invalid"), "{answer}");
    let _ = stop.send(());
    timeout(Duration::from_secs(10), node)
        .await
        .expect("node stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn dev_cert_files_serve_a_wss_upgrade() {
    let dir = std::env::temp_dir().join(format!("sipmesh-devcert-it-{}", std::process::id()));
    let status = std::process::Command::new(SIPMESH)
        .args(["dev-cert", "--out"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let tls = TlsConfig::load(&TlsFiles {
        cert: Some(dir.join("cert.pem")),
        key: Some(dir.join("key.pem")),
        client_ca: None,
        server_ca: None,
    })
    .unwrap();
    let mut config = TransportConfig::new(vec![(
        Transport::Wss,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )]);
    config.tls = Some(tls);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (handle, _tasks) = transport::start(config, tx).await.unwrap();
    let server = handle.local_addr(Transport::Wss).unwrap();

    let tcp = TcpStream::connect(server).await.unwrap();
    let tls = connector(&dir.join("ca.pem"))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the dev CA verifies the dev server certificate");
    let mut ws = ws_client(tls, &format!("wss://localhost:{}/", server.port())).await;
    ws.send(Message::text(register("wssreg1"))).await.unwrap();
    match timeout(WAIT, rx.recv()).await.unwrap().unwrap() {
        InboundEvent::Message(m) => assert_eq!(m.transport, Transport::Wss),
        other => panic!("expected a message, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn connector(ca: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[test]
fn wss_without_a_certificate_is_a_configuration_error() {
    let err = Cli::try_parse_from(["sipmesh", "--listen", "wss:127.0.0.1:0"])
        .unwrap()
        .into_config()
        .unwrap_err();
    assert!(format!("{err:#}").contains("tls_cert"), "{err:#}");
}
