//! `tether-bench --console-fleet N`: the web console's fleet page over a
//! fleet of N registered instances. A real coordinator (`tether serve`, its
//! own process, SQLite or `--database`), N synthetic instances written to its
//! database (`Bench::seed_instances`: names, platforms, tags, nine in ten
//! online), then a sign-in to the console with the root token as a browser
//! makes it (the sign-in page's CSRF cookie, the form, the session cookie),
//! and each page fetched `--console-renders` times over HTTPS on loopback: the
//! whole fleet page, the fragment the page refreshes itself with, a later
//! page, and the filters an operator uses (name, tag, status). Each figure is
//! the time from sending the request to the last byte of the answer (one new
//! TLS connection each, as the handshake is part of what a user waits for),
//! p50 and p99 in ms, and the page's size.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tether_store::Store;
use tether_util::now_ms;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, RootCertStore};

use crate::{Args, Coord, p50_p99_ms, round, say};

/// One answer: status, the cookies it set, its body.
struct Answer {
    status: u16,
    cookies: Vec<(String, String)>,
    body: String,
}

/// An HTTPS client of the coordinator's listener, trusting its CA.
struct Client {
    tls: TlsConnector,
    addr: String,
    cookie: String,
}

impl Client {
    fn new(ca_pem: &str, addr: &str) -> anyhow::Result<Client> {
        let mut roots = RootCertStore::empty();
        for p in pem::parse_many(ca_pem)? {
            roots.add(p.into_contents().into())?;
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client {
            tls: TlsConnector::from(Arc::new(config)),
            addr: addr.to_string(),
            cookie: String::new(),
        })
    }

    /// One request on a new connection (`Connection: close`), read to the end.
    async fn request(
        &self,
        method: &str,
        path: &str,
        form: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
        let mut s = self.tls.connect(name, tcp).await?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: tether-bench\r\n",
            self.addr
        );
        if !self.cookie.is_empty() {
            head.push_str(&format!("Cookie: {}\r\n", self.cookie));
        }
        let body = form.unwrap_or("");
        if form.is_some() {
            head.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(body);
        s.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        match s.read_to_end(&mut raw).await {
            Ok(_) => {}
            // hyper closes without close_notify after `Connection: close`.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(e.into()),
        }
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("an HTTP answer without a blank line after its head")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("an HTTP answer without a status")?;
        let cookies = head
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("set-cookie").then_some(v.trim())
            })
            .filter_map(|v| v.split(';').next()?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            unchunk(body)
        } else {
            body.to_string()
        };
        Ok(Answer {
            status,
            cookies,
            body,
        })
    }
}

/// A chunked body, joined.
fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn cookie<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.cookies
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) async fn bench(
    args: &Args,
    tether: &Path,
    work: &Path,
    out: &mut Value,
) -> anyhow::Result<()> {
    let n = args.console_fleet;
    let coord = Coord::start(tether, &work.join("coord"), args.database.clone()).await?;
    let cfg = tether_cli::load_config(&coord.dir.join("operator.json"))
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let db: Store = coord.db().await?;
    let started = Instant::now();
    db.bench().seed_instances(n, now_ms()).await?;
    say(format!(
        "console: {n} instances stored in {:.1} s",
        started.elapsed().as_secs_f64()
    ));

    let mut c = Client::new(&cfg.ca_certificate, &coord.http_listen)?;
    // Sign in as a browser does.
    let login = c.request("GET", "/console/login", None).await?;
    let csrf = cookie(&login, "tether_console_login")
        .context("the sign-in page set no CSRF cookie")?
        .to_string();
    c.cookie = format!("tether_console_login={csrf}");
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &csrf)
        .append_pair("token", &cfg.token)
        .finish();
    let signed = c.request("POST", "/console/login", Some(&form)).await?;
    let sid = cookie(&signed, "tether_console")
        .filter(|v| !v.is_empty())
        .with_context(|| format!("sign-in refused ({}): {}", signed.status, signed.body))?
        .to_string();
    c.cookie = format!("tether_console={sid}");

    let renders = args.console_renders.max(1);
    let mut worst: f64 = 0.0;
    for (label, path, want_rows) in [
        // The floor: a static asset (a new TLS connection, no session, no database).
        (
            "floor: static asset",
            "/console/assets/console.css".to_string(),
            false,
        ),
        ("fleet page", "/console/fleet".to_string(), true),
        (
            "fleet table (refresh)",
            "/console/fleet/table".to_string(),
            true,
        ),
        (
            "fleet page 100",
            // The page token of the 100th page (offset 4,950).
            format!(
                "/console/fleet?next={}",
                url::form_urlencoded::byte_serialize(page_token(99 * 50).as_bytes())
                    .collect::<String>()
            ),
            n > 99 * 50,
        ),
        (
            "name filter",
            "/console/fleet?name=node-0999".to_string(),
            n > 999,
        ),
        (
            "tag filter",
            "/console/fleet?tag=role%3Ddb".to_string(),
            true,
        ),
        (
            "status filter",
            "/console/fleet?status=ConnectionLost".to_string(),
            n >= 10,
        ),
    ] {
        let mut times = Vec::with_capacity(renders);
        let mut bytes = 0;
        for _ in 0..renders {
            let t = Instant::now();
            let a = c.request("GET", &path, None).await?;
            times.push((t.elapsed().as_secs_f64() * 1_000_000.0) as i64);
            if a.status != 200 {
                bail!("{label}: {path} answered {}: {}", a.status, a.body);
            }
            if want_rows && !a.body.contains("data-instance=") {
                bail!("{label}: {path} shows no instance");
            }
            bytes = a.body.len();
        }
        let (p50, p99) = p50_p99_ms(&mut times);
        worst = worst.max(p99);
        say(format!(
            "console: {label} ({path}): p50 {p50:.1} ms, p99 {p99:.1} ms, {bytes} bytes"
        ));
        out[format!("console_p50_ms: {label}")] = json!(round(p50));
        out[format!("console_p99_ms: {label}")] = json!(round(p99));
    }
    out["console_fleet"] = json!(n);
    out["console_renders"] = json!(renders);
    out["console_worst_p99_ms"] = json!(round(worst));
    Ok(())
}

/// The list verbs' page token for an offset (`offset:N`, base64).
fn page_token(offset: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("offset:{offset}"))
}
