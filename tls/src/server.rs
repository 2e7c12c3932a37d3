//! The server side: a certificate chain and key from PEM files, and one connection's handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Why a server's certificate or key cannot be used. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be read or holds no PEM certificate.
    #[error("cannot use the TLS certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file cannot be read or holds no PEM private key.
    #[error("cannot use the TLS key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is not the certificate's, or rustls refuses them.
    #[error("the TLS certificate {cert} and key {key} cannot be used together: {reason}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// A server's TLS: its certificate chain and key, ready to accept connections. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the certificate chain at `cert` (PEM, the server's certificate first) and the
    /// private key at `key` (PEM: PKCS#8, PKCS#1 or SEC1), and checks that they go together.
    /// Offers HTTP/1.1 only, on which WebSockets are upgraded.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_error = |reason: String| TlsError::Certificate {
            path: cert.to_owned(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| cert_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_error(e.to_string()))?;
        if chain.is_empty() {
            return Err(cert_error("no PEM certificate in it".to_owned()));
        }
        let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
            path: key.to_owned(),
            reason: match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    "no PEM private key in it".to_owned()
                }
                other => other.to_string(),
            },
        })?;
        let mut config = ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .and_then(|builder| {
                builder
                    .with_no_client_auth()
                    .with_single_cert(chain, private_key)
            })
            .map_err(|e| TlsError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
                reason: e.to_string(),
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Runs the TLS handshake of an accepted connection. Callers bound it with a deadline.
    pub async fn accept<S>(&self, stream: S) -> std::io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.acceptor.accept(stream).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path) -> (PathBuf, PathBuf) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn a_matching_pair_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path());
        ServerTls::from_pem_files(&cert, &key).unwrap();
    }

    #[test]
    fn each_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path());
        let missing = dir.path().join("missing.pem");
        let error = ServerTls::from_pem_files(&missing, &key).unwrap_err();
        assert!(matches!(error, TlsError::Certificate { .. }), "{error}");
        assert!(error.to_string().contains("missing.pem"), "{error}");

        let error = ServerTls::from_pem_files(&cert, &missing).unwrap_err();
        assert!(matches!(error, TlsError::Key { .. }), "{error}");
        assert!(error.to_string().contains("missing.pem"), "{error}");

        // A key file holding a certificate, and a certificate file holding a key.
        let error = ServerTls::from_pem_files(&cert, &cert).unwrap_err();
        assert!(error.to_string().contains("no PEM private key"), "{error}");
        let error = ServerTls::from_pem_files(&key, &key).unwrap_err();
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let one = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let (cert, _) = write_pair(one.path());
        let (_, key) = write_pair(other.path());
        let error = ServerTls::from_pem_files(&cert, &key).unwrap_err();
        assert!(matches!(error, TlsError::Mismatch { .. }), "{error}");
    }
}
