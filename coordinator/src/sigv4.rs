//! Server-side AWS Signature Version 4 verification (`AWS4-HMAC-SHA256`), as the
//! SSM-compatible HTTP API needs it: parse the `Authorization` header, rebuild
//! the canonical request from what arrived, derive the signing key from the
//! caller's secret and compare signatures in constant time.
//!
//! Pure: the caller looks the access key up and supplies the current time, so
//! every rule is tested here with fixed inputs. The HMAC and SHA-256 primitives
//! are `ring`'s; the canonical forms follow the SigV4 specification for
//! services other than S3 (paths normalised and encoded twice, no unsigned
//! payloads). Errors carry the AWS error code a client expects for each refusal.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use ring::hmac;
use sha2::{Digest, Sha256};

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far the request's X-Amz-Date may be from the coordinator's clock.
pub const MAX_CLOCK_SKEW: TimeDelta =
    TimeDelta::seconds(tether_ssm::limits::SIGV4_MAX_CLOCK_SKEW_SECS);
const AMZ_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Why a request's signature was refused. [`SigError::code`] is the AWS error
/// code clients recognise; the message says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No Authorization header (and no presigned query).
    #[error("Missing Authentication Token")]
    Missing,
    /// The Authorization header is not a SigV4 header.
    #[error("{0}")]
    Incomplete(String),
    /// The access key is not one this coordinator issued.
    #[error(
        "The security token included in the request is invalid: access key {0} is not known to this coordinator"
    )]
    UnknownKey(String),
    /// Temporary credentials (a session token) were presented; only issued keys are accepted.
    #[error(
        "The security token included in the request is invalid: session tokens are not accepted, sign with an access key from `tether create-access-key`"
    )]
    SessionToken,
    /// The credential scope is wrong (service, terminator, date).
    #[error("{0}")]
    Scope(String),
    /// X-Amz-Date is more than five minutes away from the coordinator's clock.
    #[error("Signature expired: {request} is now earlier than {earliest} ({now} - 5 min.)")]
    Expired {
        request: String,
        earliest: String,
        now: String,
    },
    /// X-Amz-Date is more than five minutes in the future.
    #[error("Signature not yet current: {request} is still later than {latest} ({now} + 5 min.)")]
    NotYetCurrent {
        request: String,
        latest: String,
        now: String,
    },
    /// The signature does not match.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
    )]
    Mismatch,
}

impl SigError {
    /// The AWS error code (`__type`) for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            SigError::Missing => "MissingAuthenticationTokenException",
            SigError::Incomplete(_) => "IncompleteSignatureException",
            SigError::UnknownKey(_) | SigError::SessionToken => "UnrecognizedClientException",
            SigError::Scope(_)
            | SigError::Expired { .. }
            | SigError::NotYetCurrent { .. }
            | SigError::Mismatch => "InvalidSignatureException",
        }
    }
}

/// The parsed `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub terminator: String,
    /// Lowercase header names, in the order given (SigV4 requires them sorted).
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    /// `DATE/REGION/SERVICE/aws4_request`.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.date, self.region, self.service, self.terminator
        )
    }
}

