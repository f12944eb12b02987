//! # sipmesh-node: a node's startup, configuration and shutdown
//!
//! [`run`] takes a validated [`config::NodeConfig`] and a shutdown future, starts the SIP engine
//! (transports, transaction shards, registrar and proxy) and, when the future completes, stops
//! accepting new requests and gives running transactions a bounded time to finish.

pub mod config;

use std::future::Future;

use anyhow::Context;
use tracing::info;

use sipmesh_actors::engine::Engine;

/// Runs a node until `shutdown` completes, then shuts down gracefully.
pub async fn run(
    config: config::NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let engine = Engine::start(config.engine.clone())
        .await
        .context("starting the SIP engine")?;
    for (kind, addr) in engine.local_addrs() {
        info!(%kind, %addr, "listening");
    }
    shutdown.await;
    info!(grace = ?config.shutdown_grace, "shutting down");
    engine.shutdown(config.shutdown_grace).await;
    Ok(())
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
