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

/// Headers the signature of every API request must cover: the operation
/// and the body's type (what they do not cover could be changed in flight —
/// a request signed as DescribeDocument replayed as GetDocument).
pub const REQUIRED_SIGNED_HEADERS: [&str; 2] = ["x-amz-target", "content-type"];

/// Answers one API request. In this order, so that a caller who is not
/// who it claims costs as little as possible: the declared length against
/// the cap, the signature's form, key, scope and date (no body read yet),
/// the body under a deadline, the signature itself, then — for an operation
/// that changes something — that the signature was not used before.
pub async fn handle(c: &Coordinator, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    if let Err(e) = declared_length(&parts.headers) {
        // Refused before a byte is kept; what the client goes on sending is
        // read and dropped for a bounded while, so that it can read this
        // answer (a connection closed on unread data is reset, answer and all).
        tokio::spawn(linger(body));
        let mut resp = error(&e);
        *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return resp;
    }
    // A request refused before it has a principal is an audit event
    // (queued: an unauthenticated caller never makes the coordinator wait
    // on the database), with the access key ID it claimed.
    let source = parts
        .extensions
        .get::<std::net::SocketAddr>()
        .map(|a| a.ip());
    let unauthenticated = |e: &ApiError| {
        let claimed = sigv4::authorization(&signed_request(&parts, b""))
            .ok()
            .map(|a| a.access_key_id);
        c.audit.later(
            crate::audit::Draft::unauthenticated("https", source, claimed.as_deref(), &e.message),
            "refused",
        );
    };
    let pending = match authorize(c, &parts).await {
        Ok(p) => p,
        Err(e) => {
            if e.kind != "InternalServerError" {
                unauthenticated(&e);
            }
            return error(&e);
        }
    };
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return error(&e),
    };
    let caller = match pending.verify(&parts, &body) {
        Ok(principal) => {
            credentials::access_key_used(c, &pending.auth.access_key_id).await;
            Caller {
                principal,
                transport: Transport::Https,
                source,
            }
        }
        Err(e) => {
            unauthenticated(&e);
            return error(&e);
        }
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
    let once = match claim_once(c, &operation, &pending.auth).await {
        Ok(once) => once,
        Err(e) => {
            // A replay, refused: recorded as the request it repeats.
            if let Ok(op) = tether_ssm::Operation::named(&operation) {
                let mut draft =
                    crate::audit::Draft::of(&c.account, &actions::who(&caller), op, &body);
                draft.error = Some((e.kind.to_string(), e.message.clone()));
                c.audit.now(draft, "refused").await;
            }
            return error(&e);
        }
    };
    let answer = actions::handle(c, &caller, &operation, &body).await;
    if let (Err(_), Some(hash)) = (&answer, &once) {
        // It took no effect: the same signed request may be sent again.
        if let Err(e) = c.store.release_signature(hash).await {
            tracing::warn!(error = %e, "could not release a failed request's signature");
        }
    }
    match answer {
        Ok(v) => respond(StatusCode::OK, &v, None),
        Err(e) => error(&e),
    }
}

/// A `Content-Length` over the cap is refused before a byte of the body is read.
fn declared_length(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limits::MAX_REQUEST_BODY_BYTES as u64 => Err(ApiError::new(
            "SerializationException",
            format!(
                "the request body is {n} bytes (Content-Length); at most {} bytes are accepted",
                limits::MAX_REQUEST_BODY_BYTES
            ),
        )),
        _ => Ok(()),
    }
}

/// Reads and drops a refused body: at most twice the cap, for at most
/// [`limits::HTTP_HEADER_TIMEOUT`]; then the connection is closed.
async fn linger(mut body: hyper::body::Incoming) {
    let mut left = 2 * limits::MAX_REQUEST_BODY_BYTES;
    let _ = tokio::time::timeout(limits::HTTP_HEADER_TIMEOUT, async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            match left.checked_sub(n) {
                Some(l) if l > 0 => left = l,
                _ => break,
            }
        }
    })
    .await;
}

