//! The HTTP listeners of a process (compute API, identity, images): plain HTTP or TLS,
//! with the same protections on each.
//!
//! Invariants:
//! - a connection that has not sent a complete request head within
//!   [`HEADER_READ_TIMEOUT`] is closed (slow clients cannot hold connections open);
//! - a TLS handshake must finish within [`HANDSHAKE_TIMEOUT`];
//! - a request whose handling, reading its body included, takes longer than the
//!   listener's request timeout ([`REQUEST_TIMEOUT`], [`UPLOAD_REQUEST_TIMEOUT`] for
//!   images) is answered 408 and dropped (a slow body cannot hold a handler);
//! - on shutdown the listener stops accepting, requests in flight get [`GRACE`] to
//!   finish, and idle keep-alive connections are closed at once;
//! - a connection is closed *lingering* ([`Lingering`], as nginx's `lingering_close`):
//!   once the HTTP side is done with it, what the client still sends is read and
//!   discarded, for at most [`LINGER_TIME`] and [`LINGER_BYTES`], until the client
//!   closes. A server that answers before reading a whole body (413 over the limit, 401,
//!   403) would otherwise close on unread data, the kernel would reset the connection,
//!   and a client still sending (urllib, any blocking client) would get the reset
//!   instead of the answer.
//!
//! Request body size limits are the routers' own (the compute API refuses bodies over
//! 1 MiB with 413 before reading further).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// Longest a client may take to send a request head (line and headers).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request may take, body included (compute and identity APIs).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest an image API request may take (uploads and downloads of large images).
pub const UPLOAD_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
/// The header of OpenStack's request ids.
const REQUEST_ID: &str = "x-openstack-request-id";
/// How long requests in flight may run on after shutdown starts.
pub const GRACE: Duration = Duration::from_secs(3);
/// Longest a closed connection lingers, reading what the client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// Most bytes a lingering connection reads before it gives up and closes.
pub const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// A TLS server configuration (certificate chain and private key, PEM), and the file
/// clients must trust to verify it, when they need one.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
    client_ca: Option<PathBuf>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("client_ca", &self.client_ca)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    /// `ca` is the CA bundle clients should trust (`--tls-ca`); without it, a
    /// self-signed certificate is its own CA. Either becomes [`Tls::client_ca`].
    pub fn from_pem_files(cert: &Path, key: &Path, ca: Option<&Path>) -> anyhow::Result<Self> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("bad PEM in the TLS certificate {}", cert.display()))?;
        let Some(first) = certs.first().cloned() else {
            anyhow::bail!("no certificate in {}", cert.display());
        };
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("cannot read a private key from {}", key.display()))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client_ca = match ca {
            Some(ca) => {
                if !ca.is_file() {
                    anyhow::bail!("--tls-ca {}: no such file", ca.display());
                }
                Some(std::path::absolute(ca)?)
            }
            None if self_signed(&first)? => Some(std::path::absolute(cert)?),
            None => None,
        };
        Ok(Tls {
            config: Arc::new(config),
            client_ca,
        })
    }

    /// The file a client must trust to verify this server (`OS_CACERT` in openrc):
    /// the `--tls-ca` bundle, or the certificate itself when it is self-signed; None
    /// when the certificate is meant to chain to the system's trust store.
    pub fn client_ca(&self) -> Option<&Path> {
        self.client_ca.as_deref()
    }
}

/// Whether a certificate names itself as its issuer (a self-signed certificate, which no
/// client trusts unless told to).
fn self_signed(cert: &CertificateDer<'_>) -> anyhow::Result<bool> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| anyhow::anyhow!("cannot parse the TLS certificate: {e}"))?;
    Ok(parsed.issuer() == parsed.subject())
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` turns true,
/// then drains as described in the module documentation.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Tls>,
    request_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = app
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        // Every answer has a request id, also the 408 above, which no API's own
        // middleware sees (the APIs set theirs on everything else).
        .layer(axum::middleware::map_response(
            |mut res: axum::response::Response| async move {
                if !res.headers().contains_key(REQUEST_ID) {
                    if let Ok(v) =
                        axum::http::HeaderValue::from_str(&format!("req-{}", uuid::Uuid::new_v4()))
                    {
                        res.headers_mut().insert(REQUEST_ID, v);
                    }
                }
                res
            },
        ));
    // Over TLS every request says so, as a TLS-terminating proxy would: the APIs build
    // their links (self, bookmark, next) with the scheme the client used.
    let app = if tls.is_some() {
        app.layer(axum::middleware::map_request(
            |mut req: axum::extract::Request| async move {
                req.headers_mut().insert(
                    "x-forwarded-proto",
                    axum::http::HeaderValue::from_static("https"),
                );
                req
            },
        ))
    } else {
        app
    };
    let acceptor = tls.map(|t| TlsAcceptor::from(t.config));
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = shutdown.wait_for(|&s| s).await; } => break,
        };
        let _ = tcp.set_nodelay(true);
        let tcp = Lingering::new(tcp);
        let service = TowerToHyperService::new(app.clone());
        match &acceptor {
            None => spawn_connection(TokioIo::new(tcp), service, &graceful),
            Some(acceptor) => {
                // The handshake runs in its own task; the connection joins the graceful
                // set once it is established.
                let (acceptor, watcher) = (acceptor.clone(), graceful.watcher());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let conn = builder()
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .into_owned();
                            if let Err(e) = watcher.watch(conn).await {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("requests still running after the grace period were dropped");
    }
}

/// A TCP stream closed gracefully: when dropped (hyper drops the stream once the
/// connection is over, after shutting down its write side), a task takes the socket,
/// sends FIN and reads and discards until the client closes, [`LINGER_TIME`] passes
/// or [`LINGER_BYTES`] were read, then closes it. Under TLS it wraps the TCP stream, so
/// the discarded bytes are raw records.
pub struct Lingering {
    /// Always `Some` until dropped.
    tcp: Option<TcpStream>,
}

impl Lingering {
    /// Wraps an accepted stream.
    pub fn new(tcp: TcpStream) -> Self {
        Lingering { tcp: Some(tcp) }
    }

    fn stream(&mut self) -> std::io::Result<Pin<&mut TcpStream>> {
        self.tcp
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => s.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(|s| s.is_write_vectored())
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        // Outside a runtime (process exit) the socket just closes.
        if let (Some(tcp), Ok(rt)) = (self.tcp.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(linger(tcp));
        }
    }
}

/// Sends FIN, then reads and discards until EOF or a bound (see [`Lingering`]).
async fn linger(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Already shut down by hyper in the usual case; an error here changes nothing.
    let _ = tcp.shutdown().await;
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0usize;
    while read < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => read += n,
            // EOF (the client closed), an error, or the deadline.
            _ => break,
        }
    }
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    b
}

fn spawn_connection<I>(
    io: TokioIo<I>,
    service: TowerToHyperService<Router>,
    graceful: &GracefulShutdown,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder()
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}
