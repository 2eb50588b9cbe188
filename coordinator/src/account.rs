//! The account a coordinator (and every replica on its database) is: the
//! 12-digit ID and the region that AWS-shaped ARNs name. Pure.

/// The account's identity in ARNs: a 12-digit ID made on first start and
/// shared by every replica, and the region the coordinator is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub region: String,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            id: "000000000000".into(),
            region: DEFAULT_REGION.into(),
        }
    }
}

pub const DEFAULT_REGION: &str = "us-east-1";

impl Account {
    /// `arn:aws:iam::ACCOUNT:user/PATH/NAME`.
    pub fn user_arn(&self, path: &str, name: &str) -> String {
        format!("arn:aws:iam::{}:user{}{name}", self.id, path)
    }

    /// The root principal's ARN.
    pub fn root_arn(&self) -> String {
        format!("arn:aws:iam::{}:root", self.id)
    }

    /// `arn:aws:ssm:REGION:ACCOUNT:TYPE/ID`.
    pub fn ssm_arn(&self, kind: &str, id: &str) -> String {
        format!("arn:aws:ssm:{}:{}:{kind}/{id}", self.region, self.id)
    }

    /// A parameter's ARN: `…:parameter/a/b` for `/a/b` and `…:parameter/name`
    /// for `name`, as AWS writes them; a `:version` or `:label` selector
    /// after the name is not part of it (names hold no `:`).
    pub fn parameter_arn(&self, name: &str) -> String {
        let name = name.split_once(':').map_or(name, |(n, _)| n);
        self.ssm_arn("parameter", name.strip_prefix('/').unwrap_or(name))
    }

    /// A SecureString key's ARN (`arn:aws:kms:REGION:ACCOUNT:alias/NAME`),
    /// as `kms:Decrypt` policies name it.
    pub fn key_arn(&self, key_id: &str) -> String {
        format!("arn:aws:kms:{}:{}:{key_id}", self.region, self.id)
    }

    /// An instance's ARN: `managed-instance/mi-…` for Tether's nodes,
    /// EC2's `instance/i-…` for the AWS bridge's.
    pub fn instance_arn(&self, id: &str) -> String {
        if id.starts_with("i-") {
            format!("arn:aws:ec2:{}:{}:instance/{id}", self.region, self.id)
        } else {
            self.ssm_arn("managed-instance", id)
        }
    }
}
