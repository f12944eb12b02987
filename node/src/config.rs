//! Node configuration: the command line and the TOML file, parsed once into typed settings.
//!
//! Both sources describe the same [`RawConfig`]; command-line values override the file's. The raw
//! form is then validated into [`NodeConfig`] ("parse, don't validate"): every later layer takes
//! typed values and never re-checks them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Deserialize;

use sipmesh_actors::engine::{EngineConfig, ListenSpec, RelayPolicy};
use sipmesh_actors::transport::Transport;
use sipmesh_protocol::registrar::RegistrarPolicy;

/// Command line of the `sipmesh` binary.
#[derive(Debug, Parser)]
#[command(
    name = "sipmesh",
    version,
    about = "Clustered SIP registrar and stateful proxy"
)]
pub struct Cli {
    /// A listener, `udp:IP:PORT` or `tcp:IP:PORT` (IPv6 as `udp:[::1]:5060`). Repeatable.
    /// Default: `udp:127.0.0.1:5060` and `tcp:127.0.0.1:5060`.
    #[arg(long = "listen", value_name = "TRANSPORT:IP:PORT")]
    pub listen: Vec<String>,
    /// A SIP domain this node is responsible for. Repeatable. The listen addresses are always local.
    #[arg(long = "domain", value_name = "NAME")]
    pub domain: Vec<String>,
    /// A TOML configuration file with the same settings; command-line values win.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter in `RUST_LOG` syntax (for example `info,sipmesh_actors=debug`).
    #[arg(long = "log-filter", value_name = "FILTER")]
    pub log_filter: Option<String>,
    /// Forward requests for domains that are not ours (default: refuse them with 403).
    #[arg(long = "relay")]
    pub relay: bool,
}

/// The settings as written by a user, before validation. Field names are the TOML keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Listeners, as on the command line (`"udp:127.0.0.1:5060"`).
    #[serde(default)]
    pub listen: Vec<String>,
    /// Local domains.
    #[serde(default)]
    pub domain: Vec<String>,
    /// Log filter.
    pub log_filter: Option<String>,
    /// Relay requests for foreign domains.
    pub relay: Option<bool>,
    /// Largest SIP message accepted, in bytes (default 65536).
    pub max_message_size: Option<usize>,
    /// Seconds an idle TCP connection is kept (default 600).
    pub tcp_idle_timeout: Option<u64>,
    /// Seconds given to running transactions on SIGTERM/SIGINT (default 5).
    pub shutdown_grace: Option<u64>,
    /// Registrar settings.
    #[serde(default)]
    pub registrar: RawRegistrar,
}

/// `[registrar]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistrar {
    /// Shortest registration accepted (423 below), seconds.
    pub min_expires: Option<u32>,
    /// Longest registration granted (longer requests are lowered), seconds.
    pub max_expires: Option<u32>,
    /// Registration time when the request names none, seconds.
    pub default_expires: Option<u32>,
    /// Most contacts one AOR may hold.
    pub max_contacts: Option<usize>,
}

/// Validated configuration of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Log filter directive.
    pub log_filter: String,
    /// The engine's settings (listeners, domains, registrar policy, limits).
    pub engine: EngineConfig,
    /// How long a graceful shutdown waits for transactions to finish.
    pub shutdown_grace: Duration,
}

impl Cli {
    /// Merges the command line over the configuration file (if any) and validates the result.
    pub fn into_config(self) -> anyhow::Result<NodeConfig> {
        let mut raw = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<RawConfig>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => RawConfig::default(),
        };
        if !self.listen.is_empty() {
            raw.listen = self.listen;
        }
        raw.domain.extend(self.domain);
        if self.log_filter.is_some() {
            raw.log_filter = self.log_filter;
        }
        if self.relay {
            raw.relay = Some(true);
        }
        NodeConfig::try_from(raw)
    }
}

impl TryFrom<RawConfig> for NodeConfig {
    type Error = anyhow::Error;

