//! One door for every request: the same bad request gets the same error
//! type and message whether it came over the operator gRPC channel (the
//! tether CLI's) or over the SSM-compatible HTTPS API (the aws CLI's),
//! because both transports hand the bytes to the one action path.

use tether_tests::Coordinator;
use tether_tests::aws::AwsClient;
use tether_tests::raw;

/// (operation, body, the error type expected on both transports).
const BAD: &[(&str, &str, &str)] = &[
    ("SendCommand", r#"{}"#, "ValidationException"),
    (
        "SendCommand",
        r#"{"DocumentName":"AWS-RunShellScript","InstanceIds":["mi-0123456789abcdef0"],"Comment":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
        "ValidationException",
    ),
    (
        "SendCommand",
        r#"{"DocumentName":"AWS-RunShellScript","InstanceIds":["not-an-instance"]}"#,
        "ValidationException",
    ),
    (
        "SendCommand",
        r#"{"DocumentName":"AWS-RunShellScript","InstanceIds":["mi-0123456789abcdef0"],"MaxConcurrency":"0"}"#,
        "ValidationException",
    ),
    (
        "SendCommand",
        r#"{"DocumentName":"AWS-RunShellScript","InstanceIds":["mi-0123456789abcdef0"],"TimeoutSeconds":5}"#,
        "ValidationException",
    ),
    (
        "SendCommand",
        r#"{"DocumentName":42,"InstanceIds":["mi-0123456789abcdef0"]}"#,
        "SerializationException",
    ),
    ("SendCommand", r#"{not json"#, "SerializationException"),
    ("SendCommand", r#"[1, 2]"#, "SerializationException"),
    (
        "SendCommand",
        r#"{"DocumentName":"AWS-RunShellScript","Targets":[{"Key":"Environment","Values":["lab"]}]}"#,
        "InvalidTarget",
    ),
    (
        "SendCommand",
        r#"{"DocumentName":"No-Such-Document","InstanceIds":["mi-0123456789abcdef0"]}"#,
        "InvalidDocument",
    ),
    (
        "GetCommandInvocation",
        r#"{"CommandId":"8d0d0b5f-6a5c-4f2e-9b1a-2c3d4e5f6a7b","InstanceId":"mi-0123456789abcdef0"}"#,
        "InvocationDoesNotExist",
    ),
    (
        "ListCommands",
        r#"{"MaxResults":0,"CommandId":"nope"}"#,
        "ValidationException",
    ),
    (
        "CreateActivation",
        r#"{"IamRole":"r","RegistrationLimit":5000}"#,
        "ValidationException",
    ),
    (
        "CreateActivation",
        r#"{"IamRole":"r","ExpirationDate":"yesterday"}"#,
        "SerializationException",
    ),
    (
        "DescribeInstanceInformation",
        r#"{"MaxResults":2}"#,
        "ValidationException",
    ),
    (
        "CreateDocument",
        r#"{"Name":"My-Doc","Content":"{\"schemaVersion\":\"2.2\"}"}"#,
        "InvalidDocumentContent",
    ),
    (
        "ListInventoryEntries",
        r#"{"InstanceId":"mi-0123456789abcdef0","TypeName":"Software"}"#,
        "ValidationException",
    ),
    ("FlyToTheMoon", r#"{}"#, "UnknownOperationException"),
];

#[test]
fn the_same_bad_request_gets_the_same_answer_on_every_transport() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let key = AwsClient::issue(&coord);
    let requests: Vec<(&str, &[u8])> = BAD.iter().map(|(op, b, _)| (*op, b.as_bytes())).collect();
    let over_https = raw::https(&key, &requests);
    assert_eq!(over_https.len(), BAD.len());
    for ((op, body, kind), https) in BAD.iter().zip(over_https) {
        let grpc = raw::grpc(&coord, op, body.as_bytes());
        let Err((grpc_kind, grpc_message)) = &grpc else {
            panic!("{op} {body}: accepted over gRPC: {grpc:?}");
        };
        assert_eq!(grpc_kind, kind, "{op} {body}: {grpc_message}");
        assert!(!grpc_message.is_empty(), "{op} {body}: no message");
        assert_eq!(
            https, grpc,
            "{op} {body}: HTTPS and gRPC answer differently"
        );
    }
}

#[test]
fn tethers_own_operations_stay_off_the_https_api() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let key = AwsClient::issue(&coord);
    let answers = raw::https(
        &key,
        &[
            ("CreateAccessKey", b"{}"),
            (
                "ListInventoryChanges",
                br#"{"InstanceId":"mi-0123456789abcdef0"}"#,
            ),
        ],
    );
    for a in answers {
        let Err((kind, _)) = a else {
            panic!("served over HTTPS: {a:?}");
        };
        assert_eq!(kind, "UnknownOperationException");
    }
    // The same calls are the operator's, over gRPC.
    assert!(raw::grpc(&coord, "ListAccessKeys", b"").is_ok());
}
