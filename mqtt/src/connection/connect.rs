//! The CONNECT: reading it within its size and time limits, refusing it (unsupported level,
//! past `mqtt.max_connections`), authenticating it and its Last Will, and the keep-alive it
//! gets.

use super::*;

/// Buffer step while reading a CONNECT: the buffer stays within `mqtt.max_connect_size` and
/// one step.
pub(super) const CONNECT_CHUNK: usize = 2048;

/// Largest CONNECT read from a connection refused for `mqtt.max_connections`: a device's
/// CONNECT (client id, token, a small will) is a few hundred bytes; a larger one is answered
/// from its fixed header and protocol level alone.
pub(super) const REFUSED_MAX_CONNECT: usize = 4096;
/// Buffer step of a refused connection's reads (the buffer stays at most
/// [`REFUSED_MAX_CONNECT`] and a step).
pub(super) const REFUSED_CHUNK: usize = 512;
/// Bytes a refused connection may still send after its CONNACK, and for how long, before it
/// is closed anyway.
pub(super) const REFUSED_DRAIN: usize = 16 * 1024;
pub(super) const REFUSED_LINGER: Duration = Duration::from_secs(1);

/// Answers a connection past `mqtt.max_connections`: reads its CONNECT (at most
/// [`REFUSED_MAX_CONNECT`] bytes; the caller bounds the time) and refuses it, in the client's
/// protocol, with 3.1.1 return code 3 (server unavailable) or 5.0 reason 0x97 (quota
/// exceeded: "an implementation or administrative imposed limit", which the connection limit
/// is; see docs/mqtt.md for why not 0x89 or 0x9F). Nothing else is done: no authentication,
/// no session. Returns whether a CONNACK was sent.
///
/// After the CONNACK the write side is shut and what the client still sends is read and
/// dropped until it closes: closing a socket with unread bytes makes the kernel send a RST,
/// which can destroy the CONNACK before the client reads it.
pub async fn refuse_busy<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> bool {
    let mut buf = BytesMut::with_capacity(REFUSED_CHUNK);
    let protocol = match read_first(stream, &mut buf, REFUSED_MAX_CONNECT, REFUSED_CHUNK).await {
        Ok(First::Connect(c)) => c.protocol,
        Ok(First::TooLarge(Some(4))) => Protocol::V311,
        Ok(First::TooLarge(Some(5))) => Protocol::V5,
        _ => return false,
    };
    let mut out = BytesMut::with_capacity(64);
    Writer::refuse(
        protocol,
        Refusal::QuotaExceeded,
        "mqtt.max_connections reached; try again later",
        &mut out,
    );
    if !write_out(stream, &mut out).await {
        return false;
    }
    let _ = stream.shutdown().await;
    let drain = async {
        let mut scratch = [0u8; 512];
        let mut drained = 0;
        while drained < REFUSED_DRAIN {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSED_LINGER, drain).await;
    true
}

/// The keep-alive enforced, in seconds, for a client that asked for `asked` (0: none) under
/// the `mqtt.max_keep_alive` ceiling; and the Server Keep Alive that tells a 5.0 client so
/// (section 3.2.2.3.14), `None` when its own value stands. 0 and values above the ceiling
/// become the ceiling: a connection that dies silently must be noticed some time. 3.1.1 has
/// no way to tell the client; it is held to the same ceiling (as Mosquitto's `max_keepalive`
/// does, which refuses such a 3.1.1 client instead; see docs/mqtt.md).
pub(super) fn keep_alive(asked: u16, ceiling: u16) -> (u16, Option<u16>) {
    if asked == 0 || asked > ceiling {
        (ceiling, Some(ceiling))
    } else {
        (asked, None)
    }
}

/// Authenticates the CONNECT ([`credentials`]), then authorizes its Last Will as the PUBLISH
/// it will become: a will on a topic its device may not publish to is refused with 3.1.1
/// 0x05 / 5.0 0x87 (not authorized), as Mosquitto does, rather than accepted and dropped
/// later (the device would never learn its will goes nowhere). Also gives the id of the token
/// that authenticated it, if one did (for `mqtt.max_sessions_per_token`).
pub(super) async fn authenticate(
    broker: &Arc<Broker>,
    c: &ConnectInfo,
    cert_device: Option<&str>,
) -> Result<(Identity, Option<Arc<str>>), (Refusal, &'static str)> {
    let (id, token) = credentials(broker, c, cert_device).await?;
    if let Some(w) = &c.will {
        if let PublishVerdict::Denied(why) = broker.acl.publish(&id.device, &w.topic) {
            MqttMetrics::inc(&broker.metrics.acl_denied);
            tracing::warn!(client_id = %id.client_id, device = %id.device, topic = %w.topic, reason = why, "Last Will refused by the ACL");
            return Err((Refusal::NotAuthorized, "Last Will refused by the ACL"));
        }
    }
    Ok((id, token))
}

/// Checks the credentials: a verified client certificate; else a registered device's own
/// password (`strata device add`); else (auth on) a token with write access to
/// `mqtt.database` as the password. The device id is the certificate's CN, else
/// the username, else the client id. The token's id comes along when a token was the
/// credential.
pub(super) async fn credentials(
    broker: &Arc<Broker>,
    c: &ConnectInfo,
    cert_device: Option<&str>,
) -> Result<(Identity, Option<Arc<str>>), (Refusal, &'static str)> {
    if c.auth_method.is_some() {
        return Err((Refusal::BadAuthMethod, "enhanced authentication is not supported"));
    }
    if let Some(w) = c.will.as_ref().filter(|_| c.protocol == Protocol::V5) {
        // Our CONNACK says Maximum QoS 1 and Retain Available 0; 5.0 section 3.2.2.3.4 and
        // 3.2.2.3.5 refuse a will above them. (3.1.1 has no codes for it: accepted, as before.)
        if w.qos == QoS::ExactlyOnce {
            return Err((Refusal::QosNotSupported, "will QoS 2 is not supported (Maximum QoS is 1)"));
        }
        if w.retain {
            return Err((Refusal::RetainNotSupported, "retained wills are not supported"));
        }
    }
    if c.client_id.is_empty() && !c.clean_start && c.protocol == Protocol::V311 {
        // 5.0 allows it: the assigned id, sent back in the CONNACK, resumes the session later.
        return Err((Refusal::ClientIdInvalid, "empty client id with a persistent session"));
    }
    if c.client_id.len() > 256 || c.client_id.chars().any(char::is_control) {
        return Err((Refusal::ClientIdInvalid, "client id too long or with control characters"));
    }
    let client_id = if c.client_id.is_empty() {
        format!("strata-{:016x}", rand::random::<u64>())
    } else {
        c.client_id.clone()
    };
    let username = c.username.as_deref().filter(|u| !u.is_empty());
    let device = match (cert_device, username) {
        (Some(cn), Some(u)) if u != cn => {
            return Err((Refusal::NotAuthorized, "username differs from the certificate's CN"))
        }
        (Some(cn), _) => cn.to_owned(),
        (None, Some(u)) => u.to_owned(),
        (None, None) => client_id.clone(),
    };
    if !valid_device_id(&device) {
        return Err((Refusal::ClientIdInvalid, "device id is not a valid topic level"));
    }
    if cert_device.is_none() {
        // A registered device must present its own password, whatever `auth.enabled` says.
        let password = c.password.clone();
        let b = broker.clone();
        let dev = device.clone();
        let check = tokio::task::spawn_blocking(move || {
            b.devices.check(&dev, password.as_deref().map(str::as_bytes))
        })
        .await;
        match check {
            Ok(Check::Accepted) => return Ok((Identity { client_id, device }, None)),
            Ok(Check::Refused) => {
                return Err((Refusal::BadCredentials, "wrong password for a registered device"))
            }
            Ok(Check::Unknown) if broker.config.require_device_credentials => {
                return Err((
                    Refusal::NotAuthorized,
                    "device not registered (mqtt.require_device_credentials)",
                ))
            }
            Ok(Check::Unknown) => {}
            Err(_) => return Err((Refusal::ServerUnavailable, "authentication task failed")),
        }
    }
    let mut token = None;
    if cert_device.is_none() && broker.ingest.auth.enabled() {
        let Some(password) = c.password.clone().filter(|p| !p.is_empty()) else {
            return Err((Refusal::BadCredentials, "no password (a token) given"));
        };
        let auth = broker.ingest.auth.clone();
        let db = broker.config.database.clone();
        // The token lookup may re-read the tokens file: off the runtime.
        let r =
            tokio::task::spawn_blocking(move || auth.authorize(Some(&password), Access::Write(&db))).await;
        match r {
            Ok(Ok(grant)) => token = grant.map(|g| g.id),
            Ok(Err(AuthError::Forbidden { .. })) => {
                return Err((Refusal::NotAuthorized, "token may not write the MQTT database"))
            }
            Ok(Err(_)) => return Err((Refusal::BadCredentials, "invalid token")),
            Err(_) => return Err((Refusal::ServerUnavailable, "authentication task failed")),
        }
    }
    Ok((Identity { client_id, device }, token))
}
