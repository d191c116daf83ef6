//! TLS certificates and private keys from PEM files: the one loader of the HTTP listener
//! (`http.tls_*`), the MQTT listener (`mqtt.tls_*`) and the MQTT bridge (`mqtt.bridge.*`).
//! Every error names the configuration key and the file.
//!
//! The key and certificate types are `rustls-pki-types`', which every rustls version in the
//! tree shares (the bridge's rustls 0.22 and the listeners' 0.23).

use std::path::{Path, PathBuf};

use rustls_pemfile::Item;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a PEM file cannot be used; `key` is the configuration key that names it.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read { key: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{key}: {} is not a PEM file: {reason}", path.display())]
    NotPem { key: &'static str, path: PathBuf, reason: String },
    #[error("{key}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error("{key}: {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoPrivateKey { key: &'static str, path: PathBuf },
}

/// Every PEM section of `path`; at least one.
fn items(key: &'static str, path: &Path) -> Result<Vec<Item>, PemError> {
    let bytes =
        std::fs::read(path).map_err(|source| PemError::Read { key, path: path.to_owned(), source })?;
    let items = rustls_pemfile::read_all(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::NotPem { key, path: path.to_owned(), reason: e.to_string() })?;
    if items.is_empty() {
        let reason = "no -----BEGIN ...----- section (a DER file? convert it with openssl)".into();
        return Err(PemError::NotPem { key, path: path.to_owned(), reason });
    }
    Ok(items)
}

/// The certificates of `path`, in file order (a chain: leaf first); at least one.
pub fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs: Vec<_> = items(key, path)?
        .into_iter()
        .filter_map(|i| match i {
            Item::X509Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(PemError::NoCertificate { key, path: path.to_owned() });
    }
    Ok(certs)
}

/// The first private key of `path` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    items(key, path)?
        .into_iter()
        .find_map(|i| match i {
            Item::Pkcs1Key(k) => Some(PrivateKeyDer::Pkcs1(k)),
            Item::Pkcs8Key(k) => Some(PrivateKeyDer::Pkcs8(k)),
            Item::Sec1Key(k) => Some(PrivateKeyDer::Sec1(k)),
            _ => None,
        })
        .ok_or_else(|| PemError::NoPrivateKey { key, path: path.to_owned() })
}