/// The parts of an HTTP request that SigV4 covers. Header names are matched
/// case-insensitively; a repeated header appears once per value.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent (still percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the Authorization header of `req`.
pub fn authorization(req: &Request<'_>) -> Result<Authorization, SigError> {
    let Some(header) = req.header("authorization") else {
        if req.query.contains("X-Amz-Signature=") {
            return Err(SigError::Incomplete(
                "presigned query-string requests are not accepted: sign the Authorization header"
                    .into(),
            ));
        }
        return Err(SigError::Missing);
    };
    let incomplete = |what: &str| {
        SigError::Incomplete(format!(
            "Authorization header requires {what} (got {header:?})"
        ))
    };
    let rest = header
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            SigError::Incomplete(format!(
                "Authorization header must start with {ALGORITHM} (got {:?})",
                header.split_whitespace().next().unwrap_or("")
            ))
        })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or_else(|| incomplete("'Credential' parameter"))?;
    let signed = signed.ok_or_else(|| incomplete("'SignedHeaders' parameter"))?;
    let signature = signature.ok_or_else(|| incomplete("'Signature' parameter"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, terminator] = parts.as_slice() else {
        return Err(SigError::Incomplete(format!(
            "Credential must be ACCESS_KEY/DATE/REGION/SERVICE/aws4_request (got {credential:?})"
        )));
    };
    if key.is_empty() {
        return Err(incomplete("an access key in the Credential parameter"));
    }
    Ok(Authorization {
        access_key_id: (*key).to_string(),
        date: (*date).to_string(),
        region: (*region).to_string(),
        service: (*service).to_string(),
        terminator: (*terminator).to_string(),
        signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature: signature.to_ascii_lowercase(),
    })
}

/// Checks the scope, the date window and the signature of `req`, signed under
/// `auth` with `secret`, for `service`, at `now`.
pub fn verify(
    req: &Request<'_>,
    auth: &Authorization,
    secret: &str,
    service: &str,
    now: DateTime<Utc>,
) -> Result<(), SigError> {
    let amz_date = precheck(req, auth, service, now)?;
    let canonical = canonical_request(req, &auth.signed_headers)?;
    let expected = signature(secret, auth, &amz_date, &canonical);
    let ok: bool =
        subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), auth.signature.as_bytes()).into();
    if ok { Ok(()) } else { Err(SigError::Mismatch) }
}

/// Every check of [`verify`] that needs neither the secret nor the body —
/// the scope, no session token, the date window, `host` and `x-amz-date`
/// signed — so that a request failing them is refused before its body is
/// read. Gives back the request's X-Amz-Date.
pub fn precheck(
    req: &Request<'_>,
    auth: &Authorization,
    service: &str,
    now: DateTime<Utc>,
) -> Result<String, SigError> {
    if auth.service != service {
        return Err(SigError::Scope(format!(
            "Credential should be scoped to correct service: '{service}' (got '{}')",
            auth.service
        )));
    }
    if auth.terminator != "aws4_request" {
        return Err(SigError::Scope(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'",
            auth.terminator
        )));
    }
    if req.header("x-amz-security-token").is_some() {
        return Err(SigError::SessionToken);
    }
    let amz_date = req.header("x-amz-date").ok_or_else(|| {
        SigError::Incomplete("the X-Amz-Date header is required (YYYYMMDDTHHMMSSZ)".into())
    })?;
    let when = NaiveDateTime::parse_from_str(amz_date, AMZ_DATE_FORMAT)
        .map(|t| t.and_utc())
        .map_err(|_| {
            SigError::Incomplete(format!(
                "X-Amz-Date {amz_date:?} is not in the form YYYYMMDDTHHMMSSZ"
            ))
        })?;
    if !amz_date.starts_with(&auth.date) || auth.date.len() != 8 {
        return Err(SigError::Scope(format!(
            "Date in Credential scope ({}) does not match YYYYMMDD from ISO-8601 version of date from HTTP ({amz_date})",
            auth.date
        )));
    }
    let fmt = |t: DateTime<Utc>| t.format(AMZ_DATE_FORMAT).to_string();
    if when < now - MAX_CLOCK_SKEW {
        return Err(SigError::Expired {
            request: amz_date.to_string(),
            earliest: fmt(now - MAX_CLOCK_SKEW),
            now: fmt(now),
        });
    }
    if when > now + MAX_CLOCK_SKEW {
        return Err(SigError::NotYetCurrent {
            request: amz_date.to_string(),
            latest: fmt(now + MAX_CLOCK_SKEW),
            now: fmt(now),
        });
    }
    require_signed(auth, &["host", "x-amz-date"])?;
    Ok(amz_date.to_string())
}

