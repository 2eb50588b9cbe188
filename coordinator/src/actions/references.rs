//! Parameter references in a command's parameters, as SSM accepts them:
//! `{{ssm:NAME}}` (a String or StringList, resolved when the command is sent)
//! and `{{ssm-secure:NAME}}` (a SecureString), each with an optional
//! `:version` or `:label`.
//!
//! The command's history keeps the reference (the parameters as given);
//! only the envelope's parameters carry a plain value. A sender needs
//! `ssm:GetParameters` on every parameter referenced (and `kms:Decrypt` on a
//! SecureString's key): a refusal, or a parameter that does not exist, stops
//! the command before anything is stored.
//!
//! Not built yet: delivering a SecureString's value encrypted to the node
//! (the agent key delivery of issue 15); a `{{ssm-secure:…}}` reference is
//! refused, after the checks above, with a named error.

use std::collections::BTreeMap;

use tether_ssm::ApiError;

use super::parameters;
use crate::authz::{Authority, Resource};
use crate::core::Coordinator;

/// One `{{ssm:…}}` or `{{ssm-secure:…}}` in a parameter value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The reference as written, braces and all.
    pub text: String,
    pub secure: bool,
    /// The parameter's name, without its selector.
    pub name: String,
    pub selector: Option<String>,
}

/// Every reference in `value`, in order.
pub fn find(value: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let inner = after[..end].trim();
        let parsed = if let Some(n) = inner.strip_prefix("ssm-secure:") {
            Some((true, n))
        } else {
            inner.strip_prefix("ssm:").map(|n| (false, n))
        };
        if let Some((secure, n)) = parsed {
            let (name, selector) = parameters::split_selector(n.trim());
            out.push(Reference {
                text: rest[start..start + 2 + end + 2].to_string(),
                secure,
                name: name.to_string(),
                selector: selector.map(str::to_string),
            });
        }
        rest = &after[end + 2..];
    }
    out
}

/// Every reference in a command's parameters.
pub fn in_parameters(given: &BTreeMap<String, Vec<String>>) -> Vec<Reference> {
    given.values().flatten().flat_map(|v| find(v)).collect()
}

/// A plain reference resolved: the parameter's name and the version it
/// resolved to.
pub type Resolved = (String, i64);

/// Checks the sender may read every referenced parameter and that each
/// exists, then answers the parameters with plain references replaced by
/// their values, and the versions they resolved to. A SecureString
/// reference is refused (see the module's note).
pub async fn resolve(
    c: &Coordinator,
    authority: &Authority,
    given: &BTreeMap<String, Vec<String>>,
) -> Result<(BTreeMap<String, Vec<String>>, Vec<Resolved>), ApiError> {
    let refs = in_parameters(given);
    if refs.is_empty() {
        return Ok((given.clone(), Vec::new()));
    }
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut versions = Vec::new();
    for r in &refs {
        authority.check(
            "ssm:GetParameters",
            &Resource::untagged(c.account.parameter_arn(&r.name)),
        )?;
        let sel = parameters::selector(r.selector.as_deref());
        let row = parameters::pick(c, &r.name, &sel).await?.map_err(|e| {
            ApiError::new(
                "InvalidParameters",
                format!(
                    "SendCommand: {} references a parameter that cannot be read: {}",
                    r.text, e.message
                ),
            )
        })?;
        let is_secure = row.kind == "SecureString";
        if is_secure != r.secure {
            return Err(ApiError::new(
                "InvalidParameters",
                format!(
                    "SendCommand: {} names a {} parameter: use {{{{{}:{}}}}}",
                    r.text,
                    row.kind,
                    if is_secure { "ssm-secure" } else { "ssm" },
                    r.name
                ),
            ));
        }
        if is_secure {
            if let Some(k) = &row.key_id {
                authority.check("kms:Decrypt", &Resource::untagged(c.account.key_arn(k)))?;
            }
            return Err(ApiError::new(
                "UnsupportedParameterType",
                format!(
                    "SendCommand: {}: this coordinator cannot yet deliver SecureString values to nodes (they would have to travel encrypted to each node's own key); pass it by other means for now",
                    r.text
                ),
            ));
        }
        if !values.contains_key(&r.text) {
            values.insert(r.text.clone(), row.value.clone().unwrap_or_default());
            versions.push((r.name.clone(), row.version));
        }
    }
    let mut out = given.clone();
    for v in out.values_mut().flatten() {
        for (text, value) in &values {
            if v.contains(text.as_str()) {
                *v = v.replace(text.as_str(), value);
            }
        }
    }
    versions.sort();
    versions.dedup();
    Ok((out, versions))
}

/// Refuses a command with parameter references to a bridged AWS instance:
/// AWS cannot read Tether's parameters.
pub fn refuse_bridged(
    given: &BTreeMap<String, Vec<String>>,
    instances: &[String],
) -> Result<(), ApiError> {
    let refs = in_parameters(given);
    let (Some(r), Some(i)) = (refs.first(), instances.iter().find(|i| i.starts_with("i-"))) else {
        return Ok(());
    };
    Err(ApiError::new(
        "InvalidParameters",
        format!(
            "SendCommand: instance {i} is managed by AWS through the bridge, and AWS cannot read Tether's parameters ({}): send commands that reference parameters to Tether's own nodes",
            r.text
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_with_their_selectors() {
        let r = find("join -p {{ssm-secure:/adjoin/password}} -u {{ ssm:/adjoin/user:3 }} {{x}}");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].text, "{{ssm-secure:/adjoin/password}}");
        assert!(r[0].secure);
        assert_eq!(r[0].name, "/adjoin/password");
        assert_eq!(r[0].selector, None);
        assert_eq!(r[1].text, "{{ ssm:/adjoin/user:3 }}");
        assert!(!r[1].secure);
        assert_eq!(r[1].selector.as_deref(), Some("3"));
        assert!(find("no references {{ here").is_empty());
        assert!(find("{{ssmx:/a}}").is_empty());
    }
}
