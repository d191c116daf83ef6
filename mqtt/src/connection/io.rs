//! Reading whole packets from the socket and writing answers to it, with the write timeout.

use super::*;

/// Reads until a whole packet is buffered and parses it.
#[derive(Debug)]
pub(super) enum ReadError {
    Closed,
    Io,
}

pub(super) async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Result<(), ReadError> {
    buf.reserve(8 * 1024);
    match stream.read_buf(buf).await {
        Ok(0) => Err(ReadError::Closed),
        Ok(_) => Ok(()),
        Err(_) => Err(ReadError::Io),
    }
}

pub(super) async fn write_out<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut BytesMut) -> bool {
    if out.is_empty() {
        return true;
    }
    let ok = matches!(tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(out)).await, Ok(Ok(())));
    out.clear();
    ok
}

/// What the first packet turned out to be.
pub(super) enum First {
    Connect(Box<ConnectInfo>),
    /// A CONNECT of a protocol level we do not speak.
    Level(u8),
    /// Larger than `mqtt.max_packet_size`; the level, if it could be seen.
    TooLarge(Option<u8>),
    Malformed(Protocol, WireError),
    /// Not a CONNECT at all, or framing we cannot read.
    NotConnect,
}

/// Reads the first packet, `chunk` bytes of buffer at a time. The buffer never grows past one
/// packet of `max` bytes: the fixed header is checked (rumqttc's `check`) before the body is
/// awaited.
pub(super) async fn read_first<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
    chunk: usize,
) -> Result<First, ReadError> {
    loop {
        match rumqttc::mqttbytes::check(buf.iter(), max) {
            Ok(_) => {
                let protocol = match wire::connect_protocol_level(buf) {
                    Some(4) => Protocol::V311,
                    Some(5) => Protocol::V5,
                    Some(level) => return Ok(First::Level(level)),
                    None => return Ok(First::NotConnect),
                };
                return Ok(match wire::read(protocol, buf, max) {
                    Ok(Some(Inbound::Connect(c))) => First::Connect(c),
                    Ok(_) => First::NotConnect,
                    Err(e) => First::Malformed(protocol, e),
                });
            }
            Err(CodecError::InsufficientBytes(_)) => {
                buf.reserve(chunk);
                match stream.read_buf(buf).await {
                    Ok(0) => return Err(ReadError::Closed),
                    Ok(_) => {}
                    Err(_) => return Err(ReadError::Io),
                }
            }
            Err(CodecError::PayloadSizeLimitExceeded(_)) => {
                return Ok(First::TooLarge(wire::connect_protocol_level(buf)))
            }
            Err(_) => return Ok(First::NotConnect),
        }
    }
}
