//! The audit trail (issue 14): tamper evidence against someone with write
//! access to the database alone — a record edited or deleted directly in
//! SQLite or PostgreSQL, the newest records cut after a signed head — named
//! by `tether verify-audit-trail`; a change refused when its record cannot
//! be written, while reads go on; the mirror file.

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_tests::Coordinator;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `verify-audit-trail`, expected to fail: its message.
fn verification_fails(coord: &Coordinator) -> String {
    let out = coord.cli(&["verify-audit-trail"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(254), "{err}");
    assert!(err.contains("(AuditTrailInvalid)"), "{err}");
    err
}

/// One row of `SELECT a, b, …`, split on `|`.
fn row(coord: &Coordinator, statement: &str) -> Vec<String> {
    let out = coord.sql(statement);
    let line = out
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no row for {statement}"));
    line.split('|').map(str::to_string).collect()
}

/// The outcome record of the CreateUser of `name`: (seq, event ID, request JSON).
fn outcome_of_create_user(coord: &Coordinator, name: &str) -> (i64, String, String) {
    let r = row(
        coord,
        &format!(
            "SELECT seq, event_id, request_json FROM audit_records \
             WHERE kind = 'outcome' AND event_name = 'CreateUser' \
             AND request_json LIKE '%\"{name}\"%'"
        ),
    );
    (
        r[0].parse().expect("a sequence number"),
        r[1].clone(),
        r[2].clone(),
    )
}

fn event_id_of(coord: &Coordinator, seq: i64) -> String {
    row(
        coord,
        &format!("SELECT event_id FROM audit_records WHERE seq = {seq}"),
    )[0]
    .clone()
}

#[test]
fn a_record_edited_or_deleted_in_the_database_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    for name in ["ann", "ben", "cat", "dan"] {
        coord.json(&["create-user", "--user-name", name]);
    }
    let ok = coord.json(&["verify-audit-trail"]);
    assert!(ok["RecordsChecked"].as_i64().unwrap() >= 8, "{ok}");

    // Edited: ben's record now says eve.
    let (seq, event_id, original) = outcome_of_create_user(&coord, "ben");
    coord.sql(&format!(
        "UPDATE audit_records SET request_json = '{{\"UserName\":\"eve\"}}' WHERE seq = {seq}"
    ));
    let err = verification_fails(&coord);
    assert!(
        err.contains(&format!(
            "audit record {seq} (event ID {event_id}) does not hold: its content does not match its hash"
        )),
        "{err}"
    );
    // Put back, it holds again.
    coord.sql(&format!(
        "UPDATE audit_records SET request_json = '{original}' WHERE seq = {seq}"
    ));
    coord.json(&["verify-audit-trail"]);

    // Deleted: cat's record is gone; the record after it is named.
    let (seq, deleted_event, _) = outcome_of_create_user(&coord, "cat");
    let next_event = event_id_of(&coord, seq + 1);
    coord.sql(&format!("DELETE FROM audit_records WHERE seq = {seq}"));
    let err = verification_fails(&coord);
    assert!(
        err.contains(&format!(
            "audit record {} (event ID {next_event}) does not hold: record {seq} before it is missing",
            seq + 1
        )),
        "{err}"
    );

    // The mirror, outside the database, still has the deleted record; it
    // is the coordinator's alone.
    let mirror = coord.audit_log();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&mirror), 0o600);
    assert_eq!(mode(mirror.parent().unwrap()), 0o700);
    let text = std::fs::read_to_string(&mirror).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each mirror line is JSON"))
        .collect();
    let gone = lines
        .iter()
        .find(|l| l["eventID"] == json!(deleted_event))
        .unwrap_or_else(|| panic!("the deleted record is in the mirror:\n{text}"));
    assert_eq!(gone["eventName"], json!("CreateUser"));
    assert_eq!(gone["requestParameters"]["UserName"], json!("cat"));
    assert_eq!(gone["additionalEventData"]["tether"]["seq"], json!(seq));
}

