//! Size limits on every transport (issue 13, item 2). A hostile probe sent
//! three SendCommands of 10 and 14 MB over gRPC: they were stored, one poll
//! response outgrew the 40 MiB message limit, the node's commands ended
//! Delivery Timed Out without running, ListCommands failed for everyone and
//! the coordinator grew from 32 MB to 975 MB. Reproduced here with a few MB:
//! every request is held to the same caps on both transports, what is under
//! them is delivered and listed in pages under a byte budget.

use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::aws::AwsClient;
use tether_tests::{Agent, Coordinator, raw};

/// A SendCommand body for `id` running `echo NAME` with a comment of `pad` bytes.
fn send_body(id: &str, name: &str, pad: usize) -> Vec<u8> {
    json!({
        "DocumentName": "AWS-RunShellScript",
        "InstanceIds": [id],
        "Parameters": {"commands": [format!("echo {name} # {}", "x".repeat(pad))]},
    })
    .to_string()
    .into_bytes()
}

fn rss(coord: &Coordinator) -> String {
    coord
        .rss_kib()
        .map_or("?".into(), |k| format!("{} MiB", k / 1024))
}

#[test]
fn large_commands_are_refused_alike_and_what_fits_is_delivered_and_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let aws = AwsClient::issue(&coord);
    let mut agent = Agent::start(tmp.path(), "a", &coord);
    let id = agent.instance_id.clone();
    // Offline, as in the probe: what is sent piles up for one poll.
    agent.crash();
    let before = rss(&coord);

    // Three 5 MB SendCommands: over the 4 MiB body cap on either transport.
    for n in 0..3 {
        let body = send_body(&id, &format!("huge{n}"), 5 * 1024 * 1024);
        let (kind, message) = raw::grpc(&coord, "SendCommand", &body).unwrap_err();
        assert!(
            message.contains("too large") && message.contains("4198400"),
            "gRPC: {kind}: {message}"
        );
        let answer = raw::https(&aws, &[("SendCommand", &body)]).remove(0);
        let (kind, message) = answer.unwrap_err();
        assert_eq!(kind, "SerializationException", "{message}");
        assert!(message.contains("at most 4194304 bytes"), "{message}");
    }
    // Parameters over 256 KiB but a body under 4 MiB: the same refusal on both.
    let body = send_body(&id, "big", 300 * 1024);
    let grpc = raw::grpc(&coord, "SendCommand", &body).unwrap_err();
    let https = raw::https(&aws, &[("SendCommand", &body)])
        .remove(0)
        .unwrap_err();
    assert_eq!(grpc, https, "one door, one answer");
    assert_eq!(grpc.0, "ValidationException");
    assert!(
        grpc.1.contains("Parameters are 307219 bytes") && grpc.1.contains("at most 262144"),
        "{}",
        grpc.1
    );

    // Six commands just under the cap, and a small one, all waiting for the node.
    let mut sent = Vec::new();
    for n in 0..6 {
        let body = send_body(&id, &format!("big{n}"), 240 * 1024);
        let v = raw::grpc(&coord, "SendCommand", &body).expect("under the cap");
        sent.push(v["Command"]["CommandId"].as_str().unwrap().to_string());
    }
    sent.push(coord.send(&[&id], &json!({"commands": ["echo small"]})));
    agent.run();
    for (n, c) in sent.iter().enumerate() {
        let inv = coord.wait_invocation(c, &id, Duration::from_secs(60));
        assert_eq!(inv["Status"], json!("Success"), "{inv}");
        let want = if n < 6 {
            format!("big{n}\n")
        } else {
            "small\n".into()
        };
        assert_eq!(inv["StandardOutputContent"], json!(want), "{inv}");
    }

    // A page of ListCommands stays under its byte budget and says where to go on.
    let page = raw::grpc(&coord, "ListCommands", b"{}").unwrap();
    let listed = page["Commands"].as_array().unwrap();
    assert!(listed.len() < 7, "{} commands on one page", listed.len());
    assert!(
        page.to_string().len() <= 1024 * 1024 + 16 * 1024,
        "{} bytes",
        page.to_string().len()
    );
    let token = page["NextToken"].as_str().expect("a NextToken");
    let rest = raw::grpc(
        &coord,
        "ListCommands",
        json!({"NextToken": token}).to_string().as_bytes(),
    )
    .unwrap();
    let total = listed.len() + rest["Commands"].as_array().unwrap().len();
    println!(
        "limits: ListCommands pages of {} and {} commands ({} and {} bytes)",
        listed.len(),
        total - listed.len(),
        page.to_string().len(),
        rest.to_string().len()
    );
    assert_eq!(total, 7);
    // Both CLIs follow the tokens to the end.
    let all = coord.json(&["list-commands"]);
    assert_eq!(all["Commands"].as_array().unwrap().len(), 7);
    let all = aws.aws_json(&["list-commands"]);
    assert_eq!(all["Commands"].as_array().unwrap().len(), 7);
    let invs = coord.json(&["list-command-invocations", "--details"]);
    assert_eq!(invs["CommandInvocations"].as_array().unwrap().len(), 7);
    println!(
        "limits: coordinator memory {before} before the large requests, {} after",
        rss(&coord)
    );
}

#[test]
fn credentials_are_checked_before_a_message_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    // 5 MB: more than an operator call (4 MiB and its name) or a registration
    // (64 KiB) may carry. A refusal for want of credentials, not for size,
    // shows the message was never decoded.
    let [operator, report, register] = raw::uncredentialed(&coord, 5 * 1024 * 1024);
    assert_eq!(
        operator.code(),
        tonic::Code::Unauthenticated,
        "{operator:?}"
    );
    assert!(
        operator.message().contains("operator token"),
        "{operator:?}"
    );
    assert_eq!(report.code(), tonic::Code::Unauthenticated, "{report:?}");
    assert!(
        report.message().contains("client certificate"),
        "{report:?}"
    );
    assert!(
        register.message().contains("too large") && register.message().contains("65536"),
        "{register:?}"
    );
    // A registration within its limit is still answered (and refused for its code).
    let [_, _, small] = raw::uncredentialed(&coord, 1024);
    assert!(!small.message().contains("too large"), "{small:?}");
    let _: Value = coord.json(&["list-commands"]);
}
