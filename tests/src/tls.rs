//! A certificate authority made for one test: it issues server certificates for the names a
//! test listens on, writes them with their keys and its own certificate as PEM files in a
//! temporary directory, and makes the client configurations that trust it (and nothing else).
//! Programs under test trust it through `SSL_CERT_FILE` set to [`TestCa::ca_pem_path`]; a
//! browser can trust it by importing that file into its NSS database.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::ServerName;

/// A test's own certificate authority, its files in a temporary directory removed on drop.
#[derive(Debug)]
pub struct TestCa {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
    ca_pem_path: PathBuf,
    issued: AtomicU32,
}

impl TestCa {
    /// A new authority, its certificate written to `ca.pem`.
    pub fn new() -> Self {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "mtorrent test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("a CA certificate");
        let dir = tempfile::Builder::new()
            .prefix("mtorrent-test-ca-")
            .tempdir()
            .expect("a temporary directory");
        let ca_pem_path = dir.path().join("ca.pem");
        std::fs::write(&ca_pem_path, issuer.pem()).expect("write the CA certificate");
        Self {
            dir,
            issuer,
            ca_pem_path,
            issued: AtomicU32::new(0),
        }
    }

    /// The authority's certificate (PEM), for `SSL_CERT_FILE` or an NSS database.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// The directory that holds the authority's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Issues a server certificate for `names` (IP addresses become IP SANs, anything else DNS
    /// names) and writes it and its key as PEM files: `(cert_path, key_path)`.
    pub fn issue(&self, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("valid names");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("a server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let cert_path = self.dir.path().join(format!("server-{n}.pem"));
        let key_path = self.dir.path().join(format!("server-{n}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write a certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write a key");
        (cert_path, key_path)
    }

    /// A client configuration that trusts this authority only.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.issuer.der().clone())
            .expect("the CA certificate is valid");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

impl TestCa {
    /// A home directory, in the authority's directory, whose NSS database
    /// (`.pki/nssdb`, made with `certutil`) trusts this authority to identify servers: Chromium
    /// started with `HOME` set to it trusts what the authority issues, and nothing else of it
    /// changes.
    pub fn browser_home(&self) -> PathBuf {
        let home = self.dir.path().join("browser-home");
        let nssdb = home.join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).expect("make the NSS database's directory");
        let database = format!("sql:{}", nssdb.display());
        let certutil = |args: &[&std::ffi::OsStr]| {
            let status = std::process::Command::new("certutil")
                .args(args)
                .status()
                .expect("certutil runs (Debian package libnss3-tools)");
            assert!(status.success(), "certutil {args:?}: {status}");
        };
        certutil(&[
            "-d".as_ref(),
            database.as_ref(),
            "-N".as_ref(),
            "--empty-password".as_ref(),
        ]);
        certutil(&[
            "-d".as_ref(),
            database.as_ref(),
            "-A".as_ref(),
            "-t".as_ref(),
            "C,,".as_ref(),
            "-n".as_ref(),
            "mtorrent-test-ca".as_ref(),
            "-i".as_ref(),
            self.ca_pem_path.as_os_str(),
        ]);
        home
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// An HTTPS GET of `path` from `addr`, trusting `ca` only: the status and the body, or why the
/// connection failed (an untrusted certificate among others).
pub fn try_https_get(ca: &TestCa, addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    try_https_get_over(ca, std::net::TcpStream::connect(addr)?, addr, path)
}

/// [`try_https_get`] over `tcp`, a connection already open to `addr` (made inside a network
/// namespace, say).
pub fn try_https_get_over(
    ca: &TestCa,
    tcp: std::net::TcpStream,
    addr: SocketAddr,
    path: &str,
) -> std::io::Result<(u16, String)> {
    let connection = rustls::ClientConnection::new(ca.client_config(), ServerName::from(addr.ip()))
        .map_err(std::io::Error::other)?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A server may close without a TLS close_notify once the response is complete.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(crate::parse_http_response(&String::from_utf8_lossy(
        &response,
    )))
}

/// [`try_https_get`], which must succeed.
pub fn https_get(ca: &TestCa, addr: SocketAddr, path: &str) -> (u16, String) {
    try_https_get(ca, addr, path).unwrap_or_else(|e| panic!("GET https://{addr}{path}: {e}"))
}

/// A tracker's `/stats` over HTTPS, parsed.
pub fn https_stats(ca: &TestCa, addr: SocketAddr) -> serde_json::Value {
    let (status, body) = https_get(ca, addr, "/stats");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad /stats {body:?}: {e}"))
}

/// Waits until the `/stats` of the TLS tracker at `addr` satisfy `check`, for at most 30 s.
pub fn wait_for_https_stats(
    ca: &TestCa,
    addr: SocketAddr,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stats = https_stats(ca, addr);
        if check(&stats) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {what}: {stats}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
