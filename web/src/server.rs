//! The HTTP server loop: HTTP/1 and HTTP/2 over TCP, each connection's peer address given to
//! handlers as `ConnectInfo<SocketAddr>`, a connection closed when its writes make no
//! progress for the write timeout (a client that stopped reading cannot hold a stream or
//! memory for ever), and a graceful shutdown that first ends the SSE streams.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, Sleep};
use tower::ServiceExt;

/// A stream whose writes fail once they have been blocked (the peer's window full) for
/// longer than `timeout`; any progress resets the clock.
pub struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        WriteTimeout { inner, timeout, stalled: None }
    }

    /// After the inner write returned `Pending`: start or check the clock.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                metrics::counter!("tapeflow_web_slow_clients_dropped_total", "reason" => "write_stalled")
                    .increment(1);
                tracing::info!(
                    timeout_ms = timeout.as_millis() as u64,
                    "closing a connection that stopped reading"
                );
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, calls
/// `before_drain` (which ends the SSE streams) and gives open connections `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    write_timeout: Duration,
    shutdown: impl Future<Output = ()>,
    before_drain: impl FnOnce(),
    grace: Duration,
) -> io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (TcpStream, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(WriteTimeout::new(stream, write_timeout));
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(Body::new))
        });
        let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    before_drain();
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = sleep(grace) => tracing::info!("connections still open after the grace period; closing"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_blocked_past_the_timeout_fails_and_progress_resets_it() {
        // A pipe with a small buffer stands in for a socket whose peer stopped reading.
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = WriteTimeout::new(a, Duration::from_millis(200));
        let chunk = vec![7u8; 512];
        // Reading keeps it going well past the timeout.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut total = 0;
            let start = tokio::time::Instant::now();
            while start.elapsed() < Duration::from_millis(600) {
                total += b.read(&mut buf).await.unwrap();
                sleep(Duration::from_millis(50)).await;
            }
            (b, total)
        });
        let start = tokio::time::Instant::now();
        while start.elapsed() < Duration::from_millis(500) {
            w.write_all(&chunk).await.expect("a reading peer is never timed out");
        }
        let (b, total) = reader.await.unwrap();
        assert!(total > 0);
        // Now nobody reads: the write fails after the timeout.
        let start = tokio::time::Instant::now();
        let err = loop {
            if let Err(e) = w.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(190), "{:?}", start.elapsed());
        drop(b);
    }
}
