//! The admin endpoint: a small HTTP/1.1 server on a loopback (or management) address.
//!
//! - `GET /status`: the engine's status as JSON (listeners, connections, store sizes).
//! - `GET /cluster`: the cluster members as this node sees them (id, address, state, epoch,
//!   lease and heartbeat ages, `actors`: the AOR actors, dialog actors, media sessions and
//!   stream connections each runs, and `owned_actors`: their sum, see [`crate::actor_counts`]);
//!   404 on a node that is not clustered.
//! - `GET /cluster/ping`: round trips to every peer's registrar router (over ractor_cluster)
//!   and to Redis, medians of 50 sequential calls.
//! - `POST /test/panic/aor/{aor}` and `POST /test/panic/dialog/{id}`: make one actor panic so a
//!   test can watch its supervisor restart it; `POST /test/panic/connection/{id}` (a number,
//!   or `tcp:ip:port` for the newest connection to that peer) makes a connection actor panic,
//!   and its supervisor closes that connection. Only with `--test-hooks`; otherwise 404.
//! - `POST /test/cluster/partition` and `/test/cluster/heal`: drop every cluster heartbeat in
//!   and out (a partition from the peers, not from Redis), and stop doing so. `--test-hooks`.
//!
//! One request per connection (`Connection: close`), the request head bounded to 8 KiB and
//! 5 seconds, no body read: enough for operators' `curl` and the tests, nothing to abuse.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use sipmesh_actors::engine::{EngineAdmin, HookError, HookTarget};
use sipmesh_cluster::Membership;

use crate::actor_counts::MemberCounts;

/// Largest request head read.
const MAX_HEAD: usize = 8192;

/// Sequential calls per target of `GET /cluster/ping`.
const PING_ROUNDS: usize = 50;

/// Longest time a client gets to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the admin listener; the returned future serves it until dropped.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    info!(addr = %listener.local_addr()?, "admin endpoint listening");
    Ok(listener)
}