/// Refuses a request whose SignedHeaders leave out one of `required`: what
/// the signature does not cover, anyone could change in flight (the SSM API
/// requires its `x-amz-target` and `content-type`, or a request signed for
/// one operation could be replayed as another).
pub fn require_signed(auth: &Authorization, required: &[&str]) -> Result<(), SigError> {
    for name in required {
        if !auth.signed_headers.iter().any(|h| h == name) {
            return Err(SigError::Incomplete(format!(
                "SignedHeaders must include {name} (got {})",
                auth.signed_headers.join(";")
            )));
        }
    }
    Ok(())
}

/// The hex signature of `canonical_request` under `secret` and `auth`'s scope.
pub fn signature(
    secret: &str,
    auth: &Authorization,
    amz_date: &str,
    canonical_request: &str,
) -> String {
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        auth.scope(),
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mac = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let k_date = mac(format!("AWS4{secret}").as_bytes(), &auth.date);
    let k_region = mac(k_date.as_ref(), &auth.region);
    let k_service = mac(k_region.as_ref(), &auth.service);
    let k_signing = mac(k_service.as_ref(), &auth.terminator);
    hex::encode(mac(k_signing.as_ref(), &string_to_sign).as_ref())
}

/// The SigV4 canonical request of `req` over `signed_headers`.
pub fn canonical_request(req: &Request<'_>, signed_headers: &[String]) -> Result<String, SigError> {
    let mut headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(SigError::Incomplete(format!(
                "signed header {name} is not in the request"
            )));
        }
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = hex::encode(Sha256::digest(req.body));
    if let Some(claimed) = req.header("x-amz-content-sha256")
        && !claimed.eq_ignore_ascii_case(&payload_hash)
    {
        return Err(SigError::Incomplete(format!(
            "X-Amz-Content-SHA256 {claimed:?} is not the SHA-256 of the body (unsigned payloads are not accepted)"
        )));
    }
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_path(req.path),
        canonical_query(req.query),
        headers,
        signed_headers.join(";"),
        payload_hash
    ))
}

