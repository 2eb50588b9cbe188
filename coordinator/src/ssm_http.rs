//! The SSM-compatible HTTP API: AWS JSON 1.1 (`POST /` with
//! `X-Amz-Target: AmazonSSM.<Operation>`), SigV4-signed with an access key the
//! coordinator issued, so the aws CLI, boto3 and the AWS SDKs work against the
//! coordinator with `--endpoint-url`.
//!
//! This module owns the wire protocol only: authentication, the target header,
//! the JSON body (checked against botocore's model by `validate`, as AWS's
//! front end does) and the error shape (`__type`, `X-Amzn-ErrorType`, 400 for the
//! caller's faults, 500 for ours). Parsing, validation and what each operation
//! means are `actions::handle`'s, the same door the operator CLI reaches over
//! gRPC. Only SSM's operations are served: Tether's own (the access-key
//! operations among them) are not, so a key cannot mint keys.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, Response, StatusCode};
use serde_json::{Value, json};

use tether_ssm::{ApiError, limits};

use crate::actions;
use crate::core::Coordinator;
use crate::credentials::{self, Caller, Principal, Transport};
use crate::sigv4;

type Body = Full<Bytes>;

/// The `X-Amz-Target` prefix of the SSM service.
pub const TARGET_PREFIX: &str = "AmazonSSM.";
/// The SigV4 service name clients sign for.
pub const SERVICE: &str = "ssm";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Whether `req` is for this API (and not for the listener's other paths).
pub fn is_api_request<B>(req: &Request<B>) -> bool {
    req.method() == hyper::Method::POST && req.uri().path() == "/"
}

/// Answers one API request.
pub async fn handle(c: &Coordinator, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, limits::MAX_HTTP_API_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(&ApiError::new(
                "SerializationException",
                format!(
                    "the request body could not be read (at most {} bytes): {e}",
                    limits::MAX_HTTP_API_BODY_BYTES
                ),
            ));
        }
    };
    let caller = match authenticate(c, &parts, &body).await {
        Ok(principal) => Caller {
            principal,
            transport: Transport::Https,
            source: parts
                .extensions
                .get::<std::net::SocketAddr>()
                .map(|a| a.ip()),
        },
        Err(e) => return error(&e),
    };
    let operation = match target(&parts.headers) {
        Ok(op) => op,
        Err(e) => return error(&e),
    };
    if throttle_hook(&operation) {
        return error(&ApiError::new(
            "ThrottlingException",
            format!("Rate exceeded ({operation}; TETHER_TEST_SSM_THROTTLE)"),
        ));
    }
    match actions::handle(c, &caller, &operation, &body).await {
        Ok(v) => respond(StatusCode::OK, &v, None),
        Err(e) => error(&e),
    }
}

/// Test hook: `TETHER_TEST_SSM_THROTTLE=SendCommand:4,GetCommandInvocation:4`
/// answers the first N authenticated calls of each named operation with a
/// ThrottlingException, so the end-to-end tests can show a client (the AWS
/// bridge of another coordinator) backing off and getting through. It can only
/// refuse requests, never let anything through.
fn throttle_hook(operation: &str) -> bool {
    static LEFT: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, u32>>> =
        std::sync::OnceLock::new();
    let left = LEFT.get_or_init(|| {
        let spec = std::env::var("TETHER_TEST_SSM_THROTTLE").unwrap_or_default();
        let map: std::collections::HashMap<String, u32> = spec
            .split(',')
            .filter_map(|p| {
                let (op, n) = p.split_once(':')?;
                Some((op.trim().to_string(), n.trim().parse().ok()?))
            })
            .collect();
        if !map.is_empty() {
            tracing::warn!(hook = %spec, "TEST HOOK ACTIVE: SSM API calls are throttled");
        }
        std::sync::Mutex::new(map)
    });
    let Ok(mut left) = left.lock() else {
        return false;
    };
    match left.get_mut(operation) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

/// The operation named by `X-Amz-Target` (whether this API serves it is
/// `actions::handle`'s to say).
fn target(headers: &HeaderMap) -> Result<String, ApiError> {
    let raw = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                "UnknownOperationException",
                format!("the X-Amz-Target header is required ({TARGET_PREFIX}<Operation>)"),
            )
        })?;
    match raw.strip_prefix(TARGET_PREFIX) {
        Some(op) => Ok(op.to_string()),
        None => Err(ApiError::new(
            "UnknownOperationException",
            format!("X-Amz-Target {raw:?} is not an SSM operation ({TARGET_PREFIX}<Operation>)"),
        )),
    }
}

/// Verifies the request's SigV4 signature against an issued access key:
/// the principal is that key.
async fn authenticate(
    c: &Coordinator,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
) -> Result<Principal, ApiError> {
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let signed = sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers,
        body,
    };
    let refuse = |e: sigv4::SigError| {
        tracing::debug!(error = %e, "SSM API request refused");
        ApiError::new(e.code(), e.to_string())
    };
    let auth = sigv4::authorization(&signed).map_err(refuse)?;
    let (secret, principal) = match credentials::access_key(c, &auth.access_key_id).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Err(refuse(sigv4::SigError::UnknownKey(
                auth.access_key_id.clone(),
            )));
        }
        Err(credentials::Refused::Store(e)) => return Err(e.into()),
        Err(e) => {
            tracing::debug!(error = %e, "SSM API request refused");
            return Err(ApiError::new("UnrecognizedClientException", e.to_string()));
        }
    };
    sigv4::verify(&signed, &auth, &secret, SERVICE, chrono::Utc::now()).map_err(refuse)?;
    credentials::access_key_used(c, &auth.access_key_id).await;
    Ok(principal)
}

fn respond(status: StatusCode, body: &Value, error_type: Option<&str>) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    if let Ok(id) = uuid::Uuid::new_v4().to_string().parse() {
        headers.insert("x-amzn-requestid", id);
    }
    if let Some(kind) = error_type.and_then(|k| k.parse().ok()) {
        headers.insert("x-amzn-errortype", kind);
    }
    resp
}

/// An SSM error response: 500 for the service's faults, 400 otherwise.
fn error(e: &ApiError) -> Response<Body> {
    let status = if e.is_server_fault() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    respond(
        status,
        &json!({"__type": e.kind, "message": e.message}),
        Some(e.kind),
    )
}
