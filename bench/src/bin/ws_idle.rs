//! `ws_idle`: a load client for sipmesh's WebSocket (RFC 7118) listeners.
//!
//! It opens `--connections` WS or WSS connections (subprotocol `sip`, RFC 7118 §4.1) at
//! `--rate` new connections per second, spread over several local source addresses so that
//! ephemeral ports do not run out, and sends one REGISTER (RFC 3261 §10.2) per connection with
//! a unique user and a `.invalid` Contact host (RFC 7118 §5.2). It prints a `ramp` line once
//! every connection is registered or has failed.
//!
//! Then either
//! - (default) it holds the connections idle, answering the server's pings (tungstenite
//!   queues the pong while reading), until standard input closes or `--hold` seconds pass,
//!   and prints a `hold` line: how many connections the server closed meanwhile; or
//! - (`--burst K`) every connection sends K more REGISTERs back to back (each waits for the
//!   previous 200), all starting together, and it prints a `burst` line with REGISTER/s.
//!
//! Output lines are `WORD key=value ...`, for `bench/ws/run.py` to parse.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Idle WebSocket/WSS connections and REGISTER load against a sipmesh node")]
struct Args {
    /// Server URL: `ws://IP:PORT` or `wss://IP:PORT`.
    #[arg(long)]
    url: String,
    /// PEM CA certificate to trust for WSS (for example the `ca.pem` of `sipmesh dev-cert`).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Number of connections.
    #[arg(long, default_value_t = 1000)]
    connections: u64,
    /// New connections per second during the ramp.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Local source addresses, comma-separated; `A-B` is an IPv4 range.
    #[arg(long, default_value = "127.0.0.2-127.0.0.9")]
    sources: String,
    /// After the ramp, each connection sends this many more REGISTERs back to back, and the
    /// client exits (the max-rate test). 0: hold the connections idle instead.
    #[arg(long, default_value_t = 0)]
    burst: u64,
    /// Seconds to hold the idle connections; default: until standard input closes.
    #[arg(long)]
    hold: Option<u64>,
    /// Seconds allowed for each connect, handshake and REGISTER transaction.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Number of the first user (`u<N>`), so that several clients can run side by side.
    #[arg(long, default_value_t = 0)]
    first_user: u64,
    /// Domain in the Request-URI and the AOR; default: the server's IP.
    #[arg(long)]
    domain: Option<String>,
    /// Worker threads of the client's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// Plain or TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Ws,
    Wss,
}

/// What every connection task needs.
struct Plan {
    scheme: Scheme,
    server: SocketAddr,
    sources: Vec<IpAddr>,
    domain: String,
    tls: Option<TlsConnector>,
    step_timeout: Duration,
    burst: u64,
    first_user: u64,
}

/// Counters shared by the tasks and the reporter.
#[derive(Default)]
struct Stats {
    /// Connections that got their first 200 (or failed): the ramp is over when this reaches N.
    done: AtomicU64,
    /// Connections whose WebSocket upgrade succeeded.
    established: AtomicU64,
    registered: AtomicU64,
    /// Nanoseconds since start of the last first-REGISTER 200.
    last_registered_ns: AtomicU64,
    /// Connections closed by the server, or broken, while held idle.
    closed_while_held: AtomicU64,
    burst_ok: AtomicU64,
    burst_done: AtomicU64,
    /// Failure kind (`connect`, `tls`, `http_503`, `register_480`, ...) → count.
    failures: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    fn fail(&self, kind: String) {
        if let Ok(mut map) = self.failures.lock() {
            *map.entry(kind).or_insert(0) += 1;
        }
    }

    fn failures_text(&self) -> String {
        let Ok(map) = self.failures.lock() else {
            return String::new();
        };
        map.iter().map(|(k, v)| format!(" fail_{k}={v}")).collect()
    }

    fn failed(&self) -> u64 {
        self.failures.lock().map_or(0, |m| m.values().sum())
    }
}

