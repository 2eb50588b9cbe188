//! The web console, under `/console/` on the HTTPS listener (`crate::http`
//! hands it every request whose path starts there).
//!
//! Every page is server-rendered HTML (maud, which escapes whatever it is
//! given unless told otherwise); a small script (`assets/console.js`)
//! refreshes tables by fetching HTML fragments of the same pages. Nothing
//! is read from the store for a page: each page is made of requests of the
//! signed-in principal through the one door, `actions::handle`, with a
//! [`Caller`] whose transport is [`Transport::Console`] — authorised by its
//! policies and audited exactly as the same request from the CLI.
//!
//! Sign-in (sessions: [`crate::sessions`]) takes an operator token or an access key pair,
//! checks it as the other edges do (`crate::credentials`), and is itself the
//! request `ConsoleLogin` (`tether:ConsoleLogin`). The session cookie is
//! `HttpOnly; Secure; SameSite=Strict; Path=/console/`; every POST must
//! carry the session's CSRF token; every answer has a Content-Security-Policy
//! that allows only this origin's own files (no inline script or style).

mod pages;
mod views;

use std::net::IpAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tether_ssm::{ApiError, limits};

use crate::actions;
use crate::core::Coordinator;
use crate::credentials::{self, Caller, Principal, Refused, Transport};
use crate::sessions::{self as session, Login, Lookup, Session};

/// The session cookie's name, and the sign-in form's CSRF cookie.
const COOKIE: &str = "tether_console";
const LOGIN_COOKIE: &str = "tether_console_login";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// Whether `path` is the console's.
pub fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// A signed-in request: who, and the session it came with.
pub(crate) struct Ctx {
    pub c: Arc<Coordinator>,
    pub caller: Caller,
    pub session: Session,
}

impl Ctx {
    /// One request of the signed-in principal through the one door.
    pub async fn call(&self, operation: &str, body: Value) -> Result<Value, ApiError> {
        actions::handle(
            &self.c,
            &self.caller,
            operation,
            body.to_string().as_bytes(),
        )
        .await
    }
}

/// What a page answers.
pub(crate) enum Answer {
    Html(StatusCode, String),
    Json(Value),
    Redirect(String),
}

/// Serves one console request.
pub async fn handle(
    c: &Arc<Coordinator>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let source = req
        .extensions()
        .get::<std::net::SocketAddr>()
        .map(|a| a.ip());
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let cookies = cookies(req.headers());
    // The script's own fetches (fragments, previews) are told 401, not
    // redirected: it reloads the page, which then goes to the sign-in page.
    let fetched = req.headers().contains_key("x-console-fetch");
    let header_csrf = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match (method.clone(), path.as_str()) {
        (Method::GET, "/console/assets/console.css") => {
            return asset("text/css; charset=utf-8", CSS);
        }
        (Method::GET, "/console/assets/console.js") => {
            return asset("text/javascript; charset=utf-8", JS);
        }
        (Method::GET, "/console" | "/console/") => return redirect("/console/fleet", &[]),
        (Method::GET, "/console/login") => {
            let note = match views::query(&query).get("expired").map(String::as_str) {
                Some("1") => Some("Your session has expired: sign in again."),
                _ => None,
            };
            return login_form(StatusCode::OK, None, note);
        }
        _ => {}
    }
    // Every POST: its form, within the cap and the body timeout.
    let form = if method == Method::POST {
        match read_form(req.into_body()).await {
            Ok(f) => Some(f),
            Err(e) => return text(StatusCode::PAYLOAD_TOO_LARGE, &e),
        }
    } else {
        None
    };
    if method == Method::POST && path == "/console/login" {
        let form = form.unwrap_or_default();
        let sent = form.get("csrf").map(String::as_str).unwrap_or("");
        let expected = cookies.get(LOGIN_COOKIE).map(String::as_str).unwrap_or("");
        if expected.is_empty() || !same(sent, expected) {
            return forbidden_post();
        }
        return login(c, source, &form).await;
    }
    // Everything else needs a session.
    let Some(sid) = cookies.get(COOKIE).cloned() else {
        return not_signed_in(&method, false, fetched);
    };
    let session = match c.console.get(&sid) {
        Ok(s) => s,
        Err(Lookup::Expired) => return not_signed_in(&method, true, fetched),
        Err(Lookup::Unknown) => return not_signed_in(&method, false, fetched),
    };
    if method == Method::POST {
        let sent = form
            .as_ref()
            .and_then(|f| f.get("csrf").cloned())
            .or(header_csrf)
            .unwrap_or_default();
        if !same(&sent, &session.csrf) {
            return forbidden_post();
        }
    }
    if method == Method::POST && path == "/console/logout" {
        c.console.close(&sid);
        return redirect("/console/login", &[&clear_cookie(COOKIE)]);
    }
    // The credential again: revoked, deactivated or expired since sign-in
    // ends the session.
    let principal = match principal_of(c, &session.login).await {
        Ok(p) => p,
        Err(Refused::Store(e)) => {
            return text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n"));
        }
        Err(e) => {
            c.console.close(&sid);
            c.audit.later(
                crate::audit::Draft::unauthenticated(
                    "console",
                    source,
                    login_credential(&session.login),
                    &e.to_string(),
                ),
                "refused",
            );
            return not_signed_in(&method, true, fetched);
        }
    };
    let ctx = Ctx {
        c: c.clone(),
        caller: Caller {
            principal,
            transport: Transport::Console,
            source,
        },
        session,
    };
    let q = views::query(&query);
    let answer = pages::route(&ctx, &method, &path, &q, form.unwrap_or_default()).await;
    match answer {
        Answer::Html(status, body) => html(status, body, &[]),
        Answer::Json(v) => {
            let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
            set(&mut r, header::CONTENT_TYPE, "application/json");
            secure_headers(&mut r);
            r
        }
        Answer::Redirect(to) => redirect(&to, &[]),
    }
}

