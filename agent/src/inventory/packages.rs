//! `AWS:Application`: installed packages from the dpkg status database, the
//! rpm database (its SQLite form, headers decoded here) and `/snap`, read as
//! files — one `stat` per dpkg package for its install time, no processes.

use std::path::Path;

use tether_util::time::iso_secs;

use super::{Entry, Sources, entry};

/// SSM's architecture names: amd64 is reported as x86_64.
pub fn architecture(a: &str) -> String {
    match a {
        "amd64" | "x86_64" => "x86_64".into(),
        "arm64" | "aarch64" => "aarch64".into(),
        "i386" | "i686" => "i386".into(),
        other => other.into(),
    }
}

/// A file's modification time as ISO 8601 UTC.
pub fn mtime_iso(p: &Path) -> Option<String> {
    let t = std::fs::metadata(p).ok()?.modified().ok()?;
    Some(iso_secs(
        chrono::DateTime::<chrono::Utc>::from(t).timestamp(),
    ))
}

/// Every package the sources know, and what could not be read.
pub fn applications(src: &Sources) -> (Vec<Entry>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let status = src.dpkg_dir.join("status");
    match std::fs::read_to_string(&status) {
        Ok(text) => out.extend(dpkg(&text, &src.dpkg_dir.join("info"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problems.push(format!("{}: {e}", status.display())),
    }
    match rpm(&src.rpm_dir) {
        Ok(v) => out.extend(v),
        Err(e) => problems.push(e),
    }
    out.extend(snaps(&src.snap_dir));
    (out, problems)
}

/// Splits a Debian version `[epoch:]upstream[-revision]`.
pub fn split_deb_version(v: &str) -> (&str, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e, r),
        _ => ("", v),
    };
    match rest.rsplit_once('-') {
        Some((up, rev)) => (epoch, up, rev),
        None => (epoch, rest, ""),
    }
}

/// Installed packages from dpkg status text; install time from `info/<pkg>.list`.
pub fn dpkg(text: &str, info_dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let mut f: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for line in para.lines() {
            if line.starts_with([' ', '\t']) {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                f.insert(k, v.trim());
            }
        }
        let (Some(name), Some(status)) = (f.get("Package"), f.get("Status")) else {
            continue;
        };
        if !status.ends_with(" installed") {
            continue;
        }
        let arch = f.get("Architecture").copied().unwrap_or("");
        let version = f.get("Version").copied().unwrap_or("");
        let (epoch, upstream, revision) = split_deb_version(version);
        let list = info_dir.join(format!("{name}.list"));
        let installed = mtime_iso(&list)
            .or_else(|| mtime_iso(&info_dir.join(format!("{name}:{arch}.list"))))
            .unwrap_or_default();
        out.push(entry([
            ("Name", name.to_string()),
            (
                "Publisher",
                f.get("Maintainer").copied().unwrap_or("").to_string(),
            ),
            ("Version", upstream.to_string()),
            ("Release", revision.to_string()),
            ("Epoch", epoch.to_string()),
            ("InstalledTime", installed),
            (
                "ApplicationType",
                f.get("Section").copied().unwrap_or("").to_string(),
            ),
            ("Architecture", architecture(arch)),
            ("URL", f.get("Homepage").copied().unwrap_or("").to_string()),
            (
                "Summary",
                f.get("Description").copied().unwrap_or("").to_string(),
            ),
            ("PackageId", format!("{name}_{version}_{arch}.deb")),
        ]));
    }
    out
}