#[test]
fn newest_records_cut_after_a_signed_head_are_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let mut coord = Coordinator::start_with_env(tmp.path(), &[("TETHER_AUDIT_SIGN_INTERVAL", "1")]);
    for name in ["ann", "ben", "cat"] {
        coord.json(&["create-user", "--user-name", name]);
    }
    let (last, _, _) = outcome_of_create_user(&coord, "cat");
    // The signer (every second here) signs a head at or past cat's record.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = coord.json(&["verify-audit-trail"]);
        if v["SignedHeadSequence"].as_i64().is_some_and(|s| s >= last) {
            break;
        }
        assert!(Instant::now() < deadline, "no head signed: {v}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Stopped, the newest two signed records are cut, and the signed heads
    // deleted from the database: the head kept beside the key (the secrets
    // directory, here the data directory) still tells.
    coord.stop();
    let head: Value = serde_json::from_str(
        &std::fs::read_to_string(coord.dir.join("audit-head.json")).expect("audit-head.json"),
    )
    .expect("audit-head.json is JSON");
    let signed = head["Seq"].as_i64().expect("Seq");
    assert!(signed >= last, "{head}");
    coord.sql(&format!(
        "DELETE FROM audit_records WHERE seq > {}",
        signed - 2
    ));
    coord.sql("DELETE FROM audit_heads");
    let left =
        coord.sql("SELECT seq, kind, event_name, user_name FROM audit_records WHERE seq > 4");
    coord.restart();
    let err = verification_fails(&coord);
    let err = format!(
        "{err}\nleft after the cut:\n{left}\nnow:\n{}",
        coord.sql("SELECT seq, kind, event_name, user_name FROM audit_records WHERE seq > 4")
    );
    assert!(
        err.contains(&format!(
            "audit record {} does not hold: records {} to {signed} are missing",
            signed - 1,
            signed - 1
        )) && err.contains("newest records cut"),
        "{err}"
    );
    // The signer does not sign over the cut either.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        coord.sql("SELECT COUNT(*) FROM audit_heads").trim() == "0",
        "a head was signed over the cut"
    );
    assert!(
        coord.log().contains("not signing"),
        "the signer says why it does not sign:\n{}",
        coord.log()
    );
}

#[test]
fn a_change_whose_record_cannot_be_written_is_refused_and_reads_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    coord.json(&["create-user", "--user-name", "ann"]);
    // The database refuses audit appends (as a full disk would).
    if coord.database.is_some() {
        coord.sql(
            "CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN \
             RAISE EXCEPTION 'no space left (test)'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER no_audit BEFORE INSERT ON audit_records \
             FOR EACH ROW EXECUTE FUNCTION no_audit()",
        );
    } else {
        coord.sql(
            "CREATE TRIGGER no_audit BEFORE INSERT ON audit_records \
             BEGIN SELECT RAISE(FAIL, 'no space left (test)'); END",
        );
    }
    let out = coord.cli(&["create-user", "--user-name", "ben"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("the audit trail cannot be written, so nothing was changed"),
        "{err}"
    );
    // Nothing was changed; reads are answered all the same.
    let users = coord.json(&["list-users"]);
    let names: Vec<&str> = users["Users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["UserName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann"], "{users}");
    // Writable again: the change goes through, and the reads that waited
    // are appended by the background task.
    if coord.database.is_some() {
        coord.sql("DROP TRIGGER no_audit ON audit_records");
    } else {
        coord.sql("DROP TRIGGER no_audit");
    }
    coord.json(&["create-user", "--user-name", "ben"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = coord
            .sql("SELECT COUNT(*) FROM audit_records WHERE event_name = 'ListUsers'")
            .trim()
            .parse()
            .unwrap();
        if n >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the read was never recorded");
        std::thread::sleep(Duration::from_millis(200));
    }
    coord.json(&["verify-audit-trail"]);
}