/// The credential ID a login names, for an audit record (never a secret).
fn login_credential(login: &Login) -> Option<&str> {
    match login {
        Login::Token { .. } => None,
        Login::AccessKey { access_key_id } => Some(access_key_id),
    }
}

/// The principal a session's credential stands for now.
async fn principal_of(c: &Coordinator, login: &Login) -> Result<Principal, Refused> {
    match login {
        Login::Token { hash } => credentials::operator_principal_by_hash(c, hash).await,
        Login::AccessKey { access_key_id } => {
            match credentials::access_key(c, access_key_id).await? {
                Some((_, p)) => Ok(p),
                None => Err(Refused::UnknownToken),
            }
        }
    }
}

/// Sign-in: the credential checked as the other edges check it, then the
/// request ConsoleLogin of that principal.
async fn login(
    c: &Arc<Coordinator>,
    source: Option<IpAddr>,
    form: &std::collections::HashMap<String, String>,
) -> Response<Full<Bytes>> {
    let field = |k: &str| form.get(k).map(|v| v.trim()).unwrap_or("");
    let (token, key_id, secret) = (
        field("token"),
        field("access_key_id"),
        field("secret_access_key"),
    );
    let refused = |credential: Option<&str>, why: &str| {
        c.audit.later(
            crate::audit::Draft::unauthenticated("console", source, credential, why),
            "refused",
        );
        login_form(StatusCode::UNAUTHORIZED, Some(why), None)
    };
    let (login, principal) = if !token.is_empty() {
        let hash = credentials::token_hash(token);
        match credentials::operator_principal_by_hash(c, &hash).await {
            Ok(p) => (Login::Token { hash }, p),
            Err(Refused::Store(e)) => {
                return text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n"));
            }
            Err(e) => {
                let id = match &e {
                    Refused::TokenExpired(id) => Some(id.clone()),
                    _ => None,
                };
                return refused(id.as_deref(), &e.to_string());
            }
        }
    } else if !key_id.is_empty() {
        let key_id: String = key_id.chars().take(128).collect();
        match credentials::access_key(c, &key_id).await {
            Ok(Some((stored, p))) if same(secret, &stored) => {
                credentials::access_key_used(c, &key_id).await;
                (
                    Login::AccessKey {
                        access_key_id: key_id,
                    },
                    p,
                )
            }
            Ok(Some(_)) | Ok(None) => {
                return refused(
                    Some(&key_id),
                    &format!("access key {key_id} and this secret do not match"),
                );
            }
            Err(Refused::Store(e)) => {
                return text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n"));
            }
            Err(e) => return refused(Some(&key_id), &e.to_string()),
        }
    } else {
        return login_form(
            StatusCode::BAD_REQUEST,
            Some("give an operator token, or an access key ID and its secret"),
            None,
        );
    };
    let caller = Caller {
        principal,
        transport: Transport::Console,
        source,
    };
    match actions::handle(c, &caller, "ConsoleLogin", b"{}").await {
        Ok(v) => {
            let arn = v["Principal"].as_str().unwrap_or("").to_string();
            let (id, _) = c.console.open(login, arn);
            // No Max-Age: the server ends the session (and says so); the
            // browser drops the cookie when it closes.
            let cookie =
                format!("{COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/console/");
            redirect("/console/fleet", &[&cookie, &clear_cookie(LOGIN_COOKIE)])
        }
        Err(e) => login_form(
            StatusCode::FORBIDDEN,
            Some(&format!("{}: {}", e.kind, e.message)),
            None,
        ),
    }
}