/// Why a connection failed: the key of [`Stats::failures`].
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// Key `connect_<errno>` (24: EMFILE, 99: EADDRNOTAVAIL, 111: ECONNREFUSED).
    #[error("connect_{}", .0.raw_os_error().unwrap_or(0))]
    Connect(std::io::Error),
    #[error("tls_{:?}", .0.kind())]
    Tls(std::io::Error),
    #[error("http_{0}")]
    Http(u16),
    #[error("websocket")]
    WebSocket(WsError),
    #[error("timeout_{0}")]
    Timeout(&'static str),
    #[error("register_{0}")]
    Status(u16),
    #[error("closed")]
    Closed,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (scheme, server) = parse_url(&args.url)?;
    let tls = match scheme {
        Scheme::Ws => None,
        Scheme::Wss => Some(connector(args.ca.as_ref())?),
    };
    let plan = Arc::new(Plan {
        scheme,
        server,
        sources: parse_sources(&args.sources)?,
        domain: args
            .domain
            .clone()
            .unwrap_or_else(|| server.ip().to_string()),
        tls,
        step_timeout: Duration::from_secs(args.timeout),
        burst: args.burst,
        first_user: args.first_user,
    });
    let stats = Arc::new(Stats::default());
    let (go_tx, go_rx) = watch::channel(false);
    let start = Instant::now();

    // Ramp: one task per connection, started at `rate` per second.
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..args.connections {
        tick.tick().await;
        let task = connection(
            Arc::clone(&plan),
            Arc::clone(&stats),
            n,
            start,
            go_rx.clone(),
        );
        tokio::spawn(task);
    }
    while stats.done.load(Ordering::Relaxed) < args.connections {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let registered = stats.registered.load(Ordering::Relaxed);
    let ramp_s = Duration::from_nanos(stats.last_registered_ns.load(Ordering::Relaxed))
        .as_secs_f64()
        .max(1e-9);
    println!(
        "ramp scheme={} connections={} established={} registered={} failed={} ramp_s={:.3} register_per_s={:.1}{}",
        if scheme == Scheme::Wss { "wss" } else { "ws" },
        args.connections,
        stats.established.load(Ordering::Relaxed),
        registered,
        stats.failed(),
        ramp_s,
        registered as f64 / ramp_s,
        stats.failures_text(),
    );

    if args.burst > 0 {
        let t0 = Instant::now();
        go_tx.send_replace(true);
        while stats.burst_done.load(Ordering::Relaxed) < registered {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        let ok = stats.burst_ok.load(Ordering::Relaxed);
        println!(
            "burst connections={registered} per_connection={} ok={ok} elapsed_s={secs:.3} register_per_s={:.1}{}",
            args.burst,
            ok as f64 / secs,
            stats.failures_text(),
        );
        return Ok(());
    }

    println!("ready open={}", registered);
    match args.hold {
        Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
        None => {
            // Until standard input closes.
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 256];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        }
    }
    let closed = stats.closed_while_held.load(Ordering::Relaxed);
    println!(
        "hold open={} closed_by_server={closed}",
        registered.saturating_sub(closed)
    );
    Ok(())
}

/// One connection's life: connect, register, then hold or burst.
async fn connection(
    plan: Arc<Plan>,
    stats: Arc<Stats>,
    n: u64,
    start: Instant,
    go: watch::Receiver<bool>,
) {
    let source = plan
        .sources
        .get((n as usize) % plan.sources.len().max(1))
        .copied()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let tcp = match timeout(plan.step_timeout, tcp_connect(source, plan.server)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return first_failed(&stats, &Failure::Connect(e)),
        Err(_) => return first_failed(&stats, &Failure::Timeout("connect")),
    };
    match &plan.tls {
        None => session(&plan, &stats, n, start, go, tcp).await,
        Some(tls) => {
            let name = ServerName::IpAddress(plan.server.ip().into());
            match timeout(plan.step_timeout, tls.connect(name, tcp)).await {
                Ok(Ok(stream)) => session(&plan, &stats, n, start, go, stream).await,
                Ok(Err(e)) => first_failed(&stats, &Failure::Tls(e)),
                Err(_) => first_failed(&stats, &Failure::Timeout("tls")),
            }
        }
    }
}

fn first_failed(stats: &Stats, failure: &Failure) {
    stats.fail(failure.to_string());
    stats.done.fetch_add(1, Ordering::Relaxed);
}

/// The WebSocket part of [`connection`], over TCP or TLS.
async fn session<S>(
    plan: &Plan,
    stats: &Stats,
    n: u64,
    start: Instant,
    mut go: watch::Receiver<bool>,
    stream: S,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let scheme = if plan.scheme == Scheme::Wss {
        "wss"
    } else {
        "ws"
    };
    let Ok(mut request) = format!("{scheme}://{}/", plan.server).into_client_request() else {
        return first_failed(stats, &Failure::Http(0));
    };
    request
        .headers_mut()
        .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("sip"));
    // Small buffers: the client holds as many connections as the server.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let upgrade = tokio_tungstenite::client_async_with_config(request, stream, Some(config));
    let mut ws = match timeout(plan.step_timeout, upgrade).await {
        Ok(Ok((ws, _response))) => ws,
        Ok(Err(WsError::Http(response))) => {
            return first_failed(stats, &Failure::Http(response.status().as_u16()));
        }
        Ok(Err(e)) => return first_failed(stats, &Failure::WebSocket(e)),
        Err(_) => return first_failed(stats, &Failure::Timeout("upgrade")),
    };
    stats.established.fetch_add(1, Ordering::Relaxed);
    let user = plan.first_user + n;
    let mut cseq = 1;
    if let Err(f) = register(plan, &mut ws, user, cseq).await {
        return first_failed(stats, &f);
    }
    let at = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    stats.last_registered_ns.fetch_max(at, Ordering::Relaxed);
    stats.registered.fetch_add(1, Ordering::Relaxed);
    stats.done.fetch_add(1, Ordering::Relaxed);

    if plan.burst > 0 {
        if go.wait_for(|go| *go).await.is_err() {
            return;
        }
        for _ in 0..plan.burst {
            cseq += 1;
            match register(plan, &mut ws, user, cseq).await {
                Ok(()) => {
                    stats.burst_ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(f) => {
                    stats.fail(format!("burst_{f}"));
                    break;
                }
            }
        }
        stats.burst_done.fetch_add(1, Ordering::Relaxed);
        return;
    }

    // Idle: reading answers pings; anything else is ignored until the server closes.
    while let Some(Ok(_)) = ws.next().await {}
    stats.closed_while_held.fetch_add(1, Ordering::Relaxed);
}

/// Sends one REGISTER for user `u<user>` and waits for its final response.
async fn register<S>(
    plan: &Plan,
    ws: &mut WebSocketStream<S>,
    user: u64,
    cseq: u64,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let transport = if plan.scheme == Scheme::Wss {
        "WSS"
    } else {
        "WS"
    };
    let domain = &plan.domain;
    // RFC 7118 §5.2: the client's own address is unknown, so Via and Contact use a random
    // `.invalid` host.
    let host = format!("c{user:x}.invalid");
    let message = format!(
        "REGISTER sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {host};branch=z9hG4bK-{user}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:u{user}@{domain}>;tag=t{user}\r\n\
         To: <sip:u{user}@{domain}>\r\n\
         Call-ID: reg-{user}@ws-idle\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:u{user}@{host};transport=ws>\r\n\
         Expires: 3600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let exchange = async {
        ws.send(Message::text(message))
            .await
            .map_err(Failure::WebSocket)?;
        loop {
            let frame = match ws.next().await {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Err(Failure::WebSocket(e)),
                None => return Err(Failure::Closed),
            };
            let text = match &frame {
                Message::Text(t) => t.as_str().as_bytes(),
                Message::Binary(b) => b.as_ref(),
                Message::Close(_) => return Err(Failure::Closed),
                _ => continue,
            };
            match status_code(text) {
                Some(code) if code < 200 => continue,
                Some(200) => return Ok(()),
                Some(code) => return Err(Failure::Status(code)),
                None => continue,
            }
        }
    };
    timeout(plan.step_timeout, exchange)
        .await
        .unwrap_or(Err(Failure::Timeout("register")))
}

/// The status code of a SIP response (`SIP/2.0 200 OK`), or `None` for a request.
fn status_code(message: &[u8]) -> Option<u16> {
    let rest = message.strip_prefix(b"SIP/2.0 ")?;
    let code = std::str::from_utf8(rest.get(..3)?).ok()?;
    code.parse().ok()
}

/// Connects from `source` (port chosen by the kernel) to `server`.
async fn tcp_connect(source: IpAddr, server: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if source.is_ipv4() == server.is_ipv4() && !source.is_unspecified() {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A TLS connector trusting `ca` (PEM), or the webpki-free empty store when none is given
/// (which then fails every handshake: WSS needs `--ca`).
fn connector(ca: Option<&PathBuf>) -> anyhow::Result<TlsConnector> {
    let Some(ca) = ca else {
        bail!("wss:// needs --ca FILE");
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {ca:?}"))? {
        roots.add(cert.with_context(|| format!("parsing {ca:?}"))?)?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Parses `ws://IP:PORT` or `wss://IP:PORT` (an IP literal; a trailing `/` is allowed).
fn parse_url(url: &str) -> anyhow::Result<(Scheme, SocketAddr)> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("wss://") {
        (Scheme::Wss, rest)
    } else if let Some(rest) = url.strip_prefix("ws://") {
        (Scheme::Ws, rest)
    } else {
        bail!("{url:?} is not ws://IP:PORT or wss://IP:PORT");
    };
    let addr = rest
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("{url:?}: expected an IP:PORT"))?;
    Ok((scheme, addr))
}

/// Parses `127.0.0.2-127.0.0.9,10.0.0.1`.
fn parse_sources(spec: &str) -> anyhow::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.parse().with_context(|| format!("source {a:?}"))?;
            let b: Ipv4Addr = b.parse().with_context(|| format!("source {b:?}"))?;
            if u32::from(b) < u32::from(a) || u32::from(b) - u32::from(a) > 65_536 {
                bail!("source range {part:?} is empty or too large");
            }
            out.extend((u32::from(a)..=u32::from(b)).map(|x| IpAddr::V4(Ipv4Addr::from(x))));
        } else {
            out.push(part.parse().with_context(|| format!("source {part:?}"))?);
        }
    }
    if out.is_empty() {
        bail!("no source address");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_expand_ranges_and_lists() {
        let got = parse_sources("127.0.0.2-127.0.0.4, 10.0.0.1").unwrap();
        let want: Vec<IpAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "10.0.0.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert!(parse_sources("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_sources("").is_err());
    }

    #[test]
    fn urls_need_a_ws_scheme_and_an_ip() {
        let (s, a) = parse_url("wss://127.0.0.1:5081/").unwrap();
        assert_eq!(s, Scheme::Wss);
        assert_eq!(a, "127.0.0.1:5081".parse().unwrap());
        assert_eq!(parse_url("ws://[::1]:80").unwrap().0, Scheme::Ws);
        assert!(parse_url("http://127.0.0.1:80").is_err());
        assert!(parse_url("ws://localhost:80").is_err());
    }

    #[test]
    fn status_codes_of_responses_only() {
        assert_eq!(status_code(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(
            status_code(b"SIP/2.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"OPTIONS sip:x SIP/2.0\r\n"), None);
        assert_eq!(status_code(b"SIP/2.0 2"), None);
    }
}
