//! Reads the header blobs out of rpm's SQLite database (`rpmdb.sqlite`,
//! the default since rpm 4.16), read-only and without the `rpm` tool.

use std::path::Path;

/// Every package header blob in the database.
pub fn header_blobs(db: &Path) -> Result<Vec<Vec<u8>>, rusqlite::Error> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut stmt = conn.prepare("SELECT blob FROM Packages")?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    rows.collect()
}
