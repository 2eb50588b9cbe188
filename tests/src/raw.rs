//! Raw requests to a coordinator, around the clients' own checks: any JSON
//! body to any operation, over the operator gRPC channel (as the tether CLI
//! sends it, with the token of `operator.json`) and over the SSM-compatible
//! HTTPS API (signed with SigV4 by botocore, as the aws CLI signs it). Tests
//! compare how the coordinator answers the same bytes on both.

use serde_json::{Value, json};
use tether_proto as pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::Coordinator;
use crate::aws::AwsClient;

/// An answer: the response JSON, or the error's SSM type and message.
pub type Answer = Result<Value, (String, String)>;

/// Sends `body` to `operation` over the operator gRPC channel.
pub fn grpc(coord: &Coordinator, operation: &str, body: &[u8]) -> Answer {
    let token = operator(coord)["Token"]
        .as_str()
        .expect("Token")
        .to_string();
    let request_json = String::from_utf8(body.to_vec()).expect("a UTF-8 body");
    block_on(async move {
        let channel = channel(coord).await;
        let mut client = pb::operator_client::OperatorClient::new(channel)
            .max_decoding_message_size(pb::MAX_MESSAGE_BYTES);
        let mut req = tonic::Request::new(pb::OperatorCall {
            operation: operation.to_string(),
            request_json,
        });
        req.metadata_mut().insert(
            pb::OPERATOR_TOKEN_HEADER,
            format!("Bearer {token}").parse().expect("a header value"),
        );
        match client.invoke(req).await {
            Ok(r) => Ok(serde_json::from_str(&r.into_inner().response_json)
                .expect("the coordinator answers JSON")),
            Err(status) => Err((
                status
                    .metadata()
                    .get(pb::ERROR_TYPE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("(no type)")
                    .to_string(),
                status.message().to_string(),
            )),
        }
    })
}

/// Calls on the gRPC port with no credential at all (no client certificate,
/// no operator token), carrying `bytes` of filler: an operator call, an
/// agent's report and a registration. The status of each.
pub fn uncredentialed(coord: &Coordinator, bytes: usize) -> [tonic::Status; 3] {
    let filler = "x".repeat(bytes);
    block_on(async move {
        let operator = pb::operator_client::OperatorClient::new(channel(coord).await)
            .invoke(pb::OperatorCall {
                operation: "ListCommands".into(),
                request_json: filler.clone(),
            })
            .await;
        let report = pb::agent_client::AgentClient::new(channel(coord).await)
            .report(pb::ReportRequest {
                reports: vec![pb::InvocationReport {
                    command_id: filler.clone(),
                    ..Default::default()
                }],
            })
            .await;
        let register = pb::registration_client::RegistrationClient::new(channel(coord).await)
            .register(pb::RegisterRequest {
                csr_pem: filler,
                ..Default::default()
            })
            .await;
        let status = |r: Result<(), tonic::Status>| r.expect_err("a call without credentials");
        [
            status(operator.map(drop)),
            status(report.map(drop)),
            status(register.map(drop)),
        ]
    })
}

fn operator(coord: &Coordinator) -> Value {
    serde_json::from_str(&std::fs::read_to_string(coord.operator_json()).expect("operator.json"))
        .expect("operator.json is JSON")
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// A TLS channel to the gRPC port, trusting the coordinator's CA, without a
/// client certificate.
async fn channel(coord: &Coordinator) -> tonic::transport::Channel {
    let operator = operator(coord);
    let endpoint = operator["Endpoint"].as_str().expect("Endpoint").to_string();
    let ca = operator["CaCertificate"]
        .as_str()
        .expect("CaCertificate")
        .to_string();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    Endpoint::from_shared(endpoint)
        .expect("the endpoint is a URL")
        .tls_config(tls)
        .expect("TLS configuration")
        .connect()
        .await
        .expect("connect to the gRPC port")
}

/// Sends each `(operation, body)` to the HTTPS API, SigV4-signed with
/// `key`; one answer each, in order.
pub fn https(key: &AwsClient, requests: &[(&str, &[u8])]) -> Vec<Answer> {
    let bodies: Vec<Value> = requests
        .iter()
        .map(|(op, body)| json!([op, String::from_utf8_lossy(body)]))
        .collect();
    let script = r#"
import json, sys
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.httpsession import URLLib3Session
endpoint, bundle, requests = json.load(sys.stdin)
creds = botocore.session.get_session().get_credentials()
http = URLLib3Session(verify=bundle)
out = []
for op, body in requests:
    req = AWSRequest(method="POST", url=endpoint + "/", data=body.encode(),
                     headers={"X-Amz-Target": "AmazonSSM." + op,
                              "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(creds, "ssm", "us-east-1").add_auth(req)
    r = http.send(req.prepare())
    answer = json.loads(r.content)
    if r.status_code == 200:
        out.append({"ok": answer})
    else:
        out.append({"type": answer.get("__type"), "message": answer.get("message")})
print(json.dumps(out))
"#;
    let input = json!([key.endpoint, key.ca_bundle, bodies]).to_string();
    let mut child = key
        .command("python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.as_bytes())
            .expect("write the requests");
    }
    let out = child.wait_with_output().expect("python3 ends");
    let answers: Vec<Value> = crate::success_json("raw HTTPS requests", &out)
        .as_array()
        .cloned()
        .expect("a list of answers");
    answers
        .into_iter()
        .map(|a| match a.get("ok") {
            Some(v) => Ok(v.clone()),
            None => Err((
                a["type"].as_str().unwrap_or("(no type)").to_string(),
                a["message"].as_str().unwrap_or("").to_string(),
            )),
        })
        .collect()
}

/// Registers over the Registration service from the loopback address
/// `source` (any of 127.0.0.0/8: the coordinator sees a distinct client
/// address), around the agent's own client: the new instance ID, or the
/// refusal's gRPC code and message. The CSR is a real one for a fresh key.
pub fn register_from(
    coord: &Coordinator,
    source: std::net::IpAddr,
    activation_id: &str,
    activation_code: &str,
) -> Result<String, (tonic::Code, String)> {
    let operator: Value = serde_json::from_str(
        &std::fs::read_to_string(coord.operator_json()).expect("operator.json"),
    )
    .expect("operator.json is JSON");
    let ca = operator["CaCertificate"]
        .as_str()
        .expect("CaCertificate")
        .to_string();
    let (_key, csr_pem) = tether_agent::register::new_key_and_csr().expect("a key and its CSR");
    let request = pb::RegisterRequest {
        activation_id: activation_id.to_string(),
        activation_code: activation_code.to_string(),
        csr_pem,
        name: String::new(),
        info: None,
    };
    let endpoint = coord.endpoint();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        let channel = Endpoint::from_shared(endpoint)
            .expect("the endpoint is a URL")
            .local_address(Some(source))
            .tls_config(tls)
            .expect("TLS configuration")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect from {source}: {e}"));
        let mut client = pb::registration_client::RegistrationClient::new(channel);
        client
            .register(request)
            .await
            .map(|r| r.into_inner().instance_id)
            .map_err(|s| (s.code(), s.message().to_string()))
    })
}

/// Runs `call` on the Agent service over `agent`'s own mutual-TLS identity
/// (its key, certificate and pinned CA from its state directory), as the
/// agent itself would: what the coordinator answers that node.
pub fn as_agent<T, F, Fut>(coord: &Coordinator, agent: &crate::Agent, call: F) -> T
where
    F: FnOnce(pb::agent_client::AgentClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let read = |name: &str| {
        std::fs::read_to_string(agent.state_dir.join(name))
            .unwrap_or_else(|e| panic!("{name} of {}: {e}", agent.instance_id))
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(read("agent.crt"), read("agent.key")))
        .domain_name("localhost");
    let endpoint = coord.endpoint();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let channel = Endpoint::from_shared(endpoint)
            .expect("the endpoint is a URL")
            .tls_config(tls)
            .expect("TLS configuration")
            .connect()
            .await
            .expect("connect as the agent");
        call(pb::agent_client::AgentClient::new(channel)).await
    })
}