/// The body, at most the cap, all of it within [`limits::HTTP_BODY_TIMEOUT`].
async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, limits::MAX_REQUEST_BODY_BYTES).collect();
    match tokio::time::timeout(limits::HTTP_BODY_TIMEOUT, limited).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) => Err(ApiError::new(
            "SerializationException",
            format!(
                "the request body could not be read (at most {} bytes): {e}",
                limits::MAX_REQUEST_BODY_BYTES
            ),
        )),
        Err(_) => Err(ApiError::new(
            "RequestTimeout",
            format!(
                "the request body did not arrive within {} s",
                limits::HTTP_BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// A request whose signature passed every check but the signature itself.
struct Pending {
    auth: sigv4::Authorization,
    secret: String,
    /// Who the key stands for: root, or a user.
    principal: Principal,
}

impl Pending {
    /// Verifies the signature over the body: the principal is the key.
    fn verify(
        &self,
        parts: &hyper::http::request::Parts,
        body: &Bytes,
    ) -> Result<Principal, ApiError> {
        let signed = signed_request(parts, body);
        sigv4::verify(
            &signed,
            &self.auth,
            &self.secret,
            SERVICE,
            chrono::Utc::now(),
        )
        .map_err(refuse)?;
        Ok(self.principal.clone())
    }
}

fn refuse(e: sigv4::SigError) -> ApiError {
    tracing::debug!(error = %e, "SSM API request refused");
    ApiError::new(e.code(), e.to_string())
}

fn signed_request<'a>(
    parts: &'a hyper::http::request::Parts,
    body: &'a [u8],
) -> sigv4::Request<'a> {
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
    sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers,
        body,
    }
}

/// Everything about the request's signature that needs no body: its form,
/// the headers it covers, its scope and date, and a key this coordinator
/// issued.
async fn authorize(
    c: &Coordinator,
    parts: &hyper::http::request::Parts,
) -> Result<Pending, ApiError> {
    let signed = signed_request(parts, b"");
    let auth = sigv4::authorization(&signed).map_err(refuse)?;
    sigv4::precheck(&signed, &auth, SERVICE, chrono::Utc::now()).map_err(refuse)?;
    sigv4::require_signed(&auth, &REQUIRED_SIGNED_HEADERS).map_err(refuse)?;
    // An Inactive or expired key is refused here, before the body is read.
    let (secret, principal) = match credentials::access_key(c, &auth.access_key_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(refuse(sigv4::SigError::UnknownKey(auth.access_key_id))),
        Err(credentials::Refused::Store(e)) => return Err(e.into()),
        Err(e) => {
            tracing::debug!(error = %e, "SSM API request refused");
            return Err(ApiError::new("UnrecognizedClientException", e.to_string()));
        }
    };
    Ok(Pending {
        auth,
        secret,
        principal,
    })
}

/// For an operation that changes something, records the request's
/// signature so that the same signed request is refused for as long as its
/// date would pass the clock check; the hash recorded (to release should the
/// request fail), or None for a read, which may repeat. The record lives in
/// the database, so a replay is refused by every replica on it.
async fn claim_once(
    c: &Coordinator,
    operation: &str,
    auth: &sigv4::Authorization,
) -> Result<Option<String>, ApiError> {
    let changes =
        tether_ssm::Operation::from_name(operation).is_some_and(|op| op.changes_something());
    if !changes {
        return Ok(None);
    }
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest(auth.signature.as_bytes()));
    let expires_ms = tether_util::time::now_ms() + limits::SIGV4_REPLAY_WINDOW_SECS * 1000;
    if c.store.claim_signature(&hash, expires_ms).await? {
        Ok(Some(hash))
    } else {
        Err(ApiError::new(
            "InvalidSignatureException",
            format!(
                "{operation}: this signature was already used: a signed request that changes \
                 something is accepted once (sign it again to repeat it)"
            ),
        ))
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

/// The answer while this replica cannot reach its database: 503, which
/// the AWS clients retry (on this replica or, behind a balancer, another).
pub fn unavailable() -> Response<Body> {
    let e = ApiError::new(
        "ServiceUnavailable",
        "this coordinator cannot reach its database; try again or use another replica",
    );
    let mut resp = error(&e);
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp
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
