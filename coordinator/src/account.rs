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