    fn try_from(raw: RawConfig) -> anyhow::Result<Self> {
        let mut listen = raw
            .listen
            .iter()
            .map(|s| parse_listen(s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if listen.is_empty() {
            let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060);
            listen.push(ListenSpec {
                kind: Transport::Udp,
                addr: local,
            });
            listen.push(ListenSpec {
                kind: Transport::Tcp,
                addr: local,
            });
        }
        let defaults = RegistrarPolicy::default();
        let registrar = RegistrarPolicy {
            min_expires: raw.registrar.min_expires.unwrap_or(defaults.min_expires),
            max_expires: raw.registrar.max_expires.unwrap_or(defaults.max_expires),
            default_expires: raw
                .registrar
                .default_expires
                .unwrap_or(defaults.default_expires),
            max_contacts: raw.registrar.max_contacts.unwrap_or(defaults.max_contacts),
            default_q: defaults.default_q,
        };
        if registrar.min_expires > registrar.max_expires {
            bail!(
                "registrar.min_expires ({}) is above registrar.max_expires ({})",
                registrar.min_expires,
                registrar.max_expires
            );
        }
        if registrar.max_contacts == 0 {
            bail!("registrar.max_contacts must be at least 1");
        }
        let max_message_size = raw.max_message_size.unwrap_or(65_536);
        if !(1024..=16 * 1024 * 1024).contains(&max_message_size) {
            bail!("max_message_size must be between 1024 and 16777216 bytes");
        }
        for d in &raw.domain {
            if d.is_empty() || d.contains(|c: char| c.is_whitespace() || c == '@') {
                bail!("invalid domain {d:?}");
            }
        }
        Ok(Self {
            log_filter: raw.log_filter.unwrap_or_else(|| "info".to_owned()),
            shutdown_grace: Duration::from_secs(raw.shutdown_grace.unwrap_or(5)),
            engine: EngineConfig {
                listen,
                domains: raw.domain.iter().map(|d| d.to_ascii_lowercase()).collect(),
                relay: if raw.relay.unwrap_or(false) {
                    RelayPolicy::Relay
                } else {
                    RelayPolicy::Refuse
                },
                max_message_size,
                tcp_idle_timeout: Duration::from_secs(raw.tcp_idle_timeout.unwrap_or(600)),
                registrar,
            },
        })
    }
}

/// Parses `udp:IP:PORT` / `tcp:[IPv6]:PORT`.
pub fn parse_listen(spec: &str) -> anyhow::Result<ListenSpec> {
    let Some((kind, addr)) = spec.split_once(':') else {
        bail!("listen spec {spec:?} is not TRANSPORT:IP:PORT");
    };
    let kind = match kind.to_ascii_lowercase().as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        other => bail!("listen spec {spec:?}: transport {other:?} is not supported (udp, tcp)"),
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("listen spec {spec:?}: {addr:?} is not IP:PORT"))?;
    Ok(ListenSpec { kind, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs_parse_v4_and_v6() {
        let s = parse_listen("udp:127.0.0.1:5060").unwrap();
        assert_eq!(s.kind, Transport::Udp);
        assert_eq!(s.addr, "127.0.0.1:5060".parse().unwrap());
        let s = parse_listen("TCP:[::1]:5070").unwrap();
        assert_eq!(s.kind, Transport::Tcp);
        assert_eq!(s.addr, "[::1]:5070".parse().unwrap());
        assert!(parse_listen("sctp:127.0.0.1:5060").is_err());
        assert!(parse_listen("udp:127.0.0.1").is_err());
    }

    #[test]
    fn defaults_listen_on_loopback_udp_and_tcp() {
        let cfg = NodeConfig::try_from(RawConfig::default()).unwrap();
        assert_eq!(cfg.engine.listen.len(), 2);
        assert_eq!(cfg.engine.max_message_size, 65_536);
        assert_eq!(cfg.engine.relay, RelayPolicy::Refuse);
    }

    #[test]
    fn toml_file_is_read_and_validated() {
        let raw: RawConfig = toml::from_str(
            "listen = [\"udp:127.0.0.1:5070\"]\ndomain = [\"Example.COM\"]\n\
             [registrar]\nmin_expires = 30\nmax_expires = 600\n",
        )
        .unwrap();
        let cfg = NodeConfig::try_from(raw).unwrap();
        assert_eq!(cfg.engine.domains, vec!["example.com".to_owned()]);
        assert_eq!(cfg.engine.registrar.min_expires, 30);
        let bad: RawConfig =
            toml::from_str("[registrar]\nmin_expires = 900\nmax_expires = 600\n").unwrap();
        assert!(NodeConfig::try_from(bad).is_err());
        assert!(toml::from_str::<RawConfig>("unknown_key = 1").is_err());
    }
}
