//! Reads the package header blobs out of rpm's SQLite database
//! (`rpmdb.sqlite`, the default since rpm 4.16) as files: read-only, without
//! the `rpm` tool and without linking SQLite (which cost the static agent
//! about 0.6 MiB for one `SELECT blob FROM Packages`).
//!
//! What is read is the SQLite file format (sqlite.org/fileformat2.html): the
//! schema table on page 1 names the `Packages` table's root page and its
//! columns; its table b-tree is walked in rowid order, each row's record
//! decoded (payloads that spill onto overflow pages followed). rpm keeps the
//! database in WAL mode, so committed pages still in `rpmdb.sqlite-wal` are
//! read from there, found as SQLite's own recovery finds them: frames whose
//! salts and running checksum hold, up to the last commit frame. Nothing is
//! ever written, not even the `-shm` index. A read that overlaps a writer (the
//! files' size or mtime moved while it ran, or a page did not parse while
//! they moved) is started again, up to [`ATTEMPTS`] times.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Reads tried while a writer keeps changing the files.
const ATTEMPTS: usize = 5;
/// Deeper than any b-tree SQLite itself builds (it refuses past 20).
const MAX_DEPTH: usize = 40;

/// Why the database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RpmDbError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a database rpm wrote: {detail}")]
    Format { path: PathBuf, detail: String },
    #[error("{path}: changed on every one of {ATTEMPTS} reads (rpm kept writing); try again")]
    Changing { path: PathBuf },
}

