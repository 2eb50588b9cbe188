//! The Rust AWS SDK (`aws-sdk-ssm`, rustls on ring) against the coordinator's
//! SSM-compatible API, with a key from `tether create-access-key`.

use std::time::{Duration, SystemTime};

use aws_sdk_ssm::client::Waiters;
use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use tether_tests::aws::AwsClient;
use tether_tests::{Agent, Coordinator};

fn client(aws: &AwsClient, secret: &str, clock: Option<SystemTime>) -> aws_sdk_ssm::Client {
    let pem = std::fs::read(&aws.ca_bundle).expect("CA bundle");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(TrustStore::empty().with_pem_certificate(pem))
                .build()
                .expect("TLS context"),
        )
        .build_https();
    let mut cfg = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(aws.region.clone()))
        .endpoint_url(&aws.endpoint)
        .credentials_provider(Credentials::new(
            &aws.access_key_id,
            secret,
            None,
            None,
            "tether-test",
        ))
        .retry_config(RetryConfig::disabled())
        .http_client(http);
    if let Some(t) = clock {
        cfg = cfg.time_source(aws_smithy_async::time::StaticTimeSource::new(t));
    }
    aws_sdk_ssm::Client::from_conf(cfg.build())
}

fn code<E, R>(e: aws_sdk_ssm::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ssm::error::ProvideErrorMetadata,
{
    e.code().unwrap_or("(none)").to_string()
}

#[test]
fn the_rust_sdk_sends_a_command_and_reads_its_output() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let aws = AwsClient::issue(&coord);
    let node = Agent::start(tmp.path(), "sdk1", &coord);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ssm = client(&aws, &aws.secret_access_key, None);
        let info = ssm.describe_instance_information().send().await.unwrap();
        let list = info.instance_information_list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].instance_id(), Some(node.instance_id.as_str()));
        assert_eq!(list[0].ping_status().map(|p| p.as_str()), Some("Online"));

        let sent = ssm
            .send_command()
            .instance_ids(&node.instance_id)
            .document_name("AWS-RunShellScript")
            .parameters(
                "commands",
                vec!["echo sdk-$AWS_SSM_INSTANCE_ID".to_string()],
            )
            .send()
            .await
            .unwrap();
        let command_id = sent.command().and_then(|c| c.command_id()).unwrap();
        ssm.wait_until_command_executed()
            .command_id(command_id)
            .instance_id(&node.instance_id)
            .wait(Duration::from_secs(60))
            .await
            .unwrap();
        let inv = ssm
            .get_command_invocation()
            .command_id(command_id)
            .instance_id(&node.instance_id)
            .send()
            .await
            .unwrap();
        assert_eq!(
            inv.standard_output_content(),
            Some(format!("sdk-{}\n", node.instance_id).as_str())
        );
        let listed = ssm
            .list_command_invocations()
            .command_id(command_id)
            .details(true)
            .send()
            .await
            .unwrap();
        let plugins = listed.command_invocations()[0].command_plugins();
        assert_eq!(plugins[0].status().map(|s| s.as_str()), Some("Success"));

        // A wrong secret and a clock ten minutes slow are refused with AWS's codes.
        let wrong = client(&aws, "not-the-secret", None);
        let e = wrong.list_commands().send().await.unwrap_err();
        assert_eq!(code(e), "InvalidSignatureException");
        let slow = client(
            &aws,
            &aws.secret_access_key,
            Some(SystemTime::now() - Duration::from_secs(600)),
        );
        let e = slow.list_commands().send().await.unwrap_err();
        assert_eq!(code(e), "InvalidSignatureException");
        // A model rule the SDK does not check client-side is checked by the coordinator.
        let e = ssm
            .list_commands()
            .command_id("not-a-uuid")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(e), "ValidationException");
    });
}