/// Serves admin requests on `listener` forever.
pub async fn serve(
    listener: TcpListener,
    admin: EngineAdmin,
    cluster: Option<Membership>,
    owned: Option<MemberCounts>,
    test_hooks: bool,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let admin = admin.clone();
                let cluster = cluster.clone();
                let owned = owned.clone();
                tokio::spawn(async move {
                    let cluster = cluster.as_ref();
                    if let Err(e) =
                        handle(stream, &admin, cluster, owned.as_ref(), test_hooks).await
                    {
                        debug!(%peer, error = %e, "admin connection failed");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// An HTTP answer.
struct Reply {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn text(status: u16, reason: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

async fn handle(
    mut stream: TcpStream,
    admin: &EngineAdmin,
    cluster: Option<&Membership>,
    owned: Option<&MemberCounts>,
    test_hooks: bool,
) -> std::io::Result<()> {
    let reply = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => route(&head, admin, cluster, owned, test_hooks).await,
        Ok(Ok(None)) => Reply::text(
            431,
            "Request Header Fields Too Large",
            "request head over 8 KiB\n",
        ),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    let response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        reply.reason,
        reply.content_type,
        reply.body.len(),
        reply.body
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the blank line ending the head; `None` when it is over [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

async fn route(
    head: &str,
    admin: &EngineAdmin,
    cluster: Option<&Membership>,
    owned: Option<&MemberCounts>,
    test_hooks: bool,
) -> Reply {
    let mut parts = head.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/status") => json(&admin.status().await),
        ("GET", "/cluster") => match cluster {
            Some(membership) => {
                let mut view = membership.view();
                if let Some(owned) = owned {
                    owned.fill(&mut view);
                }
                json(&view)
            }
            None => Reply::text(404, "Not Found", "this node is not clustered\n"),
        },
        ("GET", "/cluster/ping") => match cluster {
            Some(membership) => json(&membership.ping(PING_ROUNDS).await),
            None => Reply::text(404, "Not Found", "this node is not clustered\n"),
        },
        ("POST", p) if p.starts_with("/test/") => {
            if !test_hooks {
                return Reply::text(
                    404,
                    "Not Found",
                    "test hooks are off (start with --test-hooks)\n",
                );
            }
            match (p, cluster) {
                ("/test/cluster/partition", Some(m)) => {
                    m.set_partitioned(true);
                    Reply::text(200, "OK", "partitioned from the peers\n")
                }
                ("/test/cluster/heal", Some(m)) => {
                    m.set_partitioned(false);
                    Reply::text(200, "OK", "healed\n")
                }
                _ => panic_hook(p, admin).await,
            }
        }
        (_, "/status" | "/cluster" | "/cluster/ping") => {
            Reply::text(405, "Method Not Allowed", "GET only\n")
        }
        _ => Reply::text(404, "Not Found", "unknown path\n"),
    }
}

/// A 200 with `value` as pretty JSON.
fn json(value: &impl serde::Serialize) -> Reply {
    match serde_json::to_string_pretty(value) {
        Ok(body) => Reply {
            status: 200,
            reason: "OK",
            content_type: "application/json",
            body: body + "\n",
        },
        Err(e) => Reply::text(500, "Internal Server Error", format!("{e}\n")),
    }
}

/// `sipmesh cluster status`: fetches `GET /cluster` from the admin endpoint at `addr` and
/// returns it as a table (or the raw JSON).
pub fn cluster_status(addr: SocketAddr, raw_json: bool) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /cluster HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("not an HTTP response from {addr}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        anyhow::bail!(
            "{addr}: {}: {}",
            head.lines().next().unwrap_or_default(),
            body.trim()
        );
    }
    if raw_json {
        return Ok(body.to_owned());
    }
    let view: serde_json::Value = serde_json::from_str(body)?;
    let mut out = format!(
        "{:<24} {:<22} {:<8} {:>6} {:>10} {:>10} {:<9} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
        "ID",
        "ADDRESS",
        "STATE",
        "EPOCH",
        "LEASE_AGE",
        "HB_AGE",
        "SESSION",
        "AORS",
        "DIALOGS",
        "MEDIA",
        "CONNS",
        "ACTORS"
    );
    let members = view
        .get("members")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    let field = |m: &serde_json::Value, k: &str| match m.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".to_owned(),
        Some(v) => v.to_string(),
    };
    for m in &members {
        let id = field(m, "id")
            + if m.get("is_self").and_then(|v| v.as_bool()) == Some(true) {
                " *"
            } else {
                ""
            };
        let ms = |k: &str| match m.get(k).and_then(|v| v.as_u64()) {
            Some(ms) => format!("{ms}ms"),
            None => "-".to_owned(),
        };
        let count = |k: &str| match m.get("actors").and_then(|a| a.get(k)) {
            Some(v) if v.is_u64() => v.to_string(),
            _ => "-".to_owned(),
        };
        out += &format!(
            "{:<24} {:<22} {:<8} {:>6} {:>10} {:>10} {:<9} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
            id,
            field(m, "addr"),
            field(m, "state"),
            field(m, "epoch"),
            ms("lease_age_ms"),
            ms("heartbeat_age_ms"),
            match m.get("connected").and_then(|v| v.as_bool()) {
                Some(true) => "up",
                Some(false) => "down",
                None => "-",
            },
            count("aors"),
            count("dialogs"),
            count("media_sessions"),
            count("connections"),
            field(m, "owned_actors"),
        );
    }
    Ok(out)
}

async fn panic_hook(path: &str, admin: &EngineAdmin) -> Reply {
    let target = if let Some(key) = path.strip_prefix("/test/panic/aor/") {
        HookTarget::Aor(percent_decode(key))
    } else if let Some(key) = path.strip_prefix("/test/panic/dialog/") {
        HookTarget::Dialog(percent_decode(key))
    } else if let Some(key) = path.strip_prefix("/test/panic/connection/") {
        HookTarget::Connection(percent_decode(key))
    } else {
        return Reply::text(404, "Not Found", "unknown test hook\n");
    };
    info!(?target, "test hook: injecting a panic");
    match admin.inject_panic(target).await {
        Ok(()) => Reply::text(200, "OK", "panicked\n"),
        Err(e @ HookError::NotFound(_)) => Reply::text(404, "Not Found", format!("{e}\n")),
        Err(e @ HookError::BadKey(_)) => Reply::text(400, "Bad Request", format!("{e}\n")),
        Err(e @ HookError::Unsupported(_)) => Reply::text(501, "Not Implemented", format!("{e}\n")),
    }
}

/// Decodes `%XX` escapes (keys hold `@`, `:` and `;`); a malformed escape is kept as is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(
            percent_decode("sip%3Aalice%40example.com"),
            "sip:alice@example.com"
        );
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
