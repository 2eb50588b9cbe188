//! The metrics' edges: `GET /metrics` on the HTTPS listener (an operator
//! token allowed `tether:GetMetrics`, authorised and recorded at the one
//! door as `GetMetrics`), and the optional plain-HTTP `--metrics-listen`
//! listener (no authentication: bind it to loopback or a private network).
//! What is counted and how it is written out: `core::stats`.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tether_ssm::limits;
use tokio::net::TcpListener;
use tracing::debug;

use crate::core::Coordinator;
use crate::core::stats::{CONTENT_TYPE, render};
use crate::credentials::{self, Caller, Refused, Transport};

type Body = Full<Bytes>;

fn answer(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// `GET /metrics` on the HTTPS listener: `Authorization: Bearer <operator
/// token>`, authorised and recorded at the one door as `GetMetrics`
/// (`tether:GetMetrics`); no token or an unknown one is 401 (recorded as
/// an unauthenticated refusal), a caller not allowed is 403.
pub async fn https<B>(c: &Coordinator, req: &Request<B>) -> Response<Body> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "/metrics: GET only\n",
        );
    }
    let source = req.extensions().get::<SocketAddr>().map(|a| a.ip());
    let unauthenticated = |credential: Option<&str>, why: &str| {
        c.audit.later(
            crate::audit::Draft::unauthenticated("https", source, credential, why),
            "refused",
        );
        let mut resp = answer(StatusCode::UNAUTHORIZED, "text/plain", format!("{why}\n"));
        resp.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer realm=\"tether\""),
        );
        resp
    };
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return unauthenticated(
            None,
            "missing operator token (Authorization: Bearer <operator token>)",
        );
    };
    let principal = match credentials::operator_principal(c, token).await {
        Ok(p) => p,
        Err(Refused::Store(e)) => {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("the operator token could not be checked: {e}\n"),
            );
        }
        Err(e) => {
            let credential = match &e {
                Refused::TokenExpired(id) => Some(id.as_str()),
                _ => None,
            };
            return unauthenticated(credential, &e.to_string());
        }
    };
    let caller = Caller {
        principal,
        transport: Transport::HttpsToken,
        source,
    };
    match crate::actions::handle(c, &caller, "GetMetrics", b"").await {
        Ok(v) => answer(
            StatusCode::OK,
            CONTENT_TYPE,
            v["Metrics"].as_str().unwrap_or_default().to_string(),
        ),
        Err(e) if e.kind == "AccessDeniedException" => answer(
            StatusCode::FORBIDDEN,
            "text/plain",
            format!("{}: {}\n", e.kind, e.message),
        ),
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("{}: {}\n", e.kind, e.message),
        ),
    }
}

/// Serves `GET /metrics` over plain HTTP on `listener` (`--metrics-listen`),
/// without authentication, until the task is dropped. Slow clients are let
/// go as on the HTTPS listener.
pub async fn serve_plain(listener: TcpListener, core: Arc<Coordinator>) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let core = core.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let core = core.clone();
                async move {
                    let resp = match (req.method(), req.uri().path()) {
                        (&hyper::Method::GET | &hyper::Method::HEAD, "/metrics") => {
                            answer(StatusCode::OK, CONTENT_TYPE, render(&core).await)
                        }
                        (_, "/metrics") => answer(
                            StatusCode::METHOD_NOT_ALLOWED,
                            "text/plain",
                            "/metrics: GET only\n",
                        ),
                        (_, other) => answer(
                            StatusCode::NOT_FOUND,
                            "text/plain",
                            format!("{other}: not found (this listener serves /metrics only)\n"),
                        ),
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let io = crate::conn::StallGuard::new(tcp, limits::HTTP_WRITE_STALL_TIMEOUT);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits::HTTP_HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(io), svc)
                .await
            {
                debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}
