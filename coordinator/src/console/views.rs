//! The console's common markup: the layout, the sign-in page, and small
//! helpers for the pages. maud escapes every `(value)`; nothing here builds
//! markup from strings.

use std::collections::HashMap;

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;
use tether_ssm::ApiError;

/// The sections in the header.
pub const NAV: &[(&str, &str)] = &[
    ("fleet", "Fleet"),
    ("run", "Run command"),
    ("history", "History"),
    ("documents", "Documents"),
    ("associations", "Associations"),
    ("parameters", "Parameters"),
    ("audit", "Audit trail"),
];

/// A query string as a map (the last value of a repeated key wins).
pub fn query(q: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

/// `key=value&…` for links, each value encoded.
pub fn qs(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// A path segment, encoded (instance IDs, command IDs and document names
/// are plain, but a name is outside input).
pub fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A string member, or "".
pub fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// An SSM timestamp (seconds since the epoch, or an ISO string).
fn instant(v: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let ms = match v {
        Value::Number(n) => n.as_f64().map(|f| (f * 1000.0) as i64),
        Value::String(t) => tether_util::time::parse_timestamp_ms(t),
        _ => None,
    };
    ms.and_then(chrono::DateTime::from_timestamp_millis)
}

/// An SSM timestamp as a `<time>` element: UTC in the HTML (what a browser
/// without script shows), the instant in `datetime`; the console's script
/// shows it in the browser's time zone, the UTC value in its title.
pub fn time(v: &Value) -> Markup {
    match instant(v) {
        None => html! {},
        Some(t) => html! {
            time.local datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) {
                (t.format("%Y-%m-%d %H:%M:%S UTC"))
            }
        },
    }
}

/// How long ago an SSM timestamp was, as a `<time>` whose title is the
/// instant (UTC; the script makes it local time).
pub fn ago_time(v: &Value) -> Markup {
    match instant(v) {
        None => html! {},
        Some(t) => html! {
            time.ago datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                title=(t.format("%Y-%m-%d %H:%M:%S UTC")) { (ago(v)) }
        },
    }
}

/// How long ago an SSM timestamp was, shortly (`12 s ago`, `3 h ago`).
pub fn ago(v: &Value) -> String {
    let Some(secs) = v.as_f64() else {
        return String::new();
    };
    let now = tether_util::time::now_ms() as f64 / 1000.0;
    let d = (now - secs).max(0.0) as u64;
    match d {
        0..60 => format!("{d} s ago"),
        60..3600 => format!("{} min ago", d / 60),
        3600..86400 => format!("{} h ago", d / 3600),
        _ => format!("{} d ago", d / 86400),
    }
}

/// The colour class of a status.
pub fn status_class(status: &str) -> &'static str {
    match status {
        "Online" | "Success" | "Associated" => "ok",
        "ConnectionLost" | "Failed" | "TimedOut" | "Undeliverable" | "Terminated"
        | "DeliveryTimedOut" | "ExecutionTimedOut" | "Inactive" => "bad",
        "Cancelled" | "Cancelling" => "muted",
        "Pending" | "InProgress" | "Delayed" => "busy",
        _ => "muted",
    }
}

pub fn pill(status: &str) -> Markup {
    html! { span class={"pill " (status_class(status))} { (status) } }
}

/// An error answer as the page shows it.
pub fn error_box(e: &ApiError) -> Markup {
    let refused = e.kind == "AccessDeniedException";
    html! {
        div.error role="alert" data-kind=(e.kind) {
            strong { @if refused { "Refused: " } @else { "Error: " } (e.kind) }
            " " (e.message)
        }
    }
}

/// A page's head: with a session (`csrf`), the CSRF token for the script
/// and the script itself; the sign-in page has neither.
fn head(title: &str, csrf: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @if let Some(csrf) = csrf {
                meta name="csrf-token" content=(csrf);
            }
            title { (title) " · Tether" }
            link rel="stylesheet" href="/console/assets/console.css";
            @if csrf.is_some() {
                script src="/console/assets/console.js" defer {}
            }
        }
    }
}

/// The page around `body`.
pub fn layout(title: &str, section: &str, who: &str, csrf: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, Some(csrf)))
            body {
                header.top {
                    a.brand href="/console/fleet" { "Tether" }
                    nav {
                        @for (key, label) in NAV {
                            a href={"/console/" (key)} class=[(*key == section).then_some("active")] { (label) }
                        }
                    }
                    div.who {
                        span title=(who) { (short_arn(who)) }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button.link type="submit" id="logout" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The last part of an ARN (`user/alice`, `root`).
fn short_arn(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

/// The sign-in page.
pub fn login_page(csrf: &str, error: Option<&str>, note: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in", None))
            body.login {
                main.login {
                    h1 { "Tether" }
                    p.sub { "Sign in to the fleet console" }
                    @if let Some(n) = note { div.note { (n) } }
                    @if let Some(e) = error { div.error role="alert" { strong { "Refused: " } (e) } }
                    form method="post" action="/console/login" id="login" {
                        input type="hidden" name="csrf" value=(csrf);
                        fieldset {
                            legend { "Operator token" }
                            label for="token" { "Token (root's, or a user's from create-operator-config)" }
                            input type="password" id="token" name="token" autocomplete="off";
                        }
                        fieldset {
                            legend { "or an access key pair" }
                            label for="access_key_id" { "Access key ID" }
                            input type="text" id="access_key_id" name="access_key_id" autocomplete="off";
                            label for="secret_access_key" { "Secret access key" }
                            input type="password" id="secret_access_key" name="secret_access_key" autocomplete="off";
                        }
                        button type="submit" id="signin" { "Sign in" }
                    }
                }
            }
        }
    }
}

/// A bare refusal page (a forged POST).
pub fn refusal_page(why: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Refused · Tether" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body { main { div.error role="alert" { (why) } p { a href="/console/fleet" { "Back to the console" } } } }
        }
    }
}
