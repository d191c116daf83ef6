//! TLS from the bridge to the external broker: the broker's certificate verified against
//! `mqtt.bridge.ca` (or the system's roots), for the host of `mqtt.bridge.broker`, and
//! optionally a client certificate (`mqtt.bridge.client_cert` / `client_key`, mutual TLS).
//!
//! Why rustls 0.22 here when the rest of the server uses 0.23: rumqttc 0.24 connects through
//! tokio-rustls 0.25 and takes its `rustls::ClientConfig` (0.22, with *ring*), re-exported as
//! `rumqttc::tokio_rustls::rustls`. The two rustls versions do not unify, and a 0.23 config
//! cannot be handed to rumqttc 0.24; upgrading rumqttc (0.25 moves to rustls 0.23) would
//! change the codec the listener is built on, so it waits for its own change. Both rustls
//! versions were compiled in already (rumqttc's default `use-rustls` feature); the certificate
//! types (`rustls-pki-types`) are shared, so the PEM files are read by the listeners' loader
//! (`strata_auth::pem`).
//!
//! Everything is read and checked when the bridge starts, so that a wrong path or file stops
//! the server with an error naming the key and the file, instead of a bridge that retries a
//! doomed handshake forever.

use std::path::PathBuf;
use std::sync::Arc;

use rumqttc::tokio_rustls::rustls;
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::ServerName;
use strata_auth::pem::{certificates, private_key, PemError};

use crate::config::BridgeConfig;

/// Why the bridge's TLS settings cannot be used; `key` is the configuration key at fault.
#[derive(Debug, thiserror::Error)]
pub enum BridgeTlsError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{key}: {}: certificate not usable: {source}", path.display())]
    BadCertificate { key: &'static str, path: PathBuf, source: rustls::Error },
    #[error("mqtt.bridge.client_cert/client_key: {} and {}: {source}", cert.display(), key.display())]
    BadClientIdentity { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("mqtt.bridge.ca is empty and the system has no CA certificates: {reason}")]
    NoSystemRoots { reason: String },
    #[error("mqtt.bridge.broker: {host:?} is not a DNS name or an IP address to verify the broker's certificate for")]
    ServerName { host: String },
}

/// The transport of the bridge's connection: plain TCP, or TLS per `mqtt.bridge.*`.
pub fn transport(cfg: &BridgeConfig) -> Result<Transport, BridgeTlsError> {
    if !cfg.tls {
        return Ok(Transport::Tcp);
    }
    Ok(Transport::Tls(TlsConfiguration::Rustls(Arc::new(client_config(cfg)?))))
}

fn client_config(cfg: &BridgeConfig) -> Result<rustls::ClientConfig, BridgeTlsError> {
    // rumqttc verifies the certificate for the host it connects to; check it is a name that
    // can be verified now rather than failing every connection attempt later.
    let host = cfg.host_port().map(|(h, _)| h).unwrap_or_default();
    if ServerName::try_from(host.as_str()).is_err() {
        return Err(BridgeTlsError::ServerName { host });
    }
    let mut roots = rustls::RootCertStore::empty();
    if cfg.ca.as_os_str().is_empty() {
        let certs = rustls_native_certs::load_native_certs()
            .map_err(|e| BridgeTlsError::NoSystemRoots { reason: e.to_string() })?;
        // The system store may hold a few certificates webpki cannot parse; skip those.
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(BridgeTlsError::NoSystemRoots { reason: "none found or none parsable".into() });
        }
    } else {
        let key = "mqtt.bridge.ca";
        for cert in certificates(key, &cfg.ca)? {
            roots.add(cert).map_err(|source| BridgeTlsError::BadCertificate {
                key,
                path: cfg.ca.clone(),
                source,
            })?;
        }
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    if cfg.client_cert.as_os_str().is_empty() {
        // `validate` refused a key without a certificate.
        return Ok(builder.with_no_client_auth());
    }
    let chain = certificates("mqtt.bridge.client_cert", &cfg.client_cert)?;
    let key = private_key("mqtt.bridge.client_key", &cfg.client_key)?;
    builder.with_client_auth_cert(chain, key).map_err(|source| BridgeTlsError::BadClientIdentity {
        cert: cfg.client_cert.clone(),
        key: cfg.client_key.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            Files { dir: tempfile::tempdir().unwrap() }
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    fn tls_on() -> BridgeConfig {
        BridgeConfig { enabled: true, tls: true, ..Default::default() }
    }

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The error's display, which is what the operator reads.
    fn err(cfg: &BridgeConfig) -> String {
        match transport(cfg) {
            Ok(_) => panic!("{cfg:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn plain_and_tls_transports() {
        let files = Files::new();
        let (cert, key) = self_signed();
        let ca = files.write("ca.pem", &cert);
        assert!(matches!(transport(&BridgeConfig::default()), Ok(Transport::Tcp)));
        let cfg = BridgeConfig { ca: ca.clone(), ..tls_on() };
        assert!(matches!(transport(&cfg), Ok(Transport::Tls(TlsConfiguration::Rustls(_)))));
        let cfg = BridgeConfig {
            ca,
            client_cert: files.write("c.pem", &cert),
            client_key: files.write("k.pem", &key),
            broker: "[::1]:8883".into(),
            ..tls_on()
        };
        assert!(matches!(transport(&cfg), Ok(Transport::Tls(_))));
    }

    #[test]
    fn bad_files_are_named_with_their_key() {
        let files = Files::new();
        let (cert, key) = self_signed();
        let good = files.write("ca.pem", &cert);
        let missing = files.dir.path().join("missing.pem");
        let not_pem = files.write("not.pem", "just some text\n");
        let key_only = files.write("key.pem", &key);
        let corrupt =
            files.write("bad.pem", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");

        let e = err(&BridgeConfig { ca: missing.clone(), ..tls_on() });
        assert!(e.starts_with("mqtt.bridge.ca: cannot read ") && e.contains("missing.pem"), "{e}");
        let e = err(&BridgeConfig { ca: not_pem, ..tls_on() });
        assert!(e.starts_with("mqtt.bridge.ca: ") && e.contains("not.pem is not a PEM file"), "{e}");
        let e = err(&BridgeConfig { ca: corrupt, ..tls_on() });
        assert!(e.contains("bad.pem is not a PEM file"), "{e}");
        let e = err(&BridgeConfig { ca: key_only.clone(), ..tls_on() });
        assert!(e.starts_with("mqtt.bridge.ca: ") && e.contains("key.pem holds no PEM certificate"), "{e}");

        let with_client = |c: &Path, k: &Path| BridgeConfig {
            ca: good.clone(),
            client_cert: c.to_owned(),
            client_key: k.to_owned(),
            ..tls_on()
        };
        let e = err(&with_client(&key_only, &key_only));
        assert!(e.starts_with("mqtt.bridge.client_cert: ") && e.contains("no PEM certificate"), "{e}");
        let e = err(&with_client(&good, &good));
        assert!(
            e.starts_with("mqtt.bridge.client_key: ") && e.contains("ca.pem holds no PEM private key"),
            "{e}"
        );
        let e = err(&with_client(&good, &missing));
        assert!(e.starts_with("mqtt.bridge.client_key: cannot read "), "{e}");

        let e = err(&BridgeConfig { ca: good.clone(), broker: "bad host!:8883".into(), ..tls_on() });
        assert!(e.starts_with("mqtt.bridge.broker: "), "{e}");
    }
}