/// Snaps: `/snap/<name>/current/meta/snap.yaml`.
pub fn snaps(dir: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let meta = e.path().join("current/meta/snap.yaml");
        let Ok(text) = std::fs::read_to_string(&meta) else {
            continue;
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
                .unwrap_or_default()
        };
        let name = field("name");
        let version = field("version");
        out.push(entry([
            ("Name", name.clone()),
            ("Publisher", String::new()),
            ("Version", version.clone()),
            ("Release", String::new()),
            ("Epoch", String::new()),
            ("InstalledTime", mtime_iso(&meta).unwrap_or_default()),
            ("ApplicationType", "snap".into()),
            ("Architecture", architecture(&field("architectures"))),
            ("URL", String::new()),
            ("Summary", field("summary")),
            ("PackageId", format!("{name}_{version}.snap")),
        ]));
    }
    out
}

/// rpm packages from `rpmdb.sqlite` when present. The database holds one
/// header blob per package; we decode the tags we need (no `rpm` process).
pub fn rpm(dir: &Path) -> Result<Vec<Entry>, String> {
    let db = dir.join("rpmdb.sqlite");
    if !db.exists() {
        return Ok(Vec::new());
    }
    super::rpmdb::read_blobs(&db, rpm_header).map_err(|e| e.to_string())
}

const RPMTAG_NAME: u32 = 1000;
const RPMTAG_VERSION: u32 = 1001;
const RPMTAG_RELEASE: u32 = 1002;
const RPMTAG_EPOCH: u32 = 1003;
const RPMTAG_SUMMARY: u32 = 1004;
const RPMTAG_INSTALLTIME: u32 = 1008;
const RPMTAG_VENDOR: u32 = 1011;
const RPMTAG_GROUP: u32 = 1016;
const RPMTAG_URL: u32 = 1020;
const RPMTAG_ARCH: u32 = 1022;

/// Decodes an rpm header blob (as stored in rpmdb: index count, data length,
/// 16-byte index entries, data) into an `AWS:Application` entry.
pub fn rpm_header(b: &[u8]) -> Option<Entry> {
    let be = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let il = be(0)? as usize;
    let dl = be(4)? as usize;
    let data_start = 8 + il.checked_mul(16)?;
    let data = b.get(data_start..data_start.checked_add(dl)?)?;
    let mut tags: std::collections::HashMap<u32, String> = std::collections::HashMap::new();
    for i in 0..il {
        let at = 8 + i * 16;
        let (tag, ty, off, count) = (be(at)?, be(at + 4)?, be(at + 8)? as usize, be(at + 12)?);
        let value = match ty {
            // STRING, I18NSTRING (first), STRING_ARRAY (first)
            6 | 8 | 9 => {
                let rest = data.get(off..)?;
                let end = rest.iter().position(|c| *c == 0)?;
                String::from_utf8_lossy(&rest[..end]).into_owned()
            }
            // INT32
            4 if count >= 1 => {
                let v = data.get(off..off + 4)?;
                u32::from_be_bytes(v.try_into().ok()?).to_string()
            }
            _ => continue,
        };
        tags.insert(tag, value);
    }
    let get = |t: u32| tags.get(&t).cloned().unwrap_or_default();
    let name = get(RPMTAG_NAME);
    if name.is_empty() || name == "gpg-pubkey" {
        return None;
    }
    let installed = tags
        .get(&RPMTAG_INSTALLTIME)
        .and_then(|s| s.parse::<i64>().ok())
        .map(iso_secs)
        .unwrap_or_default();
    let (version, release, arch) = (get(RPMTAG_VERSION), get(RPMTAG_RELEASE), get(RPMTAG_ARCH));
    Some(entry([
        ("Name", name.clone()),
        ("Publisher", get(RPMTAG_VENDOR)),
        ("Version", version.clone()),
        ("Release", release.clone()),
        ("Epoch", get(RPMTAG_EPOCH)),
        ("InstalledTime", installed),
        ("ApplicationType", get(RPMTAG_GROUP)),
        ("Architecture", architecture(&arch)),
        ("URL", get(RPMTAG_URL)),
        ("Summary", get(RPMTAG_SUMMARY)),
        (
            "PackageId",
            format!("{name}-{version}-{release}.{arch}.rpm"),
        ),
    ]))
}
