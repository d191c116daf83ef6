//! HTTP connections before and between requests: the connection cap and the header-read and
//! idle timeouts, so that nobody can hold the server's sockets or file descriptors without
//! sending requests.
//!
//! - **Cap.** Each connection holds one of `http.max_connections` permits from accept (before
//!   a TLS handshake) until it closes. Past the cap a connection is answered `503` with
//!   `Retry-After` and closed (TLS: closed at once, a plaintext answer would be noise); at
//!   most [`MAX_REFUSING`] are answered at a time, for at most [`REFUSE_TIMEOUT`] each, and
//!   past that they are closed without a word, so a flood costs an accept and a close each.
//! - **Header read.** From accept, a client has `http.header_read_timeout` to send its first
//!   request header; after a response, it has as long from the first byte of its next one.
//!   A client that sends half a header and stops is closed when that runs out.
//! - **Idle.** Between requests, a keep-alive connection that sends nothing for
//!   `http.idle_timeout` is closed.
//!
//! Why not hyper's own `header_read_timeout`: it starts when hyper begins waiting for a
//! request, so it is also the keep-alive idle limit; one value cannot be short for
//! slowloris and long enough for clients that reuse connections every 10 s (Telegraf). Here a
//! connection is "busy" from the moment a request reaches the router until its response body
//! is dropped ([`Tracked`]), and the socket wrapper ([`GuardedIo`]) applies a deadline only
//! to reads while it is not busy. Request bodies have their own deadline
//! (`http.body_timeout`, `super::body`), and responses are bounded by the work behind them
//! (the query timeout), so no timer runs while a request is in flight.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use axum_server::accept::Accept;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connections past the cap answered at the same time (each holds a task and a few KiB for at
/// most [`REFUSE_TIMEOUT`]).
pub const MAX_REFUSING: usize = 64;
/// How long a connection past the cap has to read the 503 and close.
pub const REFUSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Limits of every connection of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// The listener speaks plain HTTP (a refusal can be a 503).
    pub plain: bool,
}

struct Shared {
    limits: ConnLimits,
    permits: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    refused: AtomicU64,
    /// Second (since `start`) of the last refusal logged: at most one log line a second.
    last_logged: AtomicU64,
    start: Instant,
}

/// An `axum_server` acceptor that applies [`ConnLimits`] around an inner acceptor (plain or
/// TLS).
#[derive(Clone)]
pub struct Guard<A> {
    inner: A,
    shared: Arc<Shared>,
}

impl<A> Guard<A> {
    pub fn new(inner: A, limits: ConnLimits) -> Guard<A> {
        Guard {
            inner,
            shared: Arc::new(Shared {
                permits: Arc::new(Semaphore::new(limits.max_connections)),
                refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
                refused: AtomicU64::new(0),
                last_logged: AtomicU64::new(u64::MAX),
                start: Instant::now(),
                limits,
            }),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<A, S> Accept<TcpStream, S> for Guard<A>
where
    A: Accept<TcpStream, S> + Clone + Send + Sync + 'static,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = GuardedIo<A::Stream>;
    type Service = Tracked<A::Service>;
    type Future = BoxFuture<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let shared = self.shared.clone();
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            return Box::pin(async move {
                refuse(&shared, stream).await;
                Err(io::Error::other("http.max_connections reached"))
            });
        };
        let inner = self.inner.accept(stream, service);
        Box::pin(async move {
            let (io, service) = inner.await?;
            let conn = Arc::new(ConnState::default());
            let io = GuardedIo::new(io, permit, conn.clone(), shared.limits);
            Ok((io, Tracked { inner: service, conn }))
        })
    }
}

/// Answers a connection past the cap (see the module header).
async fn refuse(shared: &Shared, mut stream: TcpStream) {
    let n = shared.refused.fetch_add(1, Ordering::Relaxed) + 1;
    let max = shared.limits.max_connections;
    let second = shared.start.elapsed().as_secs();
    if shared.last_logged.swap(second, Ordering::Relaxed) != second {
        tracing::warn!(max, refused_total = n, "HTTP connection refused: http.max_connections reached");
    }
    let Ok(_answering) = shared.refusing.clone().try_acquire_owned() else { return };
    if !shared.limits.plain {
        return;
    }
    let msg = format!("server is busy: too many connections (http.max_connections = {max}), retry later");
    let body = serde_json::json!({ "code": "unavailable", "message": msg, "error": msg }).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        super::error::RETRY_AFTER_SECS,
        body.len()
    );
    let work = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent until it closes: closing with unread bytes would reset
        // the connection, and the client could lose the answer.
        let mut sink = [0u8; 4096];
        let mut seen = 0usize;
        while seen < 64 << 10 {
            match stream.read(&mut sink).await? {
                0 => break,
                k => seen += k,
            }
        }
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, work).await;
}

/// What the socket wrapper knows of the requests on its connection.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Requests between reaching the router and their response body being dropped.
    busy: AtomicUsize,
    /// Requests finished.
    finished: AtomicU64,
}

/// Marks a connection busy while it lives.
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(conn: Arc<ConnState>) -> Busy {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::AcqRel);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router of one connection, marking the connection busy per request.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    conn: Arc<ConnState>,
}

