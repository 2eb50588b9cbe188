//! The fuzz targets' bodies: one function per parser of outside input, each
//! taking the fuzzer's bytes and driving Tether's own code with them, as the
//! transport that carries such input would. A panic (an `unwrap` on outside
//! input, an overflow, an index out of range, a broken invariant asserted
//! here) is a crash to AFL++. `src/bin/*.rs` wrap each in `afl::fuzz!`;
//! `fuzz/README.md` says what each input looks like.
//!
//! Invariants asserted beyond "does not panic" are the documented ones:
//! a document accepted can always be planned and read back in the other
//! format; a schedule's next run is after the given time and nothing fires
//! in between; a client certificate names the instance and nothing the CSR
//! asked for; a verified envelope is the one that was signed.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use prost::Message;
use ring::signature::{Ed25519KeyPair, KeyPair};
use tether_documents::{Document, DocumentFormat, PlatformType};
use tether_proto as pb;
use tether_ssm::{Operation, Rate, Request, Target};

/// `first line`, `rest` (the whole input and nothing when there is no newline).
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[], data),
    }
}

// ---------------------------------------------------------------------------
// documents: Document::parse / parse_as, content_as, resolve_parameters, plan

/// A document (JSON or YAML), then optionally a NUL and the parameters given
/// to it as SSM's JSON (`{"name": ["value", ...]}`).
pub fn document(data: &[u8]) {
    let (content, params) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    // Every transport hands the document over as a string.
    let Ok(content) = std::str::from_utf8(content) else {
        return;
    };
    let given: BTreeMap<String, Vec<String>> = params
        .and_then(|p| serde_json::from_slice(p).ok())
        .unwrap_or_default();
    let _ = Document::parse("Fuzz-Document", content);
    for format in [DocumentFormat::Json, DocumentFormat::Yaml] {
        let Ok(doc) = Document::parse_as("Fuzz-Document", content, format) else {
            continue;
        };
        let _ = (doc.hash(), doc.platform_types());
        // GetDocument --document-format: what it answers is a document again.
        for other in [DocumentFormat::Json, DocumentFormat::Yaml] {
            let text = doc.content_as(other);
            match Document::parse_as("Fuzz-Document", &text, other) {
                Ok(again) => {
                    assert_eq!(again.step_names(), doc.step_names(), "{other} of {format}");
                    assert_eq!(again.parameters, doc.parameters, "{other} of {format}");
                }
                Err(e) => {
                    panic!("the {format} document in {other} does not parse again: {e}\n{text}")
                }
            }
        }
        for given in [&given, &BTreeMap::new()] {
            let Ok(resolved) = doc.resolve_parameters(given) else {
                continue;
            };
            // Planning may still refuse (a step field built from a parameter,
            // `timeoutSeconds: "x{{ t }}"`, checked only once interpolated:
            // SendCommand answers InvalidParameters then), but never panics,
            // and its refusal names what is wrong.
            for platform in PlatformType::ALL {
                if let Err(e) = doc.plan(&resolved, platform) {
                    assert!(
                        !e.to_string().is_empty(),
                        "a plan refusal without a message"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// schedule: parse and next-run times

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// A schedule expression (`cron(...)`, `rate(...)`), as CreateAssociation
/// takes it and as the agent reads it from a signed association.
pub fn schedule(data: &[u8]) {
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(schedule) = tether_schedule::parse(expr) else {
        return;
    };
    let _ = schedule.rate_period();
    let times = [
        at(1970, 1, 1, 0, 0, 0),
        at(2024, 2, 28, 23, 59, 30),
        at(2025, 12, 31, 23, 59, 59),
        at(2199, 12, 31, 23, 58, 0),
    ];
    for after in times {
        for anchor in times {
            let Some(next) = schedule.next_after(after, anchor) else {
                continue;
            };
            assert!(next > after, "{expr}: next run {next} is not after {after}");
            if schedule.is_cron() {
                assert!(
                    next.second() == 0 && next.nanosecond() == 0,
                    "{expr}: next run {next} is not a whole minute"
                );
                // Nothing fires between `after` and `next`.
                let mid = after + (next - after) / 2;
                assert_eq!(
                    schedule.next_after(mid, anchor),
                    Some(next),
                    "{expr}: from {after} the next run is {next}, from {mid} it differs"
                );
            } else if let Some(period) = schedule.rate_period() {
                let period = Duration::from_std(period).unwrap_or(Duration::MAX);
                let from_anchor = next - anchor;
                assert!(
                    from_anchor > Duration::zero()
                        && from_anchor.num_milliseconds() % period.num_milliseconds() == 0,
                    "{expr}: next run {next} is not a whole number of periods after {anchor}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// cli shorthand: the aws CLI's flag syntax, for the shape a flag expects

/// Every input member's shape, by member name (`Targets`, `Parameters`, …).
fn shapes() -> &'static [(String, tether_ssm::model::Shape)] {
    static SHAPES: OnceLock<Vec<(String, tether_ssm::model::Shape)>> = OnceLock::new();
    SHAPES.get_or_init(|| {
        let model = tether_ssm::model::model();
        let mut all: Vec<(String, tether_ssm::model::Shape)> = Vec::new();
        for op in Operation::ALL {
            for m in model.input_members(op.name()) {
                if !all.iter().any(|(n, _)| n == m.name) {
                    all.push((m.name.to_owned(), model.cli_shape(m.shape)));
                }
            }
        }
        all
    })
}

/// The member name of a flag (a line), then its words separated by NULs.
pub fn shorthand(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Parameter files are the module's only IO: the fuzzer must not name
    // files to read (/dev/zero would never end).
    if text.contains("file://") || text.contains("fileb://") {
        return;
    }
    let (name, rest) = text.split_once('\n').unwrap_or(("", text));
    let all = shapes();
    let Some(shape) = all
        .iter()
        .find(|(n, _)| n == name)
        .or_else(|| {
            let h = name
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
            all.get(h % all.len().max(1))
        })
        .map(|(_, s)| s)
    else {
        return;
    };
    let words: Vec<String> = rest.split('\0').map(str::to_owned).collect();
    if let [one] = words.as_slice() {
        let _ = tether_cli::shorthand::parse_value(one, shape);
    }
    let _ = tether_cli::shorthand::parse_list_arg(&words, shape);
}

// ---------------------------------------------------------------------------
// SigV4: the Authorization header and the signature of an HTTPS request

/// The secret the corpus's requests were signed with (botocore's test key).
pub const SIGV4_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// The coordinator's clock for the SigV4 target: the corpus's X-Amz-Date.
pub fn sigv4_now() -> DateTime<Utc> {
    at(2025, 1, 2, 3, 4, 5)
}

/// An HTTP/1.1 request as it arrives: request line, header lines, an empty
/// line, the body.
pub fn sigv4(data: &[u8]) {
    use tether_coordinator::sigv4;
    let (head, body) = match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&data[..i], &data[i + 4..]),
        None => match data.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => (data, &[][..]),
        },
    };
    // hyper hands header values over as bytes; the edge takes them as text.
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let req = sigv4::Request {
        method,
        path,
        query,
        headers,
        body,
    };
    let Ok(auth) = sigv4::authorization(&req) else {
        return;
    };
    let _ = (
        auth.scope(),
        sigv4::canonical_request(&req, &auth.signed_headers),
    );
    for now in [sigv4_now(), sigv4_now() + Duration::minutes(6)] {
        let _ = sigv4::verify(&req, &auth, SIGV4_SECRET, "ssm", now);
    }
}

// ---------------------------------------------------------------------------
// SSM requests: AWS JSON 1.1 bodies through the model to a typed Request

/// The operation's name on a line (as X-Amz-Target or the operator call
/// names it), then the JSON body.
pub fn ssm_request(data: &[u8]) {
    let (name, body) = split_line(data);
    let op = std::str::from_utf8(name)
        .ok()
        .and_then(Operation::from_name)
        .unwrap_or_else(|| {
            let i = name.first().copied().unwrap_or(0) as usize;
            Operation::ALL[i % Operation::ALL.len()]
        });
    let Ok(request) = Request::from_json(op, body) else {
        return;
    };
    assert_eq!(request.operation(), op);
    // What the handlers parse further, before anything is stored.
    let targets = |ts: &Option<Vec<tether_ssm::input::Target>>| {
        for t in ts.iter().flatten() {
            let _ = Target::parse(
                t.key.as_deref().unwrap_or(""),
                t.values.as_deref().unwrap_or(&[]),
            );
        }
    };
    let rate = |r: &Option<String>| {
        if let Some(Ok(rate)) = r.as_deref().map(str::parse::<Rate>) {
            for n in [0, 1, 7, 100, u64::MAX] {
                let _ = (rate.concurrency(n), rate.errors_allowed(n));
            }
        }
    };
    let content = |name: &str, content: &str, format: &Option<String>| {
        let format = format
            .as_deref()
            .unwrap_or("JSON")
            .parse::<DocumentFormat>();
        if let Ok(format) = format {
            let _ = Document::parse_as(name, content, format);
        }
    };
    match &request {
        Request::SendCommand(r) => {
            targets(&r.targets);
            rate(&r.max_concurrency);
            rate(&r.max_errors);
        }
        Request::CreateAssociation(r) => {
            targets(&r.targets);
            rate(&r.max_concurrency);
            rate(&r.max_errors);
            if let Some(s) = &r.schedule_expression {
                let _ = tether_schedule::parse(s);
            }
        }
        Request::UpdateAssociation(r) => {
            targets(&r.targets);
            rate(&r.max_concurrency);
            rate(&r.max_errors);
            if let Some(s) = &r.schedule_expression {
                let _ = tether_schedule::parse(s);
            }
        }
        Request::CreateDocument(r) => content(&r.name, &r.content, &r.document_format),
        Request::UpdateDocument(r) => content(&r.name, &r.content, &r.document_format),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// IAM policies: put-user-policy's document, then evaluation

/// The account, region and user of the policy target's requests.
const POLICY_ARN: &str = "arn:aws:iam::123456789012:user/ops/alice";

/// A policy document as `put-user-policy` takes it; then optionally a NUL,
/// an action, a newline and a resource ARN to evaluate it on (else a few
/// fixed requests).
pub fn policy(data: &[u8]) {
    use tether_iam::{Context, Decision, Request as IamRequest};
    let (document, request) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(document) = std::str::from_utf8(document) else {
        return;
    };
    let Ok(policy) = tether_coordinator::authz::parse_policy(document) else {
        return;
    };
    let deny_all = tether_coordinator::authz::parse_policy(
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}"#,
    )
    .expect("the deny-all policy parses");
    let mut ctx = Context::new();
    ctx.set("aws:CurrentTime", "2025-01-02T03:04:05Z")
        .set("aws:EpochTime", "1735787045")
        .set("aws:username", "alice")
        .set("aws:PrincipalArn", POLICY_ARN)
        .set("aws:PrincipalAccount", "123456789012")
        .set("aws:SourceIp", "192.0.2.10")
        .set("aws:PrincipalTag/team", "web")
        .set("ssm:resourceTag/Finance", "WebServers");
    let given = request.map(String::from_utf8_lossy).map(|r| r.into_owned());
    let mut requests: Vec<(String, String)> = vec![
        (
            "ssm:SendCommand".into(),
            "arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-0123456789abcdef0".into(),
        ),
        (
            "ssm:SendCommand".into(),
            "arn:aws:ssm:us-east-1::document/AWS-RunShellScript".into(),
        ),
        ("iam:CreateUser".into(), POLICY_ARN.into()),
    ];
    if let Some(r) = &given {
        let (action, resource) = r.split_once('\n').unwrap_or((r, "*"));
        requests.push((action.to_owned(), resource.to_owned()));
    }
    for (action, resource) in &requests {
        let req = IamRequest {
            action,
            resource,
            context: &ctx,
        };
        let alone = tether_iam::evaluate(&[&policy], &req);
        assert_eq!(
            alone,
            tether_iam::evaluate(&[&policy], &req),
            "{action} on {resource}"
        );
        // An explicit Deny always wins, whatever the other policy says.
        let with_deny = tether_iam::evaluate(&[&policy, &deny_all], &req);
        assert!(
            matches!(with_deny, Decision::ExplicitlyDenied(_)),
            "{action} on {resource} with a deny-all policy beside: {with_deny:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// protobuf into the coordinator: the agent-facing calls and the operator call

/// The instance the coordinator target's calls come from.
pub const INSTANCE_ID: &str = "mi-0123456789abcdef0";

fn pki() -> &'static tether_coordinator::pki::Pki {
    static PKI: OnceLock<tether_coordinator::pki::Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory for the fuzz target's CA");
        let pki =
            tether_coordinator::pki::Pki::load_or_create(dir.path(), &["localhost".to_owned()])
                .expect("the fuzz target's CA");
        // Loaded into memory; the files are not needed again.
        drop(dir);
        pki
    })
}

/// Makes what the targets build once (the model, the CA) before the fork
/// server starts, so each run measures the parser alone.
pub fn warm_up() {
    let _ = (
        shapes(),
        pki(),
        signing_key(),
        tether_coordinator::authz::vocabulary(),
    );
}

/// A client certificate from a CSR names the instance and nothing else.
fn issue(csr_pem: &str) {
    let lifetime = std::time::Duration::from_secs(3600);
    if let Ok(pem) = pki().issue_client_cert(INSTANCE_ID, csr_pem, lifetime) {
        let der = tether_coordinator::pki::pem_to_der(&pem);
        let cn = der
            .as_deref()
            .and_then(tether_coordinator::pki::subject_common_name);
        assert_eq!(
            cn.as_deref(),
            Some(INSTANCE_ID),
            "a certificate issued for a CSR"
        );
    }
}

/// The call's name on a line (`register`, `renew`, `poll`, `report`,
/// `inventory`, `operator`), then its protobuf message.
pub fn coordinator_proto(data: &[u8]) {
    use tether_coordinator::fuzzing;
    let (kind, message) = split_line(data);
    match kind {
        b"register" => {
            if let Ok(r) = fuzzing::registration(message) {
                issue(&r.csr_pem);
            }
        }
        b"renew" => {
            if let Ok(csr) = fuzzing::renewal(message) {
                issue(&csr);
            }
        }
        b"poll" => {
            let _ = fuzzing::poll(message);
        }
        b"report" => {
            let _ = fuzzing::reports(message);
        }
        b"inventory" => {
            let _ = fuzzing::inventory(INSTANCE_ID, message);
        }
        b"operator" => {
            let _ = fuzzing::operator_call(message);
        }
        _ => {
            // Any other bytes: every message type at once.
            let _ = fuzzing::registration(data).map(|r| issue(&r.csr_pem));
            let _ = fuzzing::poll(data);
            let _ = fuzzing::reports(data);
            let _ = fuzzing::inventory(INSTANCE_ID, data);
            let _ = fuzzing::operator_call(data);
        }
    }
}

// ---------------------------------------------------------------------------
// protobuf into the agent: signed envelopes in a poll response

/// The command-signing key of the agent target (a fixed seed, so that the
/// corpus's envelopes verify).
pub fn signing_key() -> &'static Ed25519KeyPair {
    static KEY: OnceLock<Ed25519KeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        Ed25519KeyPair::from_seed_unchecked(&[0x42; 32]).expect("an Ed25519 key from a seed")
    })
}

/// The agent target's clock (ms): the corpus's envelopes are current then.
pub const AGENT_NOW_MS: i64 = 1_735_787_045_000;

fn public_key() -> &'static [u8] {
    signing_key().public_key().as_ref()
}

/// The agent target's sealing key (X25519 private key bytes), so that the
/// corpus's sealed secrets open.
pub const NODE_KEY_SEED: [u8; 32] = [0x5a; 32];

fn node_key() -> &'static pb::seal::NodeKey {
    static KEY: OnceLock<pb::seal::NodeKey> = OnceLock::new();
    KEY.get_or_init(|| pb::seal::NodeKey::from_bytes(NODE_KEY_SEED))
}

fn command(env: &pb::CommandEnvelope) {
    use tether_agent::{envelope, fuzzing};
    match envelope::verify(env, public_key(), INSTANCE_ID, AGENT_NOW_MS) {
        Ok(cmd) => {
            if let Some(sealed) = &cmd.secrets {
                let purpose = pb::seal::command_purpose(&cmd.command_id);
                let _ = pb::seal::open(node_key(), INSTANCE_ID, &purpose, sealed);
            }
            let _ = fuzzing::plan(
                &cmd.document_name,
                &cmd.document_content,
                &cmd.parameters_json,
            );
        }
        Err(_) => {
            let _ = envelope::claimed_command_id(env);
        }
    }
}

fn cancel(env: &pb::CommandEnvelope) {
    let _ = tether_agent::envelope::verify_cancel(env, public_key(), INSTANCE_ID, AGENT_NOW_MS);
}

fn association(env: &pb::AssociationEnvelope) {
    use tether_agent::{envelope, fuzzing};
    let Ok(a) = envelope::verify_association(env, public_key(), INSTANCE_ID) else {
        return;
    };
    let _ = fuzzing::plan(&a.document_name, &a.document_content, &a.parameters_json);
    for last_run_ms in [None, Some(AGENT_NOW_MS)] {
        let st = fuzzing::RunState {
            version: a.association_version.clone(),
            first_seen_ms: AGENT_NOW_MS,
            last_run_ms,
        };
        if let Ok(Some(due)) = fuzzing::next_due(&a, &st)
            && let Some(last) = last_run_ms
        {
            assert!(
                due > last,
                "association due at {due}, not after its last run {last}"
            );
        }
    }
}

fn signed(context: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut bytes = context.to_vec();
    bytes.extend_from_slice(payload);
    signing_key().sign(&bytes).as_ref().to_vec()
}

/// `poll` on a line, then a PollResponse as the coordinator sends it (the
/// corpus's envelopes carry real signatures under [`signing_key`]); or
/// `command`, `cancel`, `association` on a line, then the payload, which
/// the target signs as the coordinator would, so that the fuzzer reaches
/// what follows a good signature.
pub fn agent_envelope(data: &[u8]) {
    let (kind, rest) = split_line(data);
    match kind {
        b"command" => command(&pb::CommandEnvelope {
            payload: rest.to_vec(),
            signature: signed(b"", rest),
        }),
        b"cancel" => cancel(&pb::CommandEnvelope {
            payload: rest.to_vec(),
            signature: signed(pb::CANCEL_SIGNING_CONTEXT, rest),
        }),
        b"association" => association(&pb::AssociationEnvelope {
            payload: rest.to_vec(),
            signature: signed(pb::ASSOCIATION_SIGNING_CONTEXT, rest),
        }),
        _ => {
            let bytes = if kind == b"poll" { rest } else { data };
            let Ok(poll) = pb::PollResponse::decode(bytes) else {
                return;
            };
            for env in &poll.envelopes {
                command(env);
            }
            for env in &poll.cancels {
                cancel(env);
            }
            for env in poll.associations.iter().flat_map(|s| &s.associations) {
                association(env);
            }
            if let Some(t) = &poll.trust {
                let _ = tether_agent::envelope::verify_trust(t, public_key(), INSTANCE_ID);
            }
        }
    }
}
