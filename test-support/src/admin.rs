//! A blocking HTTP/1.1 client for the node's admin endpoint (`--admin`): one request per
//! connection, as the endpoint serves them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::HarnessError;

/// Sends `method path` to `addr` and returns the status code and the body.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), HarnessError> {
    let context = format!("admin {method} {path} at {addr}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| HarnessError::io(context.clone(), e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| HarnessError::io(context.clone(), e))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| HarnessError::io(context.clone(), e))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| HarnessError::io(context.clone(), e))?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            HarnessError::io(
                context.clone(),
                std::io::Error::other(format!("not an HTTP response: {response:?}")),
            )
        })?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
