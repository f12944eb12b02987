//! Optional TLS between members: every session of the mesh runs over mutual TLS.
//!
//! Each node presents `cert` (with `key`) both as a server and as a client, and accepts only
//! peers whose certificate chains to `ca`; the server name checked is the peer's cluster IP, so
//! the certificate needs an IP SAN for every member address (`sipmesh dev-cert --host IP ...`
//! makes one for tests). The cookie handshake still runs inside the TLS session. The UDP
//! heartbeat stays outside TLS; it is authenticated with an HMAC of the cookie.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The PEM files of the cluster's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTlsFiles {
    /// This node's certificate chain (also used as its client certificate).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA every member's certificate chains to.
    pub ca: PathBuf,
}

/// Why the cluster TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterTlsError {
    /// A PEM file could not be read or parsed.
    #[error("reading the cluster TLS {what} {path}: {source}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The parser's error.
        source: rustls::pki_types::pem::Error,
    },
    /// The file holds no certificate.
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    /// rustls refused the material.
    #[error("cluster TLS {context}: {source}")]
    Rustls {
        /// What was being built.
        context: &'static str,
        /// rustls's error.
        source: rustls::Error,
    },
    /// The client verifier could not be built from the CA.
    #[error("cluster TLS CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The acceptor and connector of the mesh.
#[derive(Clone)]
pub struct ClusterTls {
    /// For incoming sessions (requires a client certificate from the CA).
    pub acceptor: TlsAcceptor,
    /// For outgoing sessions (presents our certificate).
    pub connector: TlsConnector,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls(..)")
    }
}

impl ClusterTls {
    /// Reads the files and builds both sides (TLS 1.3 only: every member is sipmesh).
    pub fn load(files: &ClusterTlsFiles) -> Result<Self, ClusterTlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain = read_certs(&files.cert, "certificate")?;
        let key =
            PrivateKeyDer::from_pem_file(&files.key).map_err(|source| ClusterTlsError::Pem {
                what: "key",
                path: files.key.clone(),
                source,
            })?;
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&files.ca, "CA")? {
            roots.add(ca).map_err(|source| ClusterTlsError::Rustls {
                context: "CA",
                source,
            })?;
        }
        let roots = Arc::new(roots);
        let versions = &[&rustls::version::TLS13];
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()?;
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|source| ClusterTlsError::Rustls {
                context: "server versions",
                source,
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|source| ClusterTlsError::Rustls {
                context: "server certificate",
                source,
            })?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|source| ClusterTlsError::Rustls {
                context: "client versions",
                source,
            })?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|source| ClusterTlsError::Rustls {
                context: "client certificate",
                source,
            })?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}

fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ClusterTlsError> {
    let pem = |source| ClusterTlsError::Pem {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(ClusterTlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}
