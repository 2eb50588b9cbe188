//! Writes the protobuf seeds of `corpus/coordinator_proto` and
//! `corpus/agent_envelope` (the text seeds are kept as files): the messages
//! an agent and a coordinator exchange, built as they build them — a CSR from
//! the agent's own `new_key_and_csr`, inventory hashed as the agent hashes
//! it, envelopes signed under the agent target's key as `signing.rs` signs.
//! Run it after `tether.proto` changes (see `fuzz/README.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use sha2::{Digest, Sha256};
use tether_fuzz::{AGENT_NOW_MS, INSTANCE_ID, signing_key};
use tether_proto as pb;

const COMMAND_ID: &str = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";
const DOCUMENT: &str = include_str!("../../../documents/builtin/AWS-RunShellScript.json");

fn write(dir: &Path, name: &str, kind: &str, message: &[u8]) -> std::io::Result<()> {
    let mut bytes = kind.as_bytes().to_vec();
    bytes.push(b'\n');
    bytes.extend_from_slice(message);
    std::fs::write(dir.join(name), bytes)
}

/// The agent target's sealing public key (`tether_fuzz`'s node key).
fn node_public() -> Vec<u8> {
    pb::seal::NodeKey::from_bytes(tether_fuzz::NODE_KEY_SEED)
        .public()
        .to_vec()
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn info() -> pb::AgentInfo {
    pb::AgentInfo {
        platform_type: "Linux".into(),
        platform_name: "Debian GNU/Linux".into(),
        platform_version: "12".into(),
        computer_name: "web-1".into(),
        ip_address: "192.0.2.10".into(),
        agent_version: "0.1.0".into(),
    }
}

fn coordinator(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let (_, csr) = tether_agent::register::new_key_and_csr()?;
    let register = pb::RegisterRequest {
        activation_id: "4d8d3b1c-2a7e-4f0b-9c3d-5e6f7a8b9c0d".into(),
        activation_code: "fJ8fM2xq7rT3kLp9Wc4s".into(),
        csr_pem: csr.clone(),
        name: "web-1".into(),
        info: Some(info()),
    };
    write(dir, "register", "register", &register.encode_to_vec())?;
    let renew = pb::RenewCertificateRequest { csr_pem: csr };
    write(dir, "renew", "renew", &renew.encode_to_vec())?;
    let poll = pb::PollRequest {
        info: Some(info()),
        wait_ms: 20_000,
        associations_digest: sha256_hex("set"),
        sealing_public_key: node_public(),
        trust_digest: sha256_hex("trust"),
    };
    write(dir, "poll", "poll", &poll.encode_to_vec())?;
    let plugin = |state: pb::InvocationState, out: &[u8]| pb::PluginReport {
        name: "aws:runShellScript".into(),
        state: state as i32,
        response_code: 0,
        stdout: out.to_vec(),
        stderr: b"warning\n".to_vec(),
        stdout_truncated: false,
        stderr_truncated: false,
        started_at_ms: AGENT_NOW_MS,
        ended_at_ms: AGENT_NOW_MS + 1500,
        step_index: 0,
        stdout_offset: 0,
        stderr_offset: 0,
    };
    let report = |state: pb::InvocationState, detail: &str, plugins| pb::InvocationReport {
        command_id: COMMAND_ID.into(),
        state: state as i32,
        response_code: 0,
        started_at_ms: AGENT_NOW_MS,
        ended_at_ms: AGENT_NOW_MS + 1500,
        detail: detail.into(),
        plugins,
    };
    let reports = pb::ReportRequest {
        reports: vec![
            report(
                pb::InvocationState::InProgress,
                "",
                vec![plugin(pb::InvocationState::InProgress, b"Linux web-1\n")],
            ),
            report(
                pb::InvocationState::Success,
                "",
                vec![plugin(pb::InvocationState::Success, b"Linux web-1 6.1.0\n")],
            ),
            report(
                pb::InvocationState::Refused,
                "envelope expired at 1 ms",
                Vec::new(),
            ),
        ],
    };
    write(dir, "report", "report", &reports.encode_to_vec())?;
    let entries: Vec<BTreeMap<String, String>> = vec![
        BTreeMap::from([
            ("Name".to_owned(), "bash".to_owned()),
            ("Version".to_owned(), "5.2.15".to_owned()),
            ("Architecture".to_owned(), "amd64".to_owned()),
        ]),
        BTreeMap::from([
            ("Name".to_owned(), "openssl".to_owned()),
            ("Version".to_owned(), "3.0.15".to_owned()),
        ]),
    ];
    let inventory = pb::PutInventoryRequest {
        items: vec![
            pb::InventoryItem {
                type_name: "AWS:Application".into(),
                schema_version: "1.1".into(),
                capture_time_ms: AGENT_NOW_MS,
                content_hash: tether_coordinator::associations::content_hash(&entries),
                content_json: serde_json::to_string(&entries)?,
                unchanged: false,
            },
            pb::InventoryItem {
                type_name: "AWS:Network".into(),
                schema_version: "1.0".into(),
                capture_time_ms: AGENT_NOW_MS,
                content_hash: sha256_hex("network"),
                content_json: String::new(),
                unchanged: true,
            },
        ],
        runs: vec![pb::AssociationRun {
            association_id: COMMAND_ID.into(),
            association_version: "1".into(),
            status: "Success".into(),
            detail: String::new(),
            started_at_ms: AGENT_NOW_MS,
            ended_at_ms: AGENT_NOW_MS + 900,
            output: "ok\n".into(),
        }],
    };
    write(dir, "inventory", "inventory", &inventory.encode_to_vec())?;
    let operator = pb::OperatorCall {
        operation: "SendCommand".into(),
        request_json: r#"{"InstanceIds":["mi-0123456789abcdef0"],"DocumentName":"AWS-RunShellScript","Parameters":{"commands":["uname -a"]}}"#.into(),
    };
    write(dir, "operator", "operator", &operator.encode_to_vec())?;
    Ok(())
}

fn signed_command() -> pb::SignedCommand {
    pb::SignedCommand {
        instance_id: INSTANCE_ID.into(),
        command_id: COMMAND_ID.into(),
        document_name: "AWS-RunShellScript".into(),
        document_version: "1".into(),
        document_content: DOCUMENT.into(),
        document_hash: sha256_hex(DOCUMENT),
        parameters_json:
            r#"{"commands":["uname -a"],"workingDirectory":[""],"executionTimeout":["3600"]}"#
                .into(),
        issued_at_ms: AGENT_NOW_MS - 1000,
        expires_at_ms: AGENT_NOW_MS + 3_600_000,
        nonce: "5f0c8a1e9b2d4c7f6a3e1d0b9c8a7f6e".into(),
        requested_by: "arn:aws:iam::123456789012:user/ops".into(),
        // Sealed to the agent target's node key, so that they open there.
        secrets: Some(
            pb::seal::seal(
                &node_public(),
                INSTANCE_ID,
                &pb::seal::command_purpose(COMMAND_ID),
                &[pb::SecretValue {
                    reference: "{{ssm-secure:/adjoin/password}}".into(),
                    value: "Pa55w0rd!".into(),
                    name: "/adjoin/password".into(),
                    version: 3,
                }],
            )
            .expect("sealed"),
        ),
    }
}

fn signed_cancel() -> pb::SignedCancel {
    pb::SignedCancel {
        instance_id: INSTANCE_ID.into(),
        command_id: COMMAND_ID.into(),
        issued_at_ms: AGENT_NOW_MS - 1000,
        expires_at_ms: AGENT_NOW_MS + 3_600_000,
    }
}

fn signed_association(schedule: &str) -> pb::SignedAssociation {
    pb::SignedAssociation {
        instance_id: INSTANCE_ID.into(),
        association_id: COMMAND_ID.into(),
        association_version: "2".into(),
        association_name: "nightly".into(),
        document_name: "AWS-RunShellScript".into(),
        document_version: "$DEFAULT".into(),
        document_content: DOCUMENT.into(),
        document_hash: sha256_hex(DOCUMENT),
        parameters_json:
            r#"{"commands":["date"],"workingDirectory":[""],"executionTimeout":["3600"]}"#.into(),
        schedule_expression: schedule.into(),
        apply_only_at_cron_interval: schedule.starts_with("cron"),
        created_at_ms: AGENT_NOW_MS - 86_400_000,
        issued_at_ms: AGENT_NOW_MS,
        requested_by: "arn:aws:iam::123456789012:user/ops".into(),
    }
}

fn sign(context: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut bytes = context.to_vec();
    bytes.extend_from_slice(payload);
    signing_key().sign(&bytes).as_ref().to_vec()
}

fn agent(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let command = signed_command().encode_to_vec();
    let cancel = signed_cancel().encode_to_vec();
    let association = signed_association("cron(0 2 ? * SUN#2 *)").encode_to_vec();
    write(dir, "command", "command", &command)?;
    write(dir, "cancel", "cancel", &cancel)?;
    write(dir, "association", "association", &association)?;
    let poll = pb::PollResponse {
        envelopes: vec![pb::CommandEnvelope {
            signature: sign(b"", &command),
            payload: command,
        }],
        server_time_ms: AGENT_NOW_MS,
        cancels: vec![pb::CommandEnvelope {
            signature: sign(pb::CANCEL_SIGNING_CONTEXT, &cancel),
            payload: cancel,
        }],
        associations: Some(pb::AssociationSet {
            digest: sha256_hex("set"),
            associations: ["cron(0 2 ? * SUN#2 *)", "rate(30 minutes)", ""]
                .into_iter()
                .map(|s| {
                    let payload = signed_association(s).encode_to_vec();
                    pb::AssociationEnvelope {
                        signature: sign(pb::ASSOCIATION_SIGNING_CONTEXT, &payload),
                        payload,
                    }
                })
                .collect(),
        }),
        trust: Some({
            let payload = pb::TrustBundle {
                instance_id: INSTANCE_ID.into(),
                sealing_public_key: node_public(),
                command_signing_public_key: vec![0x42; 32],
                ..Default::default()
            }
            .encode_to_vec();
            pb::TrustEnvelope {
                signature: sign(pb::TRUST_SIGNING_CONTEXT, &payload),
                payload,
            }
        }),
    };
    write(dir, "poll", "poll", &poll.encode_to_vec())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("corpus"));
    coordinator(&root.join("coordinator_proto"))?;
    agent(&root.join("agent_envelope"))?;
    // Each seed goes through its target as the fuzzer would first run it.
    for (target, run) in [
        (
            "coordinator_proto",
            tether_fuzz::coordinator_proto as fn(&[u8]),
        ),
        ("agent_envelope", tether_fuzz::agent_envelope),
    ] {
        for entry in std::fs::read_dir(root.join(target))? {
            run(&std::fs::read(entry?.path())?);
        }
    }
    println!("wrote the protobuf seeds under {}", root.display());
    Ok(())
}
