//! The `sipmesh` binary: parse the command line, set up logging, run a node until a signal.
//!
//! Everything of substance lives in the library (`sipmesh_node::run`) so that tests can start a
//! node in-process; this file only wires the process to it.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use sipmesh_node::config::{Cli, ClusterCommand, Command};

/// mimalloc rather than glibc malloc: the proxy allocates many small, short-lived buffers per
/// message from several threads, and mimalloc returns freed memory to the OS instead of keeping
/// it in per-thread arenas (see docs/PERFORMANCE.md for the measured difference).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    match cli.command.take() {
        None => {}
        Some(Command::Cluster(ClusterCommand::Status { admin, json })) => {
            print!("{}", sipmesh_node::admin::cluster_status(admin, json)?);
            return Ok(());
        }
        Some(Command::DevCert { out, host }) => {
            let files = sipmesh_node::dev_cert::write_dev_cert(&out, &host)?;
            println!(
                "wrote {}, {}, {} and {}\nstart WSS with: sipmesh --listen wss:127.0.0.1:8443 --tls-cert {} --tls-key {}\nclients trust {}",
                files.ca.display(),
                files.ca_key.display(),
                files.cert.display(),
                files.key.display(),
                files.cert.display(),
                files.key.display(),
                files.ca.display()
            );
            return Ok(());
        }
    }
    let config = cli.into_config()?;
    // Before the runtimes start: every heap fault from here on is a 4 KiB one (issue 6).
    let thp = sipmesh_node::memory::set_transparent_huge_pages(config.transparent_huge_pages);
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log_filter.clone());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter)?)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = thp {
        tracing::warn!(error = %e, "transparent huge pages setting not applied");
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.workers {
        runtime.worker_threads(n);
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(sipmesh_node::run(config, sipmesh_node::shutdown_signal()))
}
