//! Agent releases on the coordinator (issue 16): an operator adds a binary
//! with `tether add-agent-release --file` (sent in 1 MiB parts, an
//! interrupted upload resumed where the coordinator's copy ends), lists it,
//! makes it the fleet's target; a node fetches its manifest (signed by the
//! release key, never the command-signing key) and its bytes, from the start
//! and from the middle, over its own mutual-TLS channel. Bad uploads (a
//! wrong SHA-256, a part out of order, a duplicate) are refused by name and
//! leave nothing behind; the target cannot be deleted; every change is in
//! the audit trail.

use std::time::Duration;

use prost::Message;
use ring::signature::{ED25519, KeyPair, UnparsedPublicKey};
use serde_json::{Value, json};
use sha2::Digest as _;
use tether_proto as pb;
use tether_tests::{Agent, Coordinator, raw, stderr_of, tether_as, wait_for};

const PLATFORM: &str = "linux-x86_64";

/// 2.5 MiB that differ everywhere (three parts, the last one short).
fn binary(seed: u8) -> Vec<u8> {
    (0..(5 << 19))
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// The CLI's error output for `args`, which must fail.
fn refused(coord: &Coordinator, args: &[&str]) -> String {
    let out = coord.cli(args);
    assert!(!out.status.success(), "{args:?} should fail");
    stderr_of(&out)
}

fn get_release(
    coord: &Coordinator,
    agent: &Agent,
    version: &str,
) -> Result<pb::GetReleaseResponse, tonic::Status> {
    let version = version.to_string();
    raw::as_agent(coord, agent, |mut c| async move {
        c.get_release(pb::GetReleaseRequest {
            version,
            platform: PLATFORM.into(),
        })
        .await
        .map(tonic::Response::into_inner)
    })
}

fn download(coord: &Coordinator, agent: &Agent, version: &str, offset: u64) -> Vec<u8> {
    let version = version.to_string();
    raw::as_agent(coord, agent, |mut c| async move {
        let mut stream = c
            .download_release(pb::DownloadReleaseRequest {
                version,
                platform: PLATFORM.into(),
                offset,
            })
            .await
            .expect("download starts")
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.expect("a chunk") {
            assert_eq!(chunk.offset, offset + bytes.len() as u64);
            assert!(chunk.data.len() <= 1 << 20, "a chunk holds at most 1 MiB");
            bytes.extend_from_slice(&chunk.data);
        }
        bytes
    })
}

#[test]
fn releases_are_added_in_parts_signed_targeted_and_served_to_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coord = Coordinator::start(dir.path());
    let agent = Agent::start(dir.path(), "node1", &coord);
    let file = dir.path().join("tether-agent-9.9.9");
    let bytes = binary(0);
    std::fs::write(&file, &bytes).expect("write the binary");
    let f = file.to_str().expect("path");

    // An upload interrupted after its first part (as by a lost connection)...
    let first = &bytes[..1 << 20];
    let part = json!({
        "AgentVersion": "9.9.9", "Platform": PLATFORM, "Size": bytes.len(),
        "Sha256": sha256_hex(&bytes), "Offset": 0,
        "Content": base64_of(first),
    });
    let held =
        raw::grpc(&coord, "AddAgentRelease", part.to_string().as_bytes()).expect("first part");
    assert_eq!(held["AgentRelease"]["Status"], "Uploading");
    assert_eq!(held["AgentRelease"]["ReceivedBytes"], json!(1 << 20));
    // ... a part that does not start where the coordinator's copy ends ...
    let mut wrong = part.clone();
    wrong["Offset"] = json!(2 << 20);
    wrong["Content"] = json!(base64_of(&bytes[2 << 20..]));
    let (kind, message) = raw::grpc(&coord, "AddAgentRelease", wrong.to_string().as_bytes())
        .expect_err("a part out of order");
    assert_eq!(kind, "InvalidParameters");
    assert!(message.contains("holds 1048576 bytes"), "{message}");
    // ... goes on where it stopped with the CLI, and is signed once whole.
    let added = coord.json(&[
        "add-agent-release",
        "--agent-version",
        "9.9.9",
        "--platform",
        PLATFORM,
        "--file",
        f,
    ]);
    let r = &added["AgentRelease"];
    assert_eq!(r["Status"], "Available", "{added}");
    assert_eq!(r["Size"], json!(bytes.len()));
    assert_eq!(r["Sha256"], json!(sha256_hex(&bytes)));
    assert!(
        r["UploadedBy"].as_str().unwrap_or("").ends_with(":root"),
        "{added}"
    );

    // Added once: the same version again is refused by name.
    let again = refused(
        &coord,
        &[
            "add-agent-release",
            "--agent-version",
            "9.9.9",
            "--platform",
            PLATFORM,
            "--file",
            f,
        ],
    );
    assert!(again.contains("AgentReleaseAlreadyExists"), "{again}");
    // A binary whose bytes are not the SHA-256 announced is discarded.
    let lie = json!({
        "AgentVersion": "6.6.6", "Platform": PLATFORM, "Size": 3,
        "Sha256": sha256_hex(b"abc"), "Offset": 0, "Content": base64_of(b"abd"),
    });
    let (kind, message) = raw::grpc(&coord, "AddAgentRelease", lie.to_string().as_bytes())
        .expect_err("a wrong SHA-256");
    assert_eq!(kind, "InvalidParameters");
    assert!(message.contains("discarded"), "{message}");

    // Listed; no target yet, so a node asking for "the target" is told so.
    let list = coord.json(&["list-agent-releases"]);
    let listed: Vec<&Value> = list["AgentReleases"]
        .as_array()
        .expect("list")
        .iter()
        .collect();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["IsTarget"], json!(false));
    assert!(list.get("TargetVersion").is_none(), "{list}");
    let none = get_release(&coord, &agent, "").expect_err("no target");
    assert_eq!(none.code(), tonic::Code::NotFound);
    assert!(
        none.message().contains("set-agent-target-version"),
        "{}",
        none.message()
    );
    let info = coord.json(&["describe-instance-information"]);
    assert_eq!(
        info["InstanceInformationList"][0]["IsLatestVersion"],
        json!(true)
    );

    // The target: only a version that has an available release.
    let missing = refused(
        &coord,
        &["set-agent-target-version", "--agent-version", "7.0.0"],
    );
    assert!(missing.contains("AgentReleaseNotFound"), "{missing}");
    coord.json(&["set-agent-target-version", "--agent-version", "9.9.9"]);
    let list = coord.json(&["list-agent-releases"]);
    assert_eq!(list["TargetVersion"], "9.9.9");
    assert_eq!(list["AgentReleases"][0]["IsTarget"], json!(true));
    // The node runs another version: not the latest any more.
    let info = coord.json(&["describe-instance-information"]);
    let node = &info["InstanceInformationList"][0];
    assert_eq!(node["IsLatestVersion"], json!(false), "{info}");
    // The fleet's versions at a glance, as SSM's inventory summary gives them.
    let summary = coord.json(&[
        "get-inventory",
        "--aggregators",
        "Expression=AWS:InstanceInformation.AgentVersion",
    ]);
    let counts = &summary["Entities"][0]["Data"]["AWS:InstanceInformation"]["Content"];
    assert_eq!(
        counts,
        &json!([{"AgentVersion": node["AgentVersion"], "Count": "1"}]),
        "{summary}"
    );

    // What a node gets: the manifest signed by the release key, which is
    // not the command-signing key; the bytes from the start and the middle.
    let got = get_release(&coord, &agent, "").expect("the target's manifest");
    let manifest = pb::ReleaseManifest::decode(got.manifest.as_slice()).expect("a manifest");
    assert_eq!(manifest.version, "9.9.9");
    assert_eq!(manifest.platform, PLATFORM);
    assert_eq!(manifest.size, bytes.len() as u64);
    assert_eq!(hex::encode(&manifest.sha256), sha256_hex(&bytes));
    let key = std::fs::read(coord.dir.join("release.key")).expect("release.key");
    let public = ring::signature::Ed25519KeyPair::from_pkcs8(&key)
        .expect("an Ed25519 key")
        .public_key()
        .as_ref()
        .to_vec();
    let mut covered = pb::RELEASE_SIGNING_CONTEXT.to_vec();
    covered.extend_from_slice(&got.manifest);
    UnparsedPublicKey::new(&ED25519, &public)
        .verify(&covered, &got.signature)
        .expect("signed by the release key");
    UnparsedPublicKey::new(&ED25519, &public)
        .verify(&got.manifest, &got.signature)
        .expect_err("only under the release context");
    let signing = std::fs::read(coord.dir.join("signing.key")).expect("signing.key");
    assert_ne!(signing, key, "the release key is its own");
    assert_eq!(download(&coord, &agent, "9.9.9", 0), bytes);
    let from = 1_500_000;
    assert_eq!(
        download(&coord, &agent, "9.9.9", from),
        bytes[from as usize..]
    );
    let past = raw::as_agent(&coord, &agent, |mut c| async move {
        c.download_release(pb::DownloadReleaseRequest {
            version: "9.9.9".into(),
            platform: PLATFORM.into(),
            offset: 10 << 20,
        })
        .await
        .map(|_| ())
    })
    .expect_err("an offset past the end");
    assert_eq!(past.code(), tonic::Code::InvalidArgument);
    let other = get_release(&coord, &agent, "6.6.6").expect_err("a discarded release");
    assert_eq!(other.code(), tonic::Code::NotFound);

    // The target's release stays; another goes.
    let busy = refused(
        &coord,
        &[
            "delete-agent-release",
            "--agent-version",
            "9.9.9",
            "--platform",
            PLATFORM,
        ],
    );
    assert!(busy.contains("AgentReleaseInUse"), "{busy}");
    let gone = refused(
        &coord,
        &[
            "delete-agent-release",
            "--agent-version",
            "1.0.0",
            "--platform",
            PLATFORM,
        ],
    );
    assert!(gone.contains("AgentReleaseNotFound"), "{gone}");

    // The verbs are actions that policies govern: a user who may only list
    // cannot add or target a release.
    let reader = super::trust::user(
        &coord,
        dir.path(),
        "reader",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "tether:ListAgentReleases", "Resource": "*"}]}"#,
    );
    let listed = tether_as(&reader, &["list-agent-releases"]);
    assert!(listed.status.success(), "{}", stderr_of(&listed));
    for args in [
        vec![
            "add-agent-release",
            "--agent-version",
            "9.9.10",
            "--platform",
            PLATFORM,
            "--file",
            f,
        ],
        vec!["set-agent-target-version", "--agent-version", "9.9.9"],
    ] {
        let why = super::trust::denied(&tether_as(&reader, &args));
        assert!(why.contains("tether:"), "{why}");
    }
    assert_eq!(
        coord.json(&["list-agent-releases"])["AgentReleases"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Every change is in the audit trail, the parts by size and hash only.
    let events = wait_for("the audit trail", Duration::from_secs(10), || {
        let e = coord.json(&["lookup-events"]);
        let text = e.to_string();
        (text.contains("SetAgentTargetVersion") && text.contains("AddAgentRelease")).then_some(e)
    });
    let text = events.to_string();
    assert!(
        !text.contains(&base64_of(&first[..64])),
        "a part's bytes were recorded"
    );
    drop(agent);
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
