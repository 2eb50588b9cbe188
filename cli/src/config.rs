//! `operator.json`: what `tether serve` writes for the CLI (its endpoints, its
//! CA, the operator token), and the user-data snippet the CLI prints from it.
//!
//! The coordinator writes this file and the CLI reads it; this crate owns
//! its shape so that the two cannot disagree.

use serde::{Deserialize, Serialize};

/// `operator.json`: everything the CLI needs to reach this coordinator as an administrator.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperatorConfig {
    pub endpoint: String,
    pub http_endpoint: String,
    pub ca_certificate: String,
    pub ca_pin: String,
    pub token: String,
    /// The endpoints under the first `--advertise` name, as nodes reach them
    /// (the install snippet uses these); the local ones when none was given.
    #[serde(default)]
    pub advertised_endpoint: String,
    #[serde(default)]
    pub advertised_http_endpoint: String,
    /// The account's 12-digit ID and the region, as ARNs name them.
    #[serde(default)]
    pub account_id: String,
    #[serde(default)]
    pub region: String,
}

/// Quotes `s` for a POSIX shell single-quoted string.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The user-data snippet: fetch the CA without trust, accept it only if it
/// hashes to the pin, then fetch the install script trusting only that CA and
/// run it with the activation.
pub fn user_data_snippet(
    http_endpoint: &str,
    ca_pin: &str,
    activation_id: &str,
    code: &str,
) -> String {
    let base = sh_quote(http_endpoint);
    let pin = sh_quote(ca_pin);
    format!(
        "#!/bin/sh\n\
         # Tether: install, register and start the agent (user-data or post-boot script; as root).\n\
         set -e\n\
         u={base}; pin={pin}; d=$(mktemp -d)\n\
         if command -v curl >/dev/null; then k='curl -fsSk'; t=\"curl -fsS --cacert $d/ca.pem\"\n\
         else k='wget -qO- --no-check-certificate'; t=\"wget -qO- --ca-certificate=$d/ca.pem\"; fi\n\
         $k \"$u/ca.pem\" > \"$d/ca.pem\"\n\
         [ \"sha256:$(sed '/-----/d' \"$d/ca.pem\" | base64 -d | sha256sum | cut -d' ' -f1)\" = \"$pin\" ] || {{ echo \"tether: the coordinator's CA does not match $pin\" >&2; exit 1; }}\n\
         $t \"$u/install.sh\" > \"$d/install.sh\"\n\
         sh \"$d/install.sh\" --id {} --code {}\n\
         rm -rf \"$d\"\n",
        sh_quote(activation_id),
        sh_quote(code)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_quotes_what_it_is_given() {
        let s = user_data_snippet("https://h:8444", "sha256:00", "id'x", "code");
        assert!(s.contains(r"--id 'id'\''x' --code 'code'"), "{s}");
        assert!(s.starts_with("#!/bin/sh\n"));
    }
}