/// RFC 3986 encoding of everything but the unreserved characters (and `/`
/// when `keep_slash`), as SigV4 prescribes.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path with dot segments and empty segments removed, each segment
/// encoded again (services other than S3 encode the already-encoded path).
fn canonical_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::from("/");
    out.push_str(
        &segments
            .iter()
            .map(|s| uri_encode(s, false))
            .collect::<Vec<_>>()
            .join("/"),
    );
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// Query parameters decoded, encoded canonically, sorted by name then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(&k.replace('+', " ")), false),
                uri_encode(&percent_decode(&v.replace('+', " ")), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn at(s: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(s, AMZ_DATE_FORMAT)
            .unwrap()
            .and_utc()
    }

    fn request<'a>(auth: &str, date: &str, body: &'a [u8]) -> Request<'a> {
        Request {
            method: "GET",
            path: "/",
            query: "",
            headers: vec![
                ("Host".into(), "example.amazonaws.com".into()),
                ("X-Amz-Date".into(), date.into()),
                ("Authorization".into(), auth.into()),
            ],
            body,
        }
    }

    /// The AWS SigV4 test suite's `get-vanilla` case.
    const VANILLA: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    #[test]
    fn the_aws_test_suite_vanilla_request_verifies() {
        let req = request(VANILLA, "20150830T123600Z", b"");
        let auth = authorization(&req).unwrap();
        assert_eq!(auth.access_key_id, "AKIDEXAMPLE");
        assert_eq!(auth.scope(), "20150830/us-east-1/service/aws4_request");
        assert_eq!(
            verify(&req, &auth, SECRET, "service", at("20150830T123900Z")),
            Ok(())
        );
    }

    #[test]
    fn refusals_carry_the_aws_error_codes() {
        let now = at("20150830T123600Z");
        let req = request(VANILLA, "20150830T123600Z", b"");
        let auth = authorization(&req).unwrap();
        let cases: Vec<(Result<(), SigError>, &str)> = vec![
            (
                verify(&req, &auth, "wrong-secret", "service", now),
                "InvalidSignatureException",
            ),
            (
                verify(&req, &auth, SECRET, "ssm", now),
                "InvalidSignatureException",
            ),
            (
                verify(&req, &auth, SECRET, "service", at("20150830T124101Z")),
                "InvalidSignatureException",
            ),
            (
                verify(&req, &auth, SECRET, "service", at("20150830T123059Z")),
                "InvalidSignatureException",
            ),
            (
                verify(
                    &request(VANILLA, "20150830T123600Z", b"changed body"),
                    &auth,
                    SECRET,
                    "service",
                    now,
                ),
                "InvalidSignatureException",
            ),
            (
                verify(
                    &request(VANILLA, "20150831T123600Z", b""),
                    &auth,
                    SECRET,
                    "service",
                    at("20150831T123600Z"),
                ),
                "InvalidSignatureException",
            ),
        ];
        for (i, (got, code)) in cases.into_iter().enumerate() {
            assert_eq!(got.map_err(|e| e.code()), Err(code), "case {i}");
        }
        let expired = verify(&req, &auth, SECRET, "service", at("20150830T124600Z")).unwrap_err();
        assert_eq!(
            expired.to_string(),
            "Signature expired: 20150830T123600Z is now earlier than 20150830T124100Z (20150830T124600Z - 5 min.)"
        );
    }

    #[test]
    fn malformed_or_missing_authorization_is_named() {
        let mut unsigned = request("", "20150830T123600Z", b"");
        unsigned.headers.retain(|(n, _)| n != "Authorization");
        assert_eq!(authorization(&unsigned), Err(SigError::Missing));
        assert_eq!(
            SigError::Missing.code(),
            "MissingAuthenticationTokenException"
        );
        for bad in [
            "AWS4-HMAC-SHA1 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/ssm, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/ssm/aws4_request, Signature=00",
        ] {
            let e = authorization(&request(bad, "20150830T123600Z", b"")).unwrap_err();
            assert_eq!(e.code(), "IncompleteSignatureException", "{bad}: {e}");
        }
        let session = {
            let mut r = request(VANILLA, "20150830T123600Z", b"");
            r.headers
                .push(("X-Amz-Security-Token".into(), "token".into()));
            r
        };
        let auth = authorization(&session).unwrap();
        assert_eq!(
            verify(&session, &auth, SECRET, "service", at("20150830T123600Z"))
                .unwrap_err()
                .code(),
            "UnrecognizedClientException"
        );
    }

    #[test]
    fn required_headers_must_be_signed() {
        let req = request(VANILLA, "20150830T123600Z", b"");
        let auth = authorization(&req).unwrap();
        assert_eq!(require_signed(&auth, &["host", "x-amz-date"]), Ok(()));
        let e = require_signed(&auth, &["host", "x-amz-target", "content-type"]).unwrap_err();
        assert_eq!(e.code(), "IncompleteSignatureException");
        assert_eq!(
            e.to_string(),
            "SignedHeaders must include x-amz-target (got host;x-amz-date)"
        );
        // The checks before the body: a date out of the window is refused there.
        assert_eq!(
            precheck(&req, &auth, "service", at("20150830T123600Z")).unwrap(),
            "20150830T123600Z"
        );
        assert_eq!(
            precheck(&req, &auth, "service", at("20150830T124601Z"))
                .unwrap_err()
                .code(),
            "InvalidSignatureException"
        );
    }

    #[test]
    fn canonical_forms() {
        let cases = [
            ("/", "/"),
            ("", "/"),
            ("/a/./b/../c", "/a/c"),
            ("/a b", "/a%20b"),
            ("/a%20b", "/a%2520b"),
            ("//x//", "/x/"),
        ];
        for (path, want) in cases {
            assert_eq!(canonical_path(path), want, "{path}");
        }
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("k=a%20b&x"), "k=a%20b&x=");
        assert_eq!(canonical_query(""), "");
    }
}
