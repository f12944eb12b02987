//! TLS for SIP (RFC 3261 §26.2, RFC 5630): certificates, the rustls configurations, hot reload,
//! and the TLS side of accepted and outgoing connections.
//!
//! One [`TlsConfig`] serves every TLS and WSS listener and every outgoing TLS connection:
//! - the server side presents one certificate chain (whatever SNI name the client asks for),
//!   read from PEM files and swapped atomically by [`TlsConfig::reload`] (wired to SIGHUP by the
//!   node): handshakes after the swap get the new chain, established connections are untouched;
//! - client certificates are verified against a CA bundle when one is configured (mutual TLS),
//!   otherwise not requested;
//! - outgoing connections verify the server against a configured CA bundle or the system roots.
//!
//! Only TLS 1.2 and 1.3 are enabled, with the aws-lc-rs provider's default cipher suites.
//!
//! The connections themselves run on the TCP machinery (`tcp/connection.rs`), which is generic
//! over the stream: a TLS connection is a TCP connection whose bytes go through rustls.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The protocol versions we speak: TLS 1.3 and 1.2, nothing older.
static VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Errors loading certificates or building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("reading {what} from {path}: {source}")]
    Pem {
        /// What the file should hold ("certificate chain", "private key", "CA bundle").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The parser's or the file system's error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file held no certificate.
    #[error("{path} holds no certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the key, the chain or a CA certificate.
    #[error("{context}: {source}")]
    Rustls {
        /// What was being done.
        context: &'static str,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built (for example an empty CA bundle).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// `reload` was called on a configuration without a server certificate.
    #[error("this TLS configuration has no server certificate to reload")]
    NoServerCertificate,
}

/// Where the TLS material lives. Paths are read by [`TlsConfig::load`] and again by
/// [`TlsConfig::reload`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, end-entity first. Needed for TLS and WSS listeners.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA bundle: when set, clients of our listeners must present a certificate it signed.
    pub client_ca: Option<PathBuf>,
    /// PEM CA bundle to verify the servers we connect to; `None` uses the system roots.
    pub server_ca: Option<PathBuf>,
}

/// The loaded TLS configuration: cheap to clone, shared by listeners and outgoing connections.
#[derive(Clone)]
pub struct TlsConfig {
    /// Present when a certificate and key were configured.
    server: Option<Arc<ServerConfig>>,
    client: Arc<ClientConfig>,
    /// The swappable certificate behind `server`.
    certs: Option<Arc<ReloadableCert>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server", &self.certs)
            .finish_non_exhaustive()
    }
}

/// Two configurations are equal when they are the same loaded configuration.
impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.client, &other.client)
    }
}

impl Eq for TlsConfig {}

impl TlsConfig {
    /// Reads the files and builds the server (when `cert` and `key` are set) and client
    /// configurations.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (server, certs) = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => {
                let certs = Arc::new(ReloadableCert::load(cert, key, Arc::clone(&provider))?);
                let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
                    .with_protocol_versions(VERSIONS)
                    .map_err(|source| TlsError::Rustls {
                        context: "server protocol versions",
                        source,
                    })?;
                let builder = match &files.client_ca {
                    Some(ca) => {
                        let roots = Arc::new(read_roots(ca)?);
                        let verifier = WebPkiClientVerifier::builder_with_provider(
                            roots,
                            Arc::clone(&provider),
                        )
                        .build()?;
                        builder.with_client_cert_verifier(verifier)
                    }
                    None => builder.with_no_client_auth(),
                };
                let resolver: Arc<dyn ResolvesServerCert> = certs.clone();
                let config = builder.with_cert_resolver(resolver);
                (Some(Arc::new(config)), Some(certs))
            }
            _ => (None, None),
        };
        let roots = match &files.server_ca {
            Some(ca) => read_roots(ca)?,
            None => system_roots(),
        };
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)
            .map_err(|source| TlsError::Rustls {
                context: "client protocol versions",
                source,
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            server,
            client: Arc::new(client),
            certs,
        })
    }

    /// A client-only configuration verifying servers against the system roots, for outgoing
    /// TLS when nothing was configured.
    pub fn system_client() -> Result<Self, TlsError> {
        Self::load(&TlsFiles::default())
    }

    /// True when listeners can use this configuration (a certificate and key were loaded).
    pub fn has_server_certificate(&self) -> bool {
        self.server.is_some()
    }

    /// Re-reads the certificate chain and key files and swaps them in for new handshakes.
    /// Established connections keep working. On error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.certs
            .as_ref()
            .ok_or(TlsError::NoServerCertificate)?
            .reload()
    }

    pub(crate) fn acceptor(&self) -> Option<TlsAcceptor> {
        self.server
            .as_ref()
            .map(|s| TlsAcceptor::from(Arc::clone(s)))
    }

    pub(crate) fn connector(&self) -> TlsConnector {
        TlsConnector::from(Arc::clone(&self.client))
    }
}

/// The server certificate, swapped as a whole on reload ([`ResolvesServerCert`]: every
/// handshake takes the `Arc` current at its start).
struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCert")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadableCert {
    fn load(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let current = read_certified_key(cert, key, &provider)?;
        Ok(Self {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            provider,
            current: RwLock::new(Arc::new(current)),
        })
    }

    fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(read_certified_key(
            &self.cert_path,
            &self.key_path,
            &self.provider,
        )?);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One chain for every SNI name.
        let current = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(Arc::clone(&current))
    }
}

fn read_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(cert, "certificate chain")?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
        what: "private key",
        path: key.to_owned(),
        source,
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Rustls {
        context: "certificate and key",
        source,
    })
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |source| TlsError::Pem {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, "CA bundle")? {
        roots.add(cert).map_err(|source| TlsError::Rustls {
            context: "adding a CA certificate",
            source,
        })?;
    }
    Ok(roots)
}

/// The system's trust anchors; unreadable ones are skipped with a warning.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "reading system CA certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system CA certificates loaded");
    roots
}

/// The TLS client handshake on an established TCP connection to `peer`. The server is verified
/// against the peer's IP address: the transport only knows addresses (see the report on Via
/// host names for what it would take to verify a domain name instead).
pub(crate) async fn connect(
    connector: &TlsConnector,
    stream: TcpStream,
    peer: SocketAddr,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::from(peer.ip());
    connector.connect(name, stream).await
}

#[cfg(test)]
pub(crate) mod tests;
