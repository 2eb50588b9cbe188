//! Parameter references in a command's parameters, as SSM accepts them:
//! `{{ssm:NAME}}` (a String or StringList, resolved when the command is sent)
//! and `{{ssm-secure:NAME}}` (a SecureString), each with an optional
//! `:version` or `:label`.
//!
//! The command's history keeps the reference (the parameters as given), and
//! each reference with the version it resolved to ([`Pinned`]); only the
//! envelope's parameters carry a plain value. A `{{ssm-secure:…}}` reference
//! stays a reference in every stored parameter: its value, at the pinned
//! version, is sealed to each node when its envelope is made
//! (`core::trust`), and the agent substitutes it into the script in memory.
//! A sender needs `ssm:GetParameters` on every parameter referenced (and
//! `kms:Decrypt` on a SecureString's key): a refusal, or a parameter that
//! does not exist, stops the command before anything is stored.

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

pub use crate::core::trust::Pinned;

/// Checks the sender may read every referenced parameter and that each
/// exists, then answers the parameters with plain references replaced by
/// their values (secure ones stay), and every reference with the version
/// it resolved to.
pub async fn resolve(
    c: &Coordinator,
    op: &str,
    authority: &Authority,
    given: &BTreeMap<String, Vec<String>>,
) -> Result<(BTreeMap<String, Vec<String>>, Vec<Pinned>), ApiError> {
    let (values, pinned) = values(c, op, authority, given).await?;
    let mut out = given.clone();
    for v in out.values_mut().flatten() {
        for (text, value) in &values {
            if v.contains(text.as_str()) {
                *v = v.replace(text.as_str(), value);
            }
        }
    }
    Ok((out, pinned))
}

/// The checks of [`resolve`]; answers each plain reference's value (by its
/// text) and every reference pinned to its version.
async fn values(
    c: &Coordinator,
    op: &str,
    authority: &Authority,
    given: &BTreeMap<String, Vec<String>>,
) -> Result<(BTreeMap<String, String>, Vec<Pinned>), ApiError> {
    let refs = in_parameters(given);
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut pinned: Vec<Pinned> = Vec::new();
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
                    "{op}: {} references a parameter that cannot be read: {}",
                    r.text, e.message
                ),
            )
        })?;
        let is_secure = row.kind == "SecureString";
        if is_secure != r.secure {
            return Err(ApiError::new(
                "InvalidParameters",
                format!(
                    "{op}: {} names a {} parameter: use {{{{{}:{}}}}}",
                    r.text,
                    row.kind,
                    if is_secure { "ssm-secure" } else { "ssm" },
                    r.name
                ),
            ));
        }
        if is_secure {
            let k = row.key_id.as_deref().unwrap_or_default();
            authority.check("kms:Decrypt", &Resource::untagged(c.account.key_arn(k)))?;
        } else if !values.contains_key(&r.text) {
            values.insert(r.text.clone(), row.value.clone().unwrap_or_default());
        }
        if !pinned.iter().any(|p| p.reference == r.text) {
            pinned.push(Pinned {
                reference: r.text.clone(),
                name: r.name.clone(),
                version: row.version,
                secure: is_secure,
            });
        }
    }
    Ok((values, pinned))
}

/// What an association's run needs (the `ResolveReferences` agent call):
/// its references resolved now, as the principal it acts for, for a node
/// it reaches — plain values, and SecureString values sealed to the node
/// for `association/<id>/<version>`. Refusals say why.
pub async fn for_association_run(
    c: &Coordinator,
    instance: &tether_store::InstanceRow,
    association_id: &str,
    version: &str,
) -> Result<
    (
        BTreeMap<String, String>,
        Option<tether_proto::SealedSecrets>,
    ),
    ApiError,
> {
    let gone = || {
        ApiError::new(
            "AssociationDoesNotExist",
            format!("association {association_id} does not exist (deleted?)"),
        )
    };
    if !tether_ssm::ids::is_uuid(association_id) {
        return Err(gone());
    }
    let row = c
        .store
        .association(association_id)
        .await?
        .ok_or_else(gone)?;
    if row.association_version.to_string() != version {
        return Err(ApiError::new(
            "InvalidAssociationVersion",
            format!(
                "association {association_id} is at version {} now, not {version}: the node runs the new one once its set is updated",
                row.association_version
            ),
        ));
    }
    let targeted = crate::associations::Targeted::parse(row.clone())
        .map_err(|e| ApiError::new("InternalServerError", e))?;
    let tags = tether_ssm::target::tags_from_json(&instance.tags_json)
        .map_err(|e| ApiError::new("InternalServerError", e))?;
    if !targeted.reaches(&instance.instance_id, &tags) {
        return Err(ApiError::new(
            "AccessDeniedException",
            format!(
                "association {association_id} does not target instance {}",
                instance.instance_id
            ),
        ));
    }
    let given: BTreeMap<String, Vec<String>> = super::wire::stored(
        &format!("association {association_id}: parameters"),
        &row.resolved_json,
    )?;
    let authority = crate::authz::acting_for(c, &row.requested_by).await?;
    let (plain, pinned) = values(c, "ResolveReferences", &authority, &given).await?;
    let secure: Vec<Pinned> = pinned.into_iter().filter(|p| p.secure).collect();
    let purpose = tether_proto::seal::association_purpose(association_id, version);
    let sealed = c
        .seal_pinned(&instance.instance_id, &purpose, &secure)
        .await
        .map_err(|e| ApiError::new("InternalServerError", e.to_string()))?
        .map_err(|why| ApiError::new("InvalidParameters", why))?;
    Ok((plain, sealed))
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
