//! The HTTPS listener (`--http-listen`). It serves the CA certificate, a health
//! document (`/health`), the probes `/healthz` (alive) and `/readyz` (its
//! database answers), what installs an agent — `/install.sh` (rendered by
//! [`crate::install`]), `/agent/tether-agent` and `/agent/tether-agent.sha256` —
//! `/metrics` (`crate::metrics`), the web console under `/console/`
//! (`console`), and, on `POST /`, the SSM-compatible API (`ssm_http`).

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tether_ssm::limits;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::core::Coordinator;
use crate::install::AgentDownload;
use crate::pki::Pki;
use tether_util::time::now_ms;

/// What the listener serves for installing agents.
#[derive(Debug)]
pub struct Downloads {
    /// The agent binary, or why there is none.
    pub agent: Result<AgentDownload, String>,
    /// The endpoints the install script names (the advertised ones); it is
    /// rendered at each request with the CA pin in force (a rotation
    /// changes it).
    pub endpoint: String,
    pub http_endpoint: String,
}

fn tls_config(pki: &Pki) -> anyhow::Result<rustls::ServerConfig> {
    let keys = pki.keys();
    let certs = CertificateDer::pem_slice_iter(keys.server_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(keys.server_key_pem.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The downloads once they are ready: reading and hashing the agent binary
/// takes a while (seconds for a debug build), and nothing else waits for it.
pub type DownloadsReady = tokio::sync::watch::Receiver<Option<Arc<Downloads>>>;

async fn handle(
    core: Arc<Coordinator>,
    mut ready: DownloadsReady,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/metrics" {
        return crate::metrics::https(&core, &req).await;
    }
    if crate::ssm_http::is_api_request(&req) {
        if !core.is_ready() {
            return crate::ssm_http::unavailable();
        }
        return crate::ssm_http::handle(&core, req).await;
    }
    if crate::console::is_console(req.uri().path()) {
        return crate::console::handle(&core, req).await;
    }
    let downloads = match req.uri().path() {
        "/install.sh" | "/agent/tether-agent" | "/agent/tether-agent.sha256" => {
            match ready.wait_for(Option::is_some).await.map(|d| d.clone()) {
                Ok(Some(d)) => d,
                _ => Arc::new(Downloads {
                    agent: Err("the agent download was not loaded".into()),
                    endpoint: String::new(),
                    http_endpoint: String::new(),
                }),
            }
        }
        _ => Arc::new(Downloads {
            agent: Err(String::new()),
            endpoint: String::new(),
            http_endpoint: String::new(),
        }),
    };
    let pki = &core.pki;
    let missing = |e: &String| {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from(format!("{e}\n")),
        )
    };
    let (status, ctype, body) = match req.uri().path() {
        "/install.sh" => match &downloads.agent {
            Ok(a) => (
                StatusCode::OK,
                "text/x-shellscript",
                Bytes::from(crate::install::render_script(
                    &downloads.endpoint,
                    &downloads.http_endpoint,
                    &pki.pin(),
                    &a.sha256,
                )),
            ),
            Err(e) => missing(e),
        },
        "/agent/tether-agent" => match &downloads.agent {
            Ok(a) => (StatusCode::OK, "application/octet-stream", a.bytes.clone()),
            Err(e) => missing(e),
        },
        "/agent/tether-agent.sha256" => match &downloads.agent {
            Ok(a) => (
                StatusCode::OK,
                "text/plain",
                Bytes::from(format!("{}  tether-agent\n", a.sha256)),
            ),
            Err(e) => missing(e),
        },
        "/health" => (
            StatusCode::OK,
            "application/json",
            serde_json::json!({
                "Status": "ok",
                "Version": env!("CARGO_PKG_VERSION"),
                "ServerTimeMs": now_ms(),
                "CaPin": pki.pin(),
            })
            .to_string()
            .into(),
        ),
        // Probes: no authentication, and nothing about the fleet.
        "/healthz" => (StatusCode::OK, "text/plain", Bytes::from("ok\n")),
        "/readyz" if core.is_ready() => (StatusCode::OK, "text/plain", Bytes::from("ready\n")),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from("not ready: the database cannot be reached, or the server is stopping\n"),
        ),
        "/ca.pem" => (
            StatusCode::OK,
            "application/x-pem-file",
            pki.ca_cert_pem().into(),
        ),
        other => (
            StatusCode::NOT_FOUND,
            "text/plain",
            format!(
                "{other}: not found (try /console/, /health, /healthz, /readyz, /metrics, /ca.pem, /install.sh or /agent/tether-agent)\n"
            )
            .into(),
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Serves HTTPS on `listener` until the task is dropped. Slow clients are
/// let go: a handshake must finish within [`limits::TLS_HANDSHAKE_TIMEOUT`],
/// a request's headers arrive within [`limits::HTTP_HEADER_TIMEOUT`] of the
/// server waiting for them (so an idle keep-alive connection is closed
/// after as long), a body within [`limits::HTTP_BODY_TIMEOUT`]
/// (`ssm_http`), and a response the client stops reading is abandoned after
/// [`limits::HTTP_WRITE_STALL_TIMEOUT`].
pub async fn serve(listener: TcpListener, core: Arc<Coordinator>, downloads: DownloadsReady) {
    let tls = match crate::conn::TlsSource::new(core.pki.clone(), tls_config) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "HTTPS listener disabled: bad TLS configuration");
            return;
        }
    };
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let acceptor = tls.acceptor();
        let core = core.clone();
        let downloads = downloads.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(limits::TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "HTTPS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "HTTPS handshake timed out");
                        return;
                    }
                };
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                // The peer's address, for the caller of the SSM API.
                req.extensions_mut().insert(peer);
                let core = core.clone();
                let downloads = downloads.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(core, downloads, req).await) }
            });
            let io = crate::conn::StallGuard::new(tls, limits::HTTP_WRITE_STALL_TIMEOUT);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits::HTTP_HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(io), svc)
                .await
            {
                debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        });
    }
}
