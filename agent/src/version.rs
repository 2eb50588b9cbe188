//! The agent's version, read from a marker embedded in the binary rather than
//! compiled into the code, and how versions compare.
//!
//! [`MARKER`] is a fixed-size byte array, `TETHER-AGENT-VERSION:` followed by
//! the version and NUL padding, that appears exactly once in the binary. What
//! the agent reports (`AgentVersion`, `--version`, the log) is read from it
//! at run time, so a release can be made from a build by rewriting those
//! bytes in a copy (the update tests make version B from A that way, without
//! a second build); a marker that does not hold a valid version falls back
//! to the crate's version.

use std::cmp::Ordering;

/// Bytes of the marker, prefix and padding included.
pub const MARKER_LEN: usize = 96;
/// Length of the marker's prefix, `TETHER-AGENT-VERSION:` (its text is only
/// in [`MARKER`], so that the binary holds it once).
pub const MARKER_PREFIX_LEN: usize = 21;
/// The longest version a marker holds.
pub const MAX_VERSION_LEN: usize = MARKER_LEN - MARKER_PREFIX_LEN - 1;

const fn marker(text: &str) -> [u8; MARKER_LEN] {
    let bytes = text.as_bytes();
    assert!(bytes.len() < MARKER_LEN);
    let mut out = [0u8; MARKER_LEN];
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// The embedded version marker (see the module doc).
#[used]
pub static TETHER_AGENT_VERSION_MARKER: [u8; MARKER_LEN] =
    marker(concat!("TETHER-AGENT-VERSION:", env!("CARGO_PKG_VERSION")));

/// The marker as the binary holds it, read through a volatile load so the
/// compiler cannot fold it into the version it was built with.
#[allow(unsafe_code)]
fn marker_bytes() -> [u8; MARKER_LEN] {
    // SAFETY: a plain read of an initialised, aligned static of Copy bytes.
    unsafe { std::ptr::read_volatile(&raw const TETHER_AGENT_VERSION_MARKER) }
}

/// The version in a marker's bytes, if they hold a valid one.
pub fn parse_marker(bytes: &[u8]) -> Option<String> {
    let rest = bytes.get(MARKER_PREFIX_LEN..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    let v = std::str::from_utf8(&rest[..end]).ok()?;
    is_valid(v).then(|| v.to_string())
}

/// Whether `v` is a version as releases name them: 1 to 64 of
/// `[0-9A-Za-z.+_-]`, starting with a letter or digit (the document's
/// `allowedPattern`).
pub fn is_valid(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'_' | b'-'))
}

/// This agent's version (see the module doc).
pub fn current() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        parse_marker(&marker_bytes()).unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
    })
}

/// This machine's release platform, `linux-x86_64` or `linux-aarch64`
/// (`ReleaseManifest.platform`).
pub fn platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Orders two versions the way semantic versions order: dot-separated
/// numeric parts by value (other parts as text), a pre-release (`-…`)
/// before its release, build metadata (`+…`) ignored.
pub fn compare(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (&str, Option<&str>) {
        let v = v.split('+').next().unwrap_or(v);
        match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (v, None),
        }
    }
    fn parts(a: &str, b: &str) -> Ordering {
        let mut x = a.split('.');
        let mut y = b.split('.');
        loop {
            match (x.next(), y.next()) {
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(p), Some(q)) => {
                    let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                        (Ok(m), Ok(n)) => m.cmp(&n),
                        (Ok(_), Err(_)) => Ordering::Less,
                        (Err(_), Ok(_)) => Ordering::Greater,
                        (Err(_), Err(_)) => p.cmp(q),
                    };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
            }
        }
    }
    let (core_a, pre_a) = split(a);
    let (core_b, pre_b) = split(b);
    parts(core_a, core_b).then_with(|| match (pre_a, pre_b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(p), Some(q)) => parts(p, q),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_holds_the_crate_version_and_is_read_back() {
        assert_eq!(current(), env!("CARGO_PKG_VERSION"));
        let m = marker_bytes();
        assert_eq!(&m[..MARKER_PREFIX_LEN], b"TETHER-AGENT-VERSION:");
        let mut patched = m;
        patched[MARKER_PREFIX_LEN..].fill(0);
        patched[MARKER_PREFIX_LEN..MARKER_PREFIX_LEN + 7].copy_from_slice(b"9.9.9-b");
        assert_eq!(parse_marker(&patched).as_deref(), Some("9.9.9-b"));
        patched[MARKER_PREFIX_LEN] = b' ';
        assert_eq!(parse_marker(&patched), None);
        let full = [b'1'; MARKER_LEN];
        assert_eq!(parse_marker(&full), None, "no terminating NUL");
    }

    #[test]
    fn versions_compare_as_semantic_versions() {
        use Ordering::*;
        for (a, b, o) in [
            ("0.1.0", "0.1.0", Equal),
            ("0.1.0", "0.2.0", Less),
            ("0.10.0", "0.9.1", Greater),
            ("1.0.0-rc.1", "1.0.0", Less),
            ("1.0.0-rc.2", "1.0.0-rc.10", Less),
            ("1.0.0+build.5", "1.0.0", Equal),
            ("1.0", "1.0.1", Less),
            ("0.1.0-b", "0.1.0-a", Greater),
        ] {
            assert_eq!(compare(a, b), o, "{a} vs {b}");
            assert_eq!(compare(b, a), o.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn versions_are_checked_like_the_document_pattern() {
        assert!(is_valid("0.1.0") && is_valid("1.2.3-rc.1+b_2"));
        assert!(!is_valid("") && !is_valid("-1") && !is_valid("1 2") && !is_valid("1/2"));
        assert!(!is_valid(&"1".repeat(65)));
    }
}