impl<S, B> tower::Service<Request<B>> for Tracked<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let busy = Busy::new(self.conn.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            // The connection stays busy until hyper is done with the response body.
            Ok(resp.map(move |b| {
                Body::new(b.map_frame(move |f| {
                    let _ = &busy;
                    f
                }))
            }))
        })
    }
}

/// A connection's socket with the header-read and idle deadlines (see the module header) and
/// its permit among `http.max_connections`.
pub struct GuardedIo<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
    conn: Arc<ConnState>,
    limits: ConnLimits,
    /// Requests finished when last looked at.
    seen_finished: u64,
    /// When the connection was accepted or its last request finished.
    waiting_since: Instant,
    /// When the first byte after `waiting_since` arrived.
    head_started: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> GuardedIo<S> {
    fn new(inner: S, permit: OwnedSemaphorePermit, conn: Arc<ConnState>, limits: ConnLimits) -> GuardedIo<S> {
        GuardedIo {
            inner,
            _permit: permit,
            conn,
            limits,
            seen_finished: 0,
            waiting_since: Instant::now(),
            head_started: None,
            sleep: None,
        }
    }

    /// When the current wait runs out: the first request's header within the header timeout
    /// of accept; a later one within the header timeout of its first byte; nothing at all
    /// within the idle timeout of the last response.
    fn deadline(&self) -> Instant {
        match (self.seen_finished, self.head_started) {
            (0, _) => self.waiting_since + self.limits.header_read_timeout,
            (_, Some(t)) => t + self.limits.header_read_timeout,
            (_, None) => self.waiting_since + self.limits.idle_timeout,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.conn.busy.load(Ordering::Acquire) > 0 {
            this.head_started = None;
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let finished = this.conn.finished.load(Ordering::Acquire);
        if finished != this.seen_finished {
            this.seen_finished = finished;
            this.waiting_since = Instant::now();
            this.head_started = None;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.head_started.is_none() {
                    this.head_started = Some(Instant::now());
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        let deadline = this.deadline();
        let sleep = match &mut this.sleep {
            Some(s) => {
                if s.deadline() != deadline {
                    s.as_mut().reset(deadline);
                }
                s
            }
            None => this.sleep.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        if sleep.as_mut().poll(cx).is_ready() {
            let what = if this.seen_finished > 0 && this.head_started.is_none() {
                "idle connection closed (http.idle_timeout)"
            } else {
                "request header not received in time (http.header_read_timeout)"
            };
            tracing::debug!(what, "HTTP connection timed out");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
        }
        Poll::Pending
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Raises the soft limit on open files to the hard limit (servers need far more than the
/// usual soft 1024: one per connection, plus the engine's WAL and segment files). Returns the
/// soft limit in force afterwards, or `None` where it cannot be read.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit write to and read from a valid rlimit struct.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
            return None;
        }
        if l.rlim_cur < l.rlim_max {
            let before = l.rlim_cur;
            let raised = libc::rlimit { rlim_cur: l.rlim_max, rlim_max: l.rlim_max };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                l.rlim_cur = l.rlim_max;
            } else {
                tracing::warn!(soft = before, hard = l.rlim_max, error = %io::Error::last_os_error(), "cannot raise the open files limit");
            }
        }
        // rlim_t is u64 on Linux but not on every Unix.
        #[allow(clippy::unnecessary_cast)]
        let soft = l.rlim_cur as u64;
        Some(if l.rlim_cur == libc::RLIM_INFINITY { u64::MAX } else { soft })
    }
    #[cfg(not(unix))]
    None
}

/// File descriptors kept for the engine (WAL, segments, catalog, backups) and everything that
/// is not a connection: a quarter of the limit, at least 256 and at most 16,384.
pub fn reserved_files(limit: u64) -> u64 {
    (limit / 4).clamp(256, 16_384)
}

/// The connections the open files limit leaves room for, after [`reserved_files`].
pub fn connection_budget(limit: u64) -> u64 {
    limit.saturating_sub(reserved_files(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_keeps_headroom() {
        assert_eq!(connection_budget(1024), 768);
        assert_eq!(connection_budget(4096), 3072);
        assert_eq!(connection_budget(1 << 20), (1 << 20) - 16_384);
        assert_eq!(connection_budget(100), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines() {
        let limits = ConnLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            plain: true,
        };
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let conn = Arc::new(ConnState::default());
        let (client, server) = tokio::io::duplex(1024);
        let mut io = GuardedIo::new(server, permit, conn.clone(), limits);
        let t0 = Instant::now();
        assert_eq!(io.deadline(), t0 + Duration::from_secs(10));
        let mut client = client;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let _ = io.read(&mut buf).await.unwrap();
        // The first request is timed from accept.
        assert_eq!(io.deadline(), t0 + Duration::from_secs(10));
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(Instant::now(), t0 + Duration::from_secs(10));
        // After a request: idle, then the header of the next one.
        drop(Busy::new(conn.clone()));
        let started = Instant::now();
        assert_eq!(io.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(Instant::now(), started + Duration::from_secs(60));
        // While busy, no deadline.
        let busy = Busy::new(conn.clone());
        let reading = tokio::time::timeout(Duration::from_secs(3600), io.read(&mut buf)).await;
        assert!(reading.is_err(), "a busy connection timed out");
        drop(busy);
    }
}
