//! `sipmesh dev-cert`: a self-signed development CA and a server certificate signed by it, so a
//! new user can start TLS or WSS listeners in one step.
//!
//! The files written into the output directory:
//! - `ca.pem`: the CA certificate, to be trusted by test clients (browsers, JsSIP, SIPp);
//! - `ca-key.pem`: the CA's private key (keep it, or delete it once done issuing);
//! - `cert.pem` and `key.pem`: the server chain and key, for `--tls-cert` and `--tls-key`.
//!
//! Keys are ECDSA P-256 and written with mode 0600. These certificates are for development
//! only: their validity is rcgen's default (effectively unlimited), and the CA can sign for
//! any name.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Names used when none are given.
pub const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why the files could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    /// rcgen refused a name or failed to sign.
    #[error("generating the certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file or the directory could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Where the files went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCertFiles {
    /// CA certificate.
    pub ca: PathBuf,
    /// CA private key.
    pub ca_key: PathBuf,
    /// Server certificate chain (server certificate, then the CA).
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
}

/// Generates a CA and a server certificate for `hosts` (DNS names or IP addresses; the
/// defaults when empty) and writes them into `out`, creating it if needed.
pub fn write_dev_cert(out: &Path, hosts: &[String]) -> Result<DevCertFiles, DevCertError> {
    let hosts: Vec<String> = if hosts.is_empty() {
        DEFAULT_HOSTS.iter().map(|h| (*h).to_owned()).collect()
    } else {
        hosts.to_vec()
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sipmesh development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(hosts.clone())?;
    if let Some(first) = hosts.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer)?;

    std::fs::create_dir_all(out).map_err(|source| DevCertError::Write {
        path: out.to_owned(),
        source,
    })?;
    let files = DevCertFiles {
        ca: out.join("ca.pem"),
        ca_key: out.join("ca-key.pem"),
        cert: out.join("cert.pem"),
        key: out.join("key.pem"),
    };
    write(&files.ca, &ca_pem, false)?;
    write(&files.ca_key, &ca_key_pem, true)?;
    write(&files.cert, &format!("{}{ca_pem}", cert.pem()), false)?;
    write(&files.key, &key.serialize_pem(), true)?;
    Ok(files)
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<(), DevCertError> {
    let err = |source| DevCertError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipmesh_actors::transport::{TlsConfig, TlsFiles};

    #[test]
    fn writes_a_pair_that_loads() {
        let dir = std::env::temp_dir().join(format!("sipmesh-dev-cert-{}", std::process::id()));
        let files = write_dev_cert(&dir, &[]).unwrap();
        let tls = TlsConfig::load(&TlsFiles {
            cert: Some(files.cert.clone()),
            key: Some(files.key.clone()),
            client_ca: None,
            server_ca: Some(files.ca.clone()),
        })
        .unwrap();
        assert!(tls.has_server_certificate());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key readable by others");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