fn clear_cookie(name: &str) -> String {
    format!("{name}=; HttpOnly; Secure; SameSite=Strict; Path=/console/; Max-Age=0")
}

/// The sign-in page, with a fresh CSRF token in its cookie and its form.
fn login_form(
    status: StatusCode,
    error: Option<&str>,
    note: Option<&str>,
) -> Response<Full<Bytes>> {
    let csrf = session::random_token();
    let cookie = format!(
        "{LOGIN_COOKIE}={csrf}; HttpOnly; Secure; SameSite=Strict; Path=/console/; Max-Age=3600"
    );
    html(
        status,
        views::login_page(&csrf, error, note).into_string(),
        &[&cookie],
    )
}

/// A request without a (live) session: pages go to the sign-in page
/// (saying why), a script's fetch or a POST gets 401. The cookie is left as
/// it is: every tab of an expired session is told it expired.
fn not_signed_in(method: &Method, expired: bool, fetched: bool) -> Response<Full<Bytes>> {
    if method == Method::GET && !fetched {
        let to = if expired {
            "/console/login?expired=1"
        } else {
            "/console/login"
        };
        return redirect(to, &[]);
    }
    text(
        StatusCode::UNAUTHORIZED,
        "not signed in (or the session has expired)\n",
    )
}

fn forbidden_post() -> Response<Full<Bytes>> {
    html(
        StatusCode::FORBIDDEN,
        views::refusal_page(
            "Refused: this form did not come from a console page (missing or wrong CSRF token).",
        )
        .into_string(),
        &[],
    )
}

/// Constant-time string equality.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn cookies(headers: &hyper::HeaderMap) -> std::collections::HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn read_form(
    body: hyper::body::Incoming,
) -> Result<std::collections::HashMap<String, String>, String> {
    let limited = http_body_util::Limited::new(body, limits::CONSOLE_MAX_FORM_BYTES).collect();
    let bytes = match tokio::time::timeout(limits::HTTP_BODY_TIMEOUT, limited).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return Err(format!(
                "the form is larger than {} bytes, or could not be read\n",
                limits::CONSOLE_MAX_FORM_BYTES
            ));
        }
        Err(_) => return Err("the form did not arrive in time\n".into()),
    };
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

fn set(r: &mut Response<Full<Bytes>>, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

fn secure_headers(r: &mut Response<Full<Bytes>>) {
    set(r, header::CONTENT_SECURITY_POLICY, CSP);
    set(r, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(r, header::REFERRER_POLICY, "no-referrer");
    set(r, header::X_FRAME_OPTIONS, "DENY");
    set(r, header::CACHE_CONTROL, "no-store");
}

fn html(status: StatusCode, body: String, cookies: &[&str]) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    set(&mut r, header::CONTENT_TYPE, "text/html; charset=utf-8");
    secure_headers(&mut r);
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    set(&mut r, header::CONTENT_TYPE, "text/plain; charset=utf-8");
    secure_headers(&mut r);
    r
}

fn redirect(to: &str, cookies: &[&str]) -> Response<Full<Bytes>> {
    let mut r = html(StatusCode::SEE_OTHER, String::new(), cookies);
    set(&mut r, header::LOCATION, to);
    r
}

fn asset(ctype: &str, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    set(&mut r, header::CONTENT_TYPE, ctype);
    secure_headers(&mut r);
    set(&mut r, header::CACHE_CONTROL, "public, max-age=300");
    r
}
