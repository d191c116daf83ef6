//! TLS for the MQTT listener (rustls): the server certificate from `mqtt.tls_cert` /
//! `mqtt.tls_key`, and, with `mqtt.tls_client_ca`, required client certificates (mutual TLS)
//! verified against that CA, whose subject common name (CN) is the device id.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use strata_auth::pem;
use tokio_rustls::server::TlsStream;

use super::config::MqttConfig;
use super::topic::valid_device_id;

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    pem::certificates(key, path).map_err(|e| e.to_string())
}

/// Builds the TLS acceptor.
pub fn acceptor(config: &MqttConfig) -> Result<tokio_rustls::TlsAcceptor, String> {
    let chain = certs("mqtt.tls_cert", &config.tls_cert)?;
    let key = pem::private_key("mqtt.tls_key", &config.tls_key).map_err(|e| e.to_string())?;
    // Name the provider: more than one may be compiled in, and rustls refuses to guess.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if config.tls_client_ca.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for c in certs("mqtt.tls_client_ca", &config.tls_client_ca)? {
            roots.add(c).map_err(|e| format!("mqtt.tls_client_ca: {e}"))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("mqtt.tls_client_ca: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    };
    let server =
        builder.with_single_cert(chain, key).map_err(|e| format!("mqtt.tls_cert/mqtt.tls_key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// The device id a verified client certificate names (its subject CN), or `None` without a
/// client certificate.
pub fn client_device<IO>(stream: &TlsStream<IO>) -> Result<Option<String>, String> {
    let (_, conn) = stream.get_ref();
    let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) else { return Ok(None) };
    let cn = subject_common_name(leaf.as_ref()).ok_or("client certificate has no subject CN")?;
    if !valid_device_id(&cn) {
        return Err(format!("client certificate CN {cn:?} is not a valid device id"));
    }
    Ok(Some(cn))
}

/// One DER element: (tag, contents, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((tag, b.get(head..end)?, b.get(end..)?))
}

/// The subject CN of a DER certificate (already verified by webpki; this only reads it).
/// X.509: Certificate = SEQUENCE { tbs SEQUENCE { [0] version?, serial, signature alg,
/// issuer, validity, subject, ... } }; a Name is SEQUENCE OF SET OF SEQUENCE { OID, value }.
/// No crate in the tree parses X.509 subjects (webpki does not expose them), and this is the
/// whole of what is needed.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // explicit version
    }
    // serial, signature algorithm, issuer, validity
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (_, mut subject, _) = tlv(rest)?;
    while !subject.is_empty() {
        let (_, set, r) = tlv(subject)?;
        subject = r;
        let mut set = set;
        while !set.is_empty() {
            let (_, atv, r) = tlv(set)?;
            set = r;
            let (oid_tag, oid, value) = tlv(atv)?;
            if oid_tag == 0x06 && oid == CN_OID {
                let (_, v, _) = tlv(value)?;
                return String::from_utf8(v.to_vec()).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_of_generated_certificates() {
        for cn in ["dev-42", "pump-7.site-a"] {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(vec!["x.test".into()]).unwrap();
            p.distinguished_name.push(rcgen::DnType::OrganizationName, "Strata");
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            let cert = p.self_signed(&key).unwrap();
            assert_eq!(subject_common_name(cert.der()).as_deref(), Some(cn));
        }
        // No CN at all.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["x.test".into()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(subject_common_name(cert.der()), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        for b in [&b""[..], b"\x30", b"\x30\x84\xff\xff\xff\xff", b"\x30\x03\x30\x01", &[0x30, 0x80]] {
            assert_eq!(subject_common_name(b), None, "{b:?}");
        }
    }
}
