//! # sipmesh-node: a node's startup, configuration and shutdown
//!
//! [`run`] takes a validated [`config::NodeConfig`] and a shutdown future, starts the SIP engine
//! (transports, transaction shards, registrar and proxy) and, when the future completes, stops
//! accepting new requests and gives running transactions a bounded time to finish. A node with
//! `[cluster] listen` also starts its cluster layer ([`sipmesh_cluster::Membership`]) and serves
//! it on the admin endpoint's `GET /cluster`.

pub mod admin;
pub mod config;
pub mod dev_cert;

use std::future::Future;

use anyhow::Context;
use tracing::info;

use sipmesh_actors::engine::Engine;
use sipmesh_actors::transport::TlsConfig;
use sipmesh_cluster::Membership;

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
    let membership = match config.cluster.clone() {
        Some(cluster) => Some(
            Membership::start(cluster)
                .await
                .context("starting the cluster layer")?,
        ),
        None => None,
    };
    let admin = match config.admin {
        Some(addr) => {
            let listener = admin::bind(addr)
                .await
                .with_context(|| format!("binding the admin endpoint {addr}"))?;
            Some(tokio::spawn(admin::serve(
                listener,
                engine.admin(),
                membership.clone(),
                config.test_hooks,
            )))
        }
        None => None,
    };
    let reloader = config
        .tls
        .clone()
        .map(|tls| tokio::spawn(reload_on_sighup(tls)));
    shutdown.await;
    for task in [reloader, admin].into_iter().flatten() {
        task.abort();
    }
    if let Some(membership) = &membership {
        membership.shutdown();
    }
    info!(grace = ?config.shutdown_grace, "shutting down");
    engine.shutdown(config.shutdown_grace).await;
    Ok(())
}

/// Re-reads the TLS certificate and key on every SIGHUP; new handshakes use the new pair,
/// established connections are kept. A failed reload keeps the old pair.
async fn reload_on_sighup(tls: TlsConfig) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP");
                return;
            }
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate reload failed; keeping the old one")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tls;
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
