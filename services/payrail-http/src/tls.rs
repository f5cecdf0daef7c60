//! TLS for the server loop (issue 14), with rustls: TLS 1.2 and 1.3 only, certificate and
//! key from PEM files, reloaded in place ([`Tls::reload`], the gateway calls it on SIGHUP:
//! new connections get the new certificate, open ones keep theirs), and `Strict-Transport-
//! Security` on every answer when configured.
//!
//! A connection is a [`Transport`]: plain TCP or rustls over it. The handshake runs inside
//! the first read, so the head timeout bounds a slow or silent handshake too.

use may::net::TcpStream;
use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct Tls {
    cert_file: PathBuf,
    key_file: PathBuf,
    config: RwLock<Arc<rustls::ServerConfig>>,
    /// The `Strict-Transport-Security` value, or None.
    pub hsts: Option<String>,
}

fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("{}: {e}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: {e}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Tls {
    /// `hsts_max_age_seconds` 0: no HSTS header.
    pub fn new(
        cert_file: &Path,
        key_file: &Path,
        hsts_max_age_seconds: u64,
    ) -> Result<Self, String> {
        Ok(Self {
            config: RwLock::new(load(cert_file, key_file)?),
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            hsts: (hsts_max_age_seconds > 0)
                .then(|| format!("max-age={hsts_max_age_seconds}; includeSubDomains")),
        })
    }

    /// Reads the files again; on an error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), String> {
        let config = load(&self.cert_file, &self.key_file)?;
        *self.config.write() = config;
        Ok(())
    }

    pub fn accept(&self, stream: TcpStream) -> io::Result<TlsStream> {
        let config = self.config.read().clone();
        let connection = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(rustls::StreamOwned::new(connection, stream))
    }
}

pub type TlsStream = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

/// What the server loop needs of a connection.
pub trait Transport: Read + Write {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr>;
    /// Ends our sending side (after a TLS close_notify).
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// The HSTS value to add to answers on this connection.
    fn hsts(&self) -> Option<&str> {
        None
    }
}

impl Transport for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        TcpStream::peer_addr(self)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// A TLS connection and the HSTS value its answers carry.
pub struct Secure {
    pub stream: TlsStream,
    pub hsts: Option<String>,
}

impl Read for Secure {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for Secure {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Transport for Secure {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.sock.set_read_timeout(timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.sock.set_write_timeout(timeout)
    }
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.stream.sock.peer_addr()
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.conn.send_close_notify();
        let _ = self.stream.flush();
        self.stream.sock.shutdown(std::net::Shutdown::Write)
    }
    fn hsts(&self) -> Option<&str> {
        self.hsts.as_deref()
    }
}
