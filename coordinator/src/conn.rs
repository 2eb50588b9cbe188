//! Accepting connections on both listeners so that a client that dawdles
//! is let go: a TLS handshake must finish within
//! [`limits::TLS_HANDSHAKE_TIMEOUT`]; on the gRPC port the client's first
//! bytes after it (the HTTP/2 preface) must come within
//! [`limits::GRPC_PREFACE_TIMEOUT`] ([`FirstRead`]); on HTTPS a response the
//! client stops reading is abandoned ([`StallGuard`]). The HTTPS listener's
//! header and body deadlines are hyper's and `ssm_http`'s.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tether_ssm::limits;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};
use tracing::debug;

use crate::pki::Pki;

/// The gRPC port's TLS: the server chain, HTTP/2 only, and client
/// certificates checked against the CAs whose client certificates are
/// accepted now (see `pki::Keys::client_ca_pems`) when given (agents) but
/// not required (registration, operators).
pub fn grpc_tls_config(pki: &Pki) -> anyhow::Result<rustls::ServerConfig> {
    let keys = pki.keys();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(keys.server_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(keys.server_key_pem.as_bytes())?;
    let mut roots = rustls::RootCertStore::empty();
    for pem in &keys.client_ca_pems {
        for ca in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(ca?)?;
        }
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// A listener's TLS configuration, built from the trust keys in force and
/// built again when a rotation reloads them (`Pki::stamp`): each new
/// connection is accepted with the current one.
pub struct TlsSource {
    pki: Arc<Pki>,
    build: fn(&Pki) -> anyhow::Result<rustls::ServerConfig>,
    cached: parking_lot::Mutex<(u64, Arc<rustls::ServerConfig>)>,
}

impl TlsSource {
    pub fn new(
        pki: Arc<Pki>,
        build: fn(&Pki) -> anyhow::Result<rustls::ServerConfig>,
    ) -> anyhow::Result<Self> {
        let stamp = pki.stamp();
        let cfg = Arc::new(build(&pki)?);
        Ok(TlsSource {
            pki,
            build,
            cached: parking_lot::Mutex::new((stamp, cfg)),
        })
    }

    /// The acceptor for a new connection. A configuration the reloaded
    /// keys cannot make (never expected) leaves the last good one in use.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let stamp = self.pki.stamp();
        let mut cached = self.cached.lock();
        if cached.0 != stamp {
            match (self.build)(&self.pki) {
                Ok(cfg) => *cached = (stamp, Arc::new(cfg)),
                Err(e) => {
                    tracing::error!(error = %e, "TLS configuration from the reloaded keys failed; keeping the previous one")
                }
            }
        }
        tokio_rustls::TlsAcceptor::from(cached.1.clone())
    }
}

/// A gRPC connection once its handshake is done.
pub type GrpcConn = FirstRead<TlsStream<TcpStream>>;

/// The gRPC port's connections, handshaken concurrently (each under
/// [`limits::TLS_HANDSHAKE_TIMEOUT`]), for tonic's
/// `serve_with_incoming_shutdown`. Ends when the listener task is dropped.
pub fn grpc_incoming(
    listener: TcpListener,
    tls: Arc<TlsSource>,
) -> (
    tokio_stream::wrappers::ReceiverStream<std::io::Result<GrpcConn>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    debug!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Small request/response exchanges: Nagle's algorithm against the
            // peer's delayed ACK would add ~40 ms to each.
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (tls.acceptor(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(limits::TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => {
                        let conn = FirstRead::new(tls, limits::GRPC_PREFACE_TIMEOUT);
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "gRPC handshake failed"),
                    Err(_) => debug!(%peer, "gRPC handshake timed out"),
                }
            });
        }
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), task)
}

/// A connection whose first read must bring data within `limit` (the
/// client speaks first: HTTP/2's preface); afterwards it is left to the
/// protocol (HTTP/2 keepalive pings find dead peers).
#[derive(Debug)]
pub struct FirstRead<T> {
    inner: T,
    /// Until the first bytes arrive.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    limit: Duration,
}

impl<T> FirstRead<T> {
    pub fn new(inner: T, limit: Duration) -> Self {
        FirstRead {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
            limit,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstRead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the client sent nothing within {} s", this.limit.as_secs()),
                ))),
                _ => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstRead<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The connection's certificates and addresses, as tonic gives them to the
/// services (`Request::peer_certs`, `Request::remote_addr`).
impl Connected for FirstRead<TlsStream<TcpStream>> {
    type ConnectInfo = TlsConnectInfo<TcpConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// A connection whose writes fail once one has waited `limit` for the peer
/// to make room (it stopped reading): its task and buffers are let go
/// instead of waiting forever.
#[derive(Debug)]
pub struct StallGuard<T> {
    inner: T,
    limit: std::time::Duration,
    /// Armed while a write waits.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallGuard<T> {
    pub fn new(inner: T, limit: std::time::Duration) -> Self {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    /// A write is pending: fails it once it has been for `limit`.
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<R>> {
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", limit.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn done<R>(&mut self, r: std::io::Result<R>) -> Poll<std::io::Result<R>> {
        self.stalled = None;
        Poll::Ready(r)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => this.done(r),
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => this.done(r),
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(r) => this.done(r),
            Poll::Pending => this.pending(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_reads_fails_after_the_limit() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut guarded = StallGuard::new(ours, Duration::from_secs(30));
        let started = tokio::time::Instant::now();
        let e = guarded.write_all(&[0u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        // A peer that reads keeps it going, however long the whole takes.
        let (ours, mut theirs2) = tokio::io::duplex(1024);
        let mut guarded = StallGuard::new(ours, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut total = 0;
            while total < 64 * 1024 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                total += theirs2.read(&mut buf).await.unwrap();
            }
        });
        guarded.write_all(&[0u8; 64 * 1024]).await.unwrap();
        reader.await.unwrap();
        let _ = theirs.read(&mut [0u8; 1]).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_read_must_come_within_the_limit_and_later_ones_may_wait() {
        let (ours, _silent) = tokio::io::duplex(1024);
        let mut conn = FirstRead::new(ours, Duration::from_secs(10));
        let e = conn.read(&mut [0u8; 16]).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        let (ours, mut client) = tokio::io::duplex(1024);
        let mut conn = FirstRead::new(ours, Duration::from_secs(10));
        client.write_all(b"PRI * HTTP/2.0").await.unwrap();
        assert_eq!(conn.read(&mut [0u8; 16]).await.unwrap(), 14);
        // Afterwards a quiet client is the protocol's business.
        let later = tokio::time::timeout(Duration::from_secs(60), conn.read(&mut [0u8; 16])).await;
        assert!(later.is_err(), "still waiting after a minute: no deadline");
    }
}
