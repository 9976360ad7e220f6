//! The receiver's own HTTP server: a bound on connections, and timeouts so
//! that slow or silent clients cannot hold them.
//!
//! Every connection is in one of three phases:
//! - reading a request head, from the accept (or from the first byte of a
//!   later request) until the handler has the request: at most
//!   `header_read_timeout`;
//! - busy: the handler has the request (it bounds its own body read with
//!   `body_read_timeout`, then hands the alerts to the sink);
//! - idle: between a response and the next request's first byte, with no
//!   bytes moving: at most `idle_timeout`.
//!
//! A connection past its phase's deadline is closed. Connections beyond
//! `max_connections` wait in the listen backlog to be accepted, so a valid
//! alert queued behind slow clients is served once their timeouts free
//! their connections, instead of being refused.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::{AlertmanagerReceiver, WEBHOOK_PATH, lock};
use crate::error::PrometheusError;

/// The knobs of [`AlertmanagerReceiver::serve`]'s connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConnectionLimits {
    pub(super) max_connections: usize,
    pub(super) header_read_timeout: Duration,
    pub(super) idle_timeout: Duration,
}

impl AlertmanagerReceiver {
    /// Serve the webhook on `addr` (port 0 picks a free port) until the
    /// returned handle is shut down or dropped.
    ///
    /// At most `max_connections` connections are served at once; more wait
    /// to be accepted. A connection is closed when a request head takes
    /// longer than `header_read_timeout`, or it sits idle between requests
    /// longer than `idle_timeout`; a body slower than `body_read_timeout`
    /// is answered 408 (see [`AlertmanagerReceiverBuilder`](super::AlertmanagerReceiverBuilder)).
    ///
    /// The timeouts run on tokio's timers. Under paused tokio time
    /// (`start_paused`) time jumps ahead whenever the runtime waits, network
    /// included, so a test there should give them room (or use
    /// [`Self::router`] without this server).
    pub async fn serve(&self, addr: SocketAddr) -> Result<ReceiverServer, PrometheusError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            PrometheusError::config("listen", format!("cannot listen on {addr}: {e}"))
        })?;
        let local = listener.local_addr().map_err(|e| {
            PrometheusError::config("listen", format!("no local address for {addr}: {e}"))
        })?;
        let limits = self.shared.limits;
        let listener = BoundedListener {
            inner: listener,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            saturated: false,
        };
        let app = self
            .router()
            .layer(axum::middleware::from_fn(track_request))
            .into_make_service_with_connect_info::<ConnectionState>();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "the Alertmanager receiver stopped");
            }
        });
        tracing::info!(addr = %local, path = WEBHOOK_PATH, max_connections = limits.max_connections,
            "Alertmanager receiver listening");
        Ok(ReceiverServer {
            addr: local,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// Accepts a connection only while fewer than `max_connections` are open.
struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limits: ConnectionLimits,
    /// Whether the last accept had to wait (warned once per episode).
    saturated: bool,
}

impl Listener for BoundedListener {
    type Io = TimedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TimedStream, SocketAddr) {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                self.saturated = false;
                permit
            }
            Err(_) => {
                if !self.saturated {
                    self.saturated = true;
                    tracing::warn!(
                        max_connections = self.limits.max_connections,
                        "all connections of the Alertmanager receiver are in use; new ones wait to be accepted until one closes"
                    );
                }
                match self.permits.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    // The semaphore is never closed.
                    Err(_) => std::future::pending().await,
                }
            }
        };
        // Retries and logs accept errors the way axum does.
        let (stream, peer) = Listener::accept(&mut self.inner).await;
        let stream = TimedStream {
            stream,
            state: ConnectionState::new(),
            peer,
            limits: self.limits,
            timer: None,
            _permit: permit,
        };
        (stream, peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Reading a request head, since the accept or the head's first byte.
    Head { since: Instant },
    /// The handler has the request.
    Busy,
    /// Between requests, since the last response or the last byte written.
    Idle { since: Instant },
}

/// The phase of one connection, shared by its stream and the requests on it.
#[derive(Debug, Clone)]
struct ConnectionState(Arc<Mutex<Phase>>);

impl ConnectionState {
    fn new() -> Self {
        ConnectionState(Arc::new(Mutex::new(Phase::Head {
            since: Instant::now(),
        })))
    }

    fn read_some(&self) {
        let mut phase = lock(&self.0);
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                since: Instant::now(),
            };
        }
    }

    fn wrote_some(&self) {
        let mut phase = lock(&self.0);
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Idle {
                since: Instant::now(),
            };
        }
    }

    fn begin_request(&self) -> BusyGuard {
        *lock(&self.0) = Phase::Busy;
        BusyGuard(self.clone())
    }
}

/// Marks the connection idle again when the handler is done.
struct BusyGuard(ConnectionState);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        *lock(&self.0.0) = Phase::Idle {
            since: Instant::now(),
        };
    }
}

impl Connected<IncomingStream<'_, BoundedListener>> for ConnectionState {
    fn connect_info(stream: IncomingStream<'_, BoundedListener>) -> Self {
        stream.io().state.clone()
    }
}

async fn track_request(
    ConnectInfo(state): ConnectInfo<ConnectionState>,
    request: Request,
    next: Next,
) -> Response {
    let _busy = state.begin_request();
    next.run(request).await
}

/// A TCP stream that fails with `TimedOut` once its phase's deadline has
/// passed while it waits for the client, which makes hyper close it. It
/// holds its connection permit until it is dropped.
struct TimedStream {
    stream: TcpStream,
    state: ConnectionState,
    peer: SocketAddr,
    limits: ConnectionLimits,
    timer: Option<Pin<Box<Sleep>>>,
    _permit: OwnedSemaphorePermit,
}

impl TimedStream {
    /// The deadline of the current phase, and what it bounds; none while busy.
    fn deadline(&self) -> Option<(Instant, &'static str)> {
        match *lock(&self.state.0) {
            Phase::Busy => None,
            Phase::Head { since } => since
                .checked_add(self.limits.header_read_timeout)
                .map(|d| (d, "a request head took longer than header_read_timeout")),
            Phase::Idle { since } => since
                .checked_add(self.limits.idle_timeout)
                .map(|d| (d, "it was idle longer than idle_timeout")),
        }
    }

    /// Called when the stream would wait: pending until the deadline, then
    /// the error that closes the connection.
    fn poll_deadline<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some((deadline, why)) = self.deadline() else {
            return Poll::Pending;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        tracing::debug!(peer = %self.peer, "closing a connection to the Alertmanager receiver: {why}");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connection closed: {why}"),
        )))
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.state.read_some();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.poll_deadline(cx),
            failed => failed,
        }
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.state.wrote_some();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => this.poll_deadline(cx),
            failed => failed,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.state.wrote_some();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => this.poll_deadline(cx),
            failed => failed,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_flush(cx) {
            Poll::Pending => this.poll_deadline(cx),
            done => done,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_shutdown(cx) {
            Poll::Pending => this.poll_deadline(cx),
            done => done,
        }
    }
}

/// A running receiver; stops when shut down or dropped.
#[derive(Debug)]
pub struct ReceiverServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ReceiverServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The webhook URL to give Alertmanager.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, WEBHOOK_PATH)
    }

    /// Stop accepting requests and wait for those in progress (each is
    /// bounded by the timeouts, so this returns within about
    /// `header_read_timeout + body_read_timeout` plus the sink's time).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ReceiverServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
