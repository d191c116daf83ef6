//! TLS for the HTTP listener: a rustls server config from PEM files (`http.tls_cert`,
//! `http.tls_key`). HTTP/2 and HTTP/1.1 are offered through ALPN.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use strata_auth::pem::{self, PemError};

/// Why the certificate or key cannot be used; names the config key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("http.tls_cert/http.tls_key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads the certificate chain and key and builds the server config.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = pem::certificates("http.tls_cert", cert)?;
    let key_der = pem::private_key("http.tls_key", key)?;
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
