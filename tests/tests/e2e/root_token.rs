//! Rotating the root token (issue 14): `tether rotate-root-token`, root
//! only. Every root token stops working at once, on every replica; the
//! serving replica rewrites its operator.json (owner-only) and the answer
//! carries the new token; users' tokens are untouched.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use serde_json::Value;
use tether_tests::{
    Coordinator, TestDatabase, stderr_of as stderr, success_json, tether_as as cli,
};

/// Refused before any action: the token is not known.
fn unknown_token(out: &Output) {
    let err = stderr(out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("operator token is not valid for this coordinator"),
        "{err}"
    );
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read operator.json");
    serde_json::from_str(&text).expect("operator.json is JSON")
}

#[test]
fn root_rotates_its_token_the_old_one_dies_and_users_are_refused_it() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    // A copy of the old operator.json, as an operator elsewhere would hold.
    let old = tmp.path().join("old-operator.json");
    std::fs::copy(coord.operator_json(), &old).unwrap();
    let old_token = read(&old)["Token"].as_str().unwrap().to_string();

    // A user allowed everything Tether has still may not rotate root's token.
    coord.json(&["create-user", "--user-name", "admin"]);
    let out = coord.cli(&[
        "put-user-policy",
        "--user-name",
        "admin",
        "--policy-name",
        "all",
        "--policy-document",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let admin = tmp.path().join("admin.json");
    std::fs::write(
        &admin,
        coord
            .json(&["create-operator-config", "--user-name", "admin"])
            .to_string(),
    )
    .unwrap();
    let out = cli(&admin, &["rotate-root-token"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(254), "{err}");
    assert!(
        err.contains("(AccessDeniedException)")
            && err.contains(":user/admin is not authorized to perform: tether:RotateRootToken")
            && err.contains("only the root principal"),
        "{err}"
    );
    assert!(cli(&old, &["list-commands"]).status.success());

    // Root rotates: the answer is the new operator.json.
    let answer = success_json("rotate-root-token", &cli(&old, &["rotate-root-token"]));
    let new_token = answer["Token"].as_str().unwrap();
    assert_eq!(new_token.len(), 64, "{answer}");
    assert_ne!(new_token, old_token);
    assert_eq!(answer["RevokedTokenCount"], 1, "{answer}");
    // The old token is refused at once; the serving coordinator's
    // operator.json holds the new one, owner-only, and it works.
    unknown_token(&cli(&old, &["list-commands"]));
    let written = read(&coord.operator_json());
    assert_eq!(written["Token"], answer["Token"]);
    assert_eq!(written["Endpoint"], read(&old)["Endpoint"]);
    let mode = std::fs::metadata(coord.operator_json())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(coord.cli(&["list-commands"]).status.success());
    // The answer saved as a file is a working operator.json too.
    let saved = tmp.path().join("new-operator.json");
    std::fs::write(&saved, answer.to_string()).unwrap();
    assert!(cli(&saved, &["list-commands"]).status.success());
    // Users' tokens are not root tokens: the admin's still works.
    assert!(cli(&admin, &["list-users"]).status.success());

    // A restart keeps the new token (operator.json's token is known).
    let mut coord = coord;
    coord.restart();
    assert_eq!(read(&coord.operator_json())["Token"], answer["Token"]);
    assert!(cli(&saved, &["list-commands"]).status.success());
}

/// Two replicas on one PostgreSQL database, each with its own
/// operator.json (its own root token): a rotation through one refuses both
/// old tokens on both at once, and the new token works on the other.
#[test]
fn a_rotation_through_one_replica_holds_at_once_on_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let db = TestDatabase::postgres();
    let secrets = tmp.path().join("secrets");
    let env = [
        ("TETHER_DATABASE", db.url.as_str()),
        ("TETHER_SECRETS_DIR", secrets.to_str().unwrap()),
    ];
    let [a, b] = ["a", "b"].map(|n| {
        let dir = tmp.path().join(n);
        std::fs::create_dir_all(&dir).unwrap();
        Coordinator::start_with_env(&dir, &env)
    });
    let b_old = tmp.path().join("b-old.json");
    std::fs::copy(b.operator_json(), &b_old).unwrap();
    assert!(b.cli(&["list-commands"]).status.success());

    let answer = a.json(&["rotate-root-token"]);
    assert_eq!(answer["RevokedTokenCount"], 2, "{answer}");
    // b's own operator.json held a root token of its own: refused on b now.
    unknown_token(&cli(&b_old, &["list-commands"]));
    // The new token, pointed at b, works on b.
    let mut on_b = answer.clone();
    on_b["Endpoint"] = read(&b_old)["Endpoint"].clone();
    let on_b_path = tmp.path().join("new-on-b.json");
    std::fs::write(&on_b_path, on_b.to_string()).unwrap();
    assert!(cli(&on_b_path, &["list-commands"]).status.success());
    assert!(a.cli(&["list-commands"]).status.success());
}