/// `map` applied to every package header blob in the database, in `hnum`
/// order; rows it answers `None` for are left out.
pub fn read_blobs<T>(
    db: &Path,
    mut map: impl FnMut(&[u8]) -> Option<T>,
) -> Result<Vec<T>, RpmDbError> {
    let wal_path = wal_path(db);
    for _ in 0..ATTEMPTS {
        let before = stamp(db, &wal_path)?;
        let mut out = Vec::new();
        let read = Db::open(db, &wal_path).and_then(|d| {
            d.each_blob(&mut |blob| {
                out.extend(map(blob));
            })
        });
        let unchanged = stamp(db, &wal_path)? == before;
        match read {
            Ok(()) if unchanged => return Ok(out),
            Err(e) if unchanged => return Err(e),
            // A writer moved the files under the read: read them again.
            _ => continue,
        }
    }
    Err(RpmDbError::Changing {
        path: db.to_path_buf(),
    })
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// Size and mtime of the database and its WAL: equal before and after a
/// read means no writer committed (or checkpointed) meanwhile.
type Stamp = [(u64, i64, i64); 2];

fn stamp(db: &Path, wal: &Path) -> Result<Stamp, RpmDbError> {
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => Ok((m.len(), m.mtime(), m.mtime_nsec())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && p == wal => Ok((0, 0, 0)),
        Err(source) => Err(RpmDbError::Io {
            path: p.to_path_buf(),
            source,
        }),
    };
    Ok([one(db)?, one(wal)?])
}

/// One column value of a record; text and blobs alike as their bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value<'a> {
    Null,
    Int(i64),
    Real,
    Bytes(&'a [u8]),
}

struct Db {
    path: PathBuf,
    file: File,
    /// Committed pages in the WAL: page number → offset of its data there.
    wal: Option<(File, HashMap<u32, u64>)>,
    page_size: usize,
    /// Page size less the bytes reserved at the end of every page.
    usable: usize,
    pages: u32,
    utf16: Option<bool>,
}

impl Db {
    fn open(path: &Path, wal_path: &Path) -> Result<Db, RpmDbError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| RpmDbError::Io { path: p, source }
        };
        let file = File::open(path).map_err(io(path))?;
        let mut h = [0u8; 100];
        file.read_exact_at(&mut h, 0).map_err(io(path))?;
        let mut db = Db {
            path: path.to_path_buf(),
            file,
            wal: None,
            page_size: 0,
            usable: 0,
            pages: 0,
            utf16: None,
        };
        if &h[..16] != b"SQLite format 3\0" {
            return Err(db.bad("no SQLite header"));
        }
        db.page_size = match u16::from_be_bytes([h[16], h[17]]) {
            1 => 65536,
            n if n >= 512 && n.is_power_of_two() => usize::from(n),
            n => return Err(db.bad(format!("page size {n}"))),
        };
        db.usable = db.page_size - usize::from(h[20]);
        if db.usable < 480 {
            return Err(db.bad(format!("usable page size {}", db.usable)));
        }
        db.utf16 = match be32(&h, 56) {
            0 | 1 => None,
            2 => Some(false),
            3 => Some(true),
            n => return Err(db.bad(format!("text encoding {n}"))),
        };
        let len = db.file.metadata().map_err(io(path))?.len();
        db.pages = u32::try_from(len / db.page_size as u64).unwrap_or(u32::MAX);
        match File::open(wal_path) {
            Ok(f) => {
                if let Some((frames, pages)) = db.wal_frames(&f, wal_path)? {
                    db.pages = pages;
                    db.wal = Some((f, frames));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(wal_path)(e)),
        }
        Ok(db)
    }

    fn bad(&self, detail: impl Into<String>) -> RpmDbError {
        RpmDbError::Format {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    /// The committed frames of the WAL and the database's size in pages
    /// they make; `None` for a WAL that is empty, reset or not this
    /// database's.
    #[allow(clippy::type_complexity)]
    fn wal_frames(
        &self,
        f: &File,
        path: &Path,
    ) -> Result<Option<(HashMap<u32, u64>, u32)>, RpmDbError> {
        let io = |source| RpmDbError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = f.metadata().map_err(io)?.len();
        let mut h = [0u8; 32];
        if len < 32 {
            return Ok(None);
        }
        f.read_exact_at(&mut h, 0).map_err(io)?;
        let magic = be32(&h, 0);
        if magic & !1 != 0x377f_0682 || be32(&h, 8) as usize != self.page_size {
            return Ok(None);
        }
        let big = magic & 1 == 1;
        let sum = checksum(big, &h[..24], (0, 0));
        if sum != (be32(&h, 24), be32(&h, 28)) {
            return Ok(None);
        }
        let (salt1, salt2) = (be32(&h, 16), be32(&h, 20));
        let mut running = sum;
        let mut frame = vec![0u8; 24 + self.page_size];
        let mut pending: Vec<(u32, u64)> = Vec::new();
        let mut committed: HashMap<u32, u64> = HashMap::new();
        let mut pages = None;
        let mut at = 32u64;
        while at + frame.len() as u64 <= len {
            f.read_exact_at(&mut frame, at).map_err(io)?;
            if be32(&frame, 8) != salt1 || be32(&frame, 12) != salt2 {
                break;
            }
            running = checksum(big, &frame[..8], running);
            running = checksum(big, &frame[24..], running);
            if running != (be32(&frame, 16), be32(&frame, 20)) {
                break;
            }
            pending.push((be32(&frame, 0), at + 24));
            let commit_size = be32(&frame, 4);
            if commit_size != 0 {
                committed.extend(pending.drain(..));
                pages = Some(commit_size);
            }
            at += frame.len() as u64;
        }
        Ok(pages.map(|p| (committed, p)))
    }

    fn page(&self, n: u32) -> Result<Vec<u8>, RpmDbError> {
        if n == 0 || n > self.pages {
            return Err(self.bad(format!("page {n} of {}", self.pages)));
        }
        let mut p = vec![0u8; self.page_size];
        let (file, at) = match &self.wal {
            Some((wal, frames)) if frames.contains_key(&n) => (wal, frames[&n]),
            _ => (&self.file, u64::from(n - 1) * self.page_size as u64),
        };
        file.read_exact_at(&mut p, at)
            .map_err(|source| RpmDbError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(p)
    }

    /// Every row of the table b-tree rooted at `root`: its record payload.
    fn walk(
        &self,
        root: u32,
        depth: usize,
        seen: &mut u32,
        f: &mut dyn FnMut(&[u8]) -> Result<(), RpmDbError>,
    ) -> Result<(), RpmDbError> {
        *seen += 1;
        if depth > MAX_DEPTH || *seen > self.pages {
            return Err(self.bad("b-tree loops"));
        }
        let p = self.page(root)?;
        let off = if root == 1 { 100 } else { 0 };
        let kind = p[off];
        let cells = usize::from(be16(&p, off + 3));
        let header = match kind {
            0x0d => 8,
            0x05 => 12,
            k => return Err(self.bad(format!("page {root} is of type {k:#x}, not a table"))),
        };
        for i in 0..cells {
            let ptr = off + header + 2 * i;
            let cell = usize::from(be16(&p, ptr));
            if ptr + 2 > p.len() || cell >= self.usable {
                return Err(self.bad(format!("page {root}: cell {i} out of the page")));
            }
            if kind == 0x05 {
                let child = p
                    .get(cell..cell + 4)
                    .map(|b| be32(b, 0))
                    .ok_or_else(|| self.bad(format!("page {root}: cell {i}")))?;
                self.walk(child, depth + 1, seen, f)?;
            } else {
                let payload = self.payload(&p, cell, root)?;
                f(&payload)?;
            }
        }
        if kind == 0x05 {
            self.walk(be32(&p, off + 8), depth + 1, seen, f)?;
        }
        Ok(())
    }

    /// A table leaf cell's whole payload, overflow pages followed.
    fn payload(&self, p: &[u8], cell: usize, page: u32) -> Result<Vec<u8>, RpmDbError> {
        let bad = || self.bad(format!("page {page}: a cell does not parse"));
        let (size, n) = varint(&p[cell..]).ok_or_else(bad)?;
        let (_rowid, m) = varint(&p[cell + n..]).ok_or_else(bad)?;
        let start = cell + n + m;
        let size = usize::try_from(size).map_err(|_| bad())?;
        if size > self.pages as usize * self.usable {
            return Err(bad());
        }
        let u = self.usable;
        let x = u - 35;
        let local = if size <= x {
            size
        } else {
            let min = (u - 12) * 32 / 255 - 23;
            let k = min + (size - min) % (u - 4);
            if k <= x { k } else { min }
        };
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(p.get(start..start + local).ok_or_else(bad)?);
        if local < size {
            let mut next = p
                .get(start + local..start + local + 4)
                .map(|b| be32(b, 0))
                .ok_or_else(bad)?;
            let mut hops = 0u32;
            while out.len() < size {
                hops += 1;
                if next == 0 || hops > self.pages {
                    return Err(bad());
                }
                let o = self.page(next)?;
                let take = (size - out.len()).min(u - 4);
                out.extend_from_slice(&o[4..4 + take]);
                next = be32(&o, 0);
            }
        }
        Ok(out)
    }

    fn text(&self, v: Value<'_>) -> Option<String> {
        let Value::Bytes(b) = v else { return None };
        Some(match self.utf16 {
            None => String::from_utf8_lossy(b).into_owned(),
            Some(big) => {
                let units: Vec<u16> = b
                    .chunks_exact(2)
                    .map(|c| {
                        let pair = [c[0], c[1]];
                        if big {
                            u16::from_be_bytes(pair)
                        } else {
                            u16::from_le_bytes(pair)
                        }
                    })
                    .collect();
                String::from_utf16_lossy(&units)
            }
        })
    }

    /// Calls `f` with the `blob` column of every row of `Packages`.
    fn each_blob(&self, f: &mut dyn FnMut(&[u8])) -> Result<(), RpmDbError> {
        // sqlite_schema: type, name, tbl_name, rootpage, sql.
        let mut table = None;
        self.walk(1, 0, &mut 0, &mut |payload| {
            let cols = record(payload).ok_or_else(|| self.bad("a schema row does not parse"))?;
            let col = |i: usize| cols.get(i).copied().unwrap_or(Value::Null);
            let is = |i: usize, want: &str| {
                self.text(col(i))
                    .is_some_and(|t| t.eq_ignore_ascii_case(want))
            };
            if is(0, "table")
                && is(1, "Packages")
                && let (Value::Int(root), Some(sql)) = (col(3), self.text(col(4)))
            {
                table = Some((root, sql));
            }
            Ok(())
        })?;
        let (root, sql) = table.ok_or_else(|| self.bad("no Packages table"))?;
        let root = u32::try_from(root).map_err(|_| self.bad(format!("root page {root}")))?;
        let blob = column_index(&sql, "blob")
            .ok_or_else(|| self.bad(format!("no blob column in {sql:?}")))?;
        self.walk(root, 0, &mut 0, &mut |payload| {
            let cols = record(payload).ok_or_else(|| self.bad("a Packages row does not parse"))?;
            if let Some(Value::Bytes(b)) = cols.get(blob) {
                f(b);
            }
            Ok(())
        })
    }
}

/// Where column `name` is in a `CREATE TABLE … (col type …, …)` statement.
fn column_index(sql: &str, name: &str) -> Option<usize> {
    let body = &sql[sql.find('(')? + 1..sql.rfind(')')?];
    body.split(',').position(|def| {
        def.split_whitespace()
            .next()
            .map(|w| w.trim_matches(['\'', '"', '`', '[', ']']))
            .is_some_and(|w| w.eq_ignore_ascii_case(name))
    })
}

/// A record's columns (the record format: a header of serial types, then
/// the values).
fn record(p: &[u8]) -> Option<Vec<Value<'_>>> {
    let (header_len, mut at) = varint(p)?;
    let header_len = usize::try_from(header_len).ok()?;
    let mut body = header_len;
    let mut out = Vec::new();
    while at < header_len {
        let (ty, n) = varint(p.get(at..header_len)?)?;
        at += n;
        let len = match ty {
            0 | 8 | 9 => 0,
            1..=4 => ty as usize,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return None,
            n => usize::try_from((n - 12) / 2).ok()?,
        };
        let b = p.get(body..body.checked_add(len)?)?;
        body += len;
        out.push(match ty {
            0 => Value::Null,
            8 => Value::Int(0),
            9 => Value::Int(1),
            1..=6 => {
                // Big-endian two's complement of `len` bytes.
                let first = i64::from(b[0] as i8);
                Value::Int(b[1..].iter().fold(first, |v, x| (v << 8) | i64::from(*x)))
            }
            7 => Value::Real,
            _ => Value::Bytes(b),
        });
    }
    Some(out)
}

/// SQLite's variable-length integer: the value and its length in bytes.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..9 {
        let x = *b.get(i)?;
        if i == 8 {
            return Some(((v << 8) | u64::from(x), 9));
        }
        v = (v << 7) | u64::from(x & 0x7f);
        if x & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The WAL's running checksum over `data` (a multiple of 8 bytes), its
/// words read in the byte order the WAL's magic number names.
fn checksum(big: bool, data: &[u8], (mut s0, mut s1): (u32, u32)) -> (u32, u32) {
    let word = |c: &[u8]| {
        let w = [c[0], c[1], c[2], c[3]];
        if big {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    for c in data.chunks_exact(8) {
        s0 = s0.wrapping_add(word(&c[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&c[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

fn be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |x| u16::from_be_bytes([x[0], x[1]]))
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_records_decode() {
        assert_eq!(varint(&[0x05]), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(varint(&[0xff; 9]), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x81]), None);
        // A 5-byte header (its own length, then NULL, int8 -2, text "ab"
        // (13 + 2*2 = 17), a 1-byte blob (14)), then the values.
        let rec = [5, 0, 1, 17, 14, 0xfe, b'a', b'b', 0x07];
        assert_eq!(
            record(&rec),
            Some(vec![
                Value::Null,
                Value::Int(-2),
                Value::Bytes(b"ab"),
                Value::Bytes(&[7]),
            ])
        );
        // A value running past the payload is refused, not read beyond.
        assert_eq!(record(&rec[..8]), None);
    }

    #[test]
    fn the_blob_column_is_found_by_name() {
        let sql = "CREATE TABLE IF NOT EXISTS 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL)";
        assert_eq!(column_index(sql, "blob"), Some(1));
        assert_eq!(
            column_index("CREATE TABLE x (\"blob\" BLOB)", "blob"),
            Some(0)
        );
        assert_eq!(column_index("CREATE TABLE x (a, b)", "blob"), None);
    }
}
