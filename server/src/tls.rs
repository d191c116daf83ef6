//! TLS for the HTTP listener: a rustls server config from PEM files (`http.tls_cert`,
//! `http.tls_key`). HTTP/2 and HTTP/1.1 are offered through ALPN.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;

/// Why the certificate or key cannot be used; names the config key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {source}")]
    Read { key: &'static str, path: PathBuf, source: std::io::Error },
    #[error("http.tls_cert: {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("http.tls_key: {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("http.tls_cert/http.tls_key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads the certificate chain and key and builds the server config.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let open = |k: &'static str, path: &Path| {
        File::open(path).map(BufReader::new).map_err(|source| TlsError::Read {
            key: k,
            path: path.to_owned(),
            source,
        })
    };
    let mut r = open("http.tls_cert", cert)?;
    let certs = rustls_pemfile::certs(&mut r)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read { key: "http.tls_cert", path: cert.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.to_owned() });
    }
    let mut r = open("http.tls_key", key)?;
    let key_der = rustls_pemfile::private_key(&mut r)
        .map_err(|source| TlsError::Read { key: "http.tls_key", path: key.to_owned(), source })?
        .ok_or_else(|| TlsError::NoKey { path: key.to_owned() })?;
    // Name the provider: more than one may be compiled in (the test client brings `ring`),
    // and rustls refuses to guess.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
