//! How the agent reaches the coordinator below TLS: names are resolved in
//! process by hickory-resolver (`/etc/hosts`, then the nameservers of
//! `/etc/resolv.conf`), never through libc's `getaddrinfo`, so the static agent
//! never loads the host's NSS modules (a static glibc binary that does can crash
//! on hosts whose `nsswitch.conf` lists `systemd` or `sss`). `https_proxy`,
//! `all_proxy` and `no_proxy` (either case) are honoured with an HTTP CONNECT
//! tunnel. Each stage fails with its own error, so `status` can say which one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::ResolverConfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::ServiceExt;

/// Longest a single TCP connection attempt may take.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A failure below TLS, by stage.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("DNS: cannot resolve {host:?}: {detail}")]
    Dns { host: String, detail: String },
    #[error("TCP: cannot connect to {addr}: {detail}")]
    Tcp { addr: String, detail: String },
    #[error("proxy {proxy}: CONNECT to {target} failed: {detail}")]
    Proxy {
        proxy: String,
        target: String,
        detail: String,
    },
}

impl From<NetError> for std::io::Error {
    fn from(e: NetError) -> Self {
        std::io::Error::other(e)
    }
}

/// The proxy `https://host:port` goes through per the environment, if any
/// (without credentials, for display).
pub fn proxy_for(host: &str, port: u16) -> Option<String> {
    let uri = target_uri(host, port)?;
    Matcher::from_env().intercept(&uri).map(|i| {
        let u = i.uri();
        format!(
            "{}://{}",
            u.scheme_str().unwrap_or("http"),
            u.authority()
                .map(|a| a.as_str().rsplit('@').next().unwrap_or(""))
                .unwrap_or("")
        )
    })
}

fn target_uri(host: &str, port: u16) -> Option<http::Uri> {
    let h = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!("https://{h}:{port}").parse().ok()
}

fn resolver() -> Result<TokioResolver, String> {
    let builder = TokioResolver::builder_tokio().unwrap_or_else(|_| {
        // No usable /etc/resolv.conf: /etc/hosts still answers.
        Resolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], vec![]),
            TokioRuntimeProvider::default(),
        )
    });
    builder.build().map_err(|e| e.to_string())
}

/// The addresses of `host` (an IP literal is its own answer).
pub async fn resolve(host: &str) -> Result<Vec<IpAddr>, NetError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let dns = |detail: String| NetError::Dns {
        host: host.to_string(),
        detail,
    };
    let lookup = resolver()
        .map_err(dns)?
        .lookup_ip(host)
        .await
        .map_err(|e| dns(e.to_string()))?;
    let ips: Vec<IpAddr> = lookup.iter().collect();
    if ips.is_empty() {
        return Err(dns("no addresses".into()));
    }
    Ok(ips)
}

/// A TCP connection to `host:port`, trying each address in turn.
pub async fn connect_direct(host: &str, port: u16) -> Result<TcpStream, NetError> {
    let ips = resolve(host).await?;
    let mut last = String::new();
    for ip in &ips {
        let addr = SocketAddr::new(*ip, port);
        match tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out after {TCP_CONNECT_TIMEOUT:?}"),
        }
    }
    Err(NetError::Tcp {
        addr: format!("{host}:{port}"),
        detail: last,
    })
}

/// A TCP stream to `host:port`, through the environment's proxy if it says so.
pub async fn connect(host: &str, port: u16) -> Result<TcpStream, NetError> {
    let Some(target) = target_uri(host, port) else {
        return Err(NetError::Dns {
            host: host.to_string(),
            detail: "not a valid host name".into(),
        });
    };
    let Some(intercept) = Matcher::from_env().intercept(&target) else {
        return connect_direct(host, port).await;
    };
    let proxy = intercept.uri().clone();
    let proxy_text = proxy_for(host, port).unwrap_or_default();
    let direct = tower::service_fn(|uri: http::Uri| async move {
        let h = uri
            .host()
            .unwrap_or("")
            .trim_matches(['[', ']'])
            .to_string();
        let p = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        connect_direct(&h, p).await.map(TokioIo::new)
    });
    let mut tunnel = Tunnel::new(proxy, direct);
    if let Some(auth) = intercept.basic_auth() {
        tunnel = tunnel.with_auth(auth.clone());
    }
    let io = tunnel.oneshot(target).await.map_err(|e| {
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            src = s.source();
        }
        NetError::Proxy {
            proxy: proxy_text,
            target: format!("{host}:{port}"),
            detail,
        }
    })?;
    Ok(io.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_and_hosts_file_names_resolve_without_libc() {
        assert_eq!(
            resolve("127.0.0.1").await.unwrap(),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            resolve("::1").await.unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        // Every Linux /etc/hosts names localhost.
        let ips = resolve("localhost").await.unwrap();
        assert!(ips.iter().all(|ip| ip.is_loopback()), "{ips:?}");
        let err = resolve("no-such-host.invalid.").await.unwrap_err();
        assert!(err.to_string().starts_with("DNS: cannot resolve"), "{err}");
    }

    #[tokio::test]
    async fn tcp_failures_name_the_stage() {
        // A port nothing listens on: bind then drop to find one.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = connect_direct("127.0.0.1", port).await.unwrap_err();
        assert!(err.to_string().starts_with("TCP: cannot connect"), "{err}");
    }
}
