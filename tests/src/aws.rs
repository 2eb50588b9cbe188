//! The AWS side of the harness: the Python virtual environment with the real
//! aws CLI, boto3 and moto (created by `scripts/test.sh`), an access key issued
//! by a coordinator, and the environment that points AWS clients at the
//! coordinator's SSM-compatible HTTPS API and nowhere else.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use crate::Coordinator;

/// The virtual environment: `$TETHER_TEST_VENV`, else `~/.cache/tether-venv`.
/// A missing one is a failure, never a skip: `scripts/test.sh` creates it.
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("TETHER_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/tether-venv")
        });
    for tool in ["aws", "python3", "moto_server"] {
        assert!(
            dir.join("bin").join(tool).exists(),
            "{} has no bin/{tool}: run scripts/test.sh, which creates the virtual environment \
             (python3 -m venv DIR && DIR/bin/pip install awscli boto3 'moto[server]'), \
             or point TETHER_TEST_VENV at one",
            dir.display()
        );
    }
    dir
}

/// An issued access key and where to use it.
#[derive(Clone, Debug)]
pub struct AwsClient {
    pub endpoint: String,
    pub ca_bundle: PathBuf,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    pub venv: PathBuf,
}

impl AwsClient {
    /// Issues a key with `tether create-access-key` and writes the CA bundle
    /// from operator.json beside the coordinator's data.
    pub fn issue(coord: &Coordinator) -> AwsClient {
        let key = coord.json(&["create-access-key"]);
        let operator: Value = serde_json::from_str(
            &std::fs::read_to_string(coord.operator_json()).expect("operator.json"),
        )
        .expect("operator.json is JSON");
        let ca_bundle = coord.dir.with_extension("ca-bundle.pem");
        std::fs::write(
            &ca_bundle,
            operator["CaCertificate"].as_str().expect("CaCertificate"),
        )
        .expect("write the CA bundle");
        AwsClient {
            endpoint: operator["HttpEndpoint"]
                .as_str()
                .expect("HttpEndpoint")
                .to_string(),
            ca_bundle,
            access_key_id: key["AccessKey"]["AccessKeyId"]
                .as_str()
                .expect("AccessKeyId")
                .to_string(),
            secret_access_key: key["AccessKey"]["SecretAccessKey"]
                .as_str()
                .expect("SecretAccessKey")
                .to_string(),
            region: "us-east-1".to_string(),
            venv: venv(),
        }
    }

    /// A venv command with the AWS environment set and every ambient AWS
    /// setting (profiles, config files, real credentials) shut out.
    pub fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.venv.join("bin").join(tool));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key)
            .env("AWS_DEFAULT_REGION", &self.region)
            .env("AWS_CA_BUNDLE", &self.ca_bundle)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "");
        cmd
    }

    /// Runs `aws ssm ARGS --endpoint-url ... --output json`.
    pub fn aws(&self, args: &[&str]) -> Output {
        self.command("aws")
            .arg("ssm")
            .args(args)
            .args(["--endpoint-url", &self.endpoint, "--output", "json"])
            .output()
            .expect("run aws")
    }

    /// Runs an `aws ssm` verb that must succeed and returns its JSON.
    pub fn aws_json(&self, args: &[&str]) -> Value {
        crate::success_json(&format!("aws ssm {args:?}"), &self.aws(args))
    }
}

/// The aws CLI v2 (Debian's `awscli` package, installed by `scripts/test.sh`),
/// by its path: the PyPI aws CLI v1 in the virtual environment is another
/// `aws`. A missing one is a failure, never a skip.
pub const AWS_CLI_V2: &str = "/usr/bin/aws";

impl AwsClient {
    /// Runs `/usr/bin/aws ssm ARGS --endpoint-url ...` (aws CLI v2) with this
    /// key and nothing from the ambient AWS configuration, output as given.
    pub fn aws_v2(&self, args: &[&str]) -> Output {
        assert!(
            std::path::Path::new(AWS_CLI_V2).exists(),
            "{AWS_CLI_V2} is missing: run scripts/test.sh, which installs Debian's awscli package (aws CLI v2)"
        );
        let mut cmd = Command::new(AWS_CLI_V2);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key)
            .env("AWS_DEFAULT_REGION", &self.region)
            .env("AWS_CA_BUNDLE", &self.ca_bundle)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
            .arg("ssm")
            .args(args)
            .args(["--endpoint-url", &self.endpoint])
            .output()
            .expect("run aws CLI v2")
    }
}

/// Writes `toml` as the AWS bridge configuration (`aws.toml`) of the
/// coordinator that [`Coordinator::start`] will start in `dir`.
pub fn write_bridge_config(dir: &std::path::Path, toml: &str) {
    let data = dir.join("coord");
    std::fs::create_dir_all(&data).expect("create the data directory");
    std::fs::write(data.join("aws.toml"), toml).expect("write aws.toml");
}

/// An AWS shared credentials file in `dir` with `key` under `profile`, and an
/// empty AWS config file beside it: the environment that makes the standard
/// credential chain of a coordinator find exactly that key.
pub fn profile_env(dir: &std::path::Path, profile: &str, key: &AwsClient) -> Vec<(String, String)> {
    std::fs::create_dir_all(dir).expect("create the directory");
    let creds = dir.join("aws-credentials");
    std::fs::write(
        &creds,
        format!(
            "[{profile}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            key.access_key_id, key.secret_access_key
        ),
    )
    .expect("write the credentials file");
    let config = dir.join("aws-config");
    std::fs::write(&config, "").expect("write the config file");
    vec![
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            creds.display().to_string(),
        ),
        ("AWS_CONFIG_FILE".into(), config.display().to_string()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

/// moto's server (`moto_server` from the virtual environment) on a loopback
/// port; killed when dropped.
pub struct Moto {
    pub endpoint: String,
    child: std::process::Child,
}

impl Moto {
    pub fn start() -> Moto {
        let venv = venv();
        // The kernel picks a free port; it is released just before moto binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        crate::wait_for(
            "moto_server to listen",
            std::time::Duration::from_secs(30),
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// Runs Python `code` with boto3's `ssm` client for this server bound to
    /// the name `ssm`; returns what it prints as JSON.
    pub fn python(&self, code: &str) -> Value {
        let prelude = format!(
            "import boto3, json\nssm = boto3.client('ssm', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='testing', aws_secret_access_key='testing')\n",
            self.endpoint
        );
        let out = Command::new(venv().join("bin/python3"))
            .arg("-c")
            .arg(format!("{prelude}{code}"))
            .output()
            .expect("run python3");
        crate::success_json("python against moto", &out)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
