//! Request bodies: every body has a deadline (`http.body_timeout` from when its request
//! reaches the router), whatever route reads it, so a client that trickles a body holds
//! nothing for longer; and small bodies (queries, admin requests) are read with a size bound,
//! after the request is authenticated (see `super::query`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes};
use futures_core::Stream;
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};

use super::ApiError;
use crate::config::ByteSize;

/// The error a body's stream ends with when its deadline passes.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body not received in time")]
pub struct BodyDeadline;

/// A body that fails with [`BodyDeadline`] once `deadline` has passed.
pub fn with_deadline(body: Body, timeout: Duration) -> Body {
    Body::from_stream(DeadlineStream {
        inner: body.into_data_stream(),
        deadline: Instant::now() + timeout,
        sleep: None,
    })
}

struct DeadlineStream {
    inner: BodyDataStream,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Stream for DeadlineStream {
    type Item = Result<Bytes, axum::BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => return Poll::Ready(Some(Ok(b))),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let deadline = self.deadline;
        // Only a body that makes the request wait gets a timer.
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyDeadline))));
        }
        Poll::Pending
    }
}

/// True when a body read failed because its deadline passed.
pub fn is_deadline(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<BodyDeadline>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The error for a body that could not be read.
pub fn read_error(e: &axum::Error, timeout: Duration) -> ApiError {
    if is_deadline(e) {
        ApiError::BodyTimeout(humantime::format_duration(timeout).to_string())
    } else {
        ApiError::BadRequest(format!("cannot read the request body: {e}"))
    }
}

/// Reads a whole small body, refusing more than `max` bytes (413).
pub async fn read_bounded(body: Body, max: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let mut body = body;
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| read_error(&e, timeout))?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > max {
            return Err(ApiError::PayloadTooLarge { what: "the", limit: ByteSize(max as u64) });
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadline_and_bound() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let stream = futures_stream(rx);
        let body = with_deadline(Body::from_stream(stream), Duration::from_secs(5));
        tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
        let started = Instant::now();
        let err = read_bounded(body, 1024, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, ApiError::BodyTimeout(_)), "{err}");
        assert_eq!(Instant::now(), started + Duration::from_secs(5));
        drop(tx);
        let err = read_bounded(Body::from("0123456789"), 4, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, ApiError::PayloadTooLarge { .. }), "{err}");
        assert_eq!(&read_bounded(Body::from("0123"), 4, Duration::from_secs(1)).await.unwrap()[..], b"0123");
    }

    fn futures_stream(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        struct S(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);
        impl Stream for S {
            type Item = Result<Bytes, std::io::Error>;
            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                self.0.poll_recv(cx)
            }
        }
        let _ = &mut rx;
        S(rx)
    }
}
