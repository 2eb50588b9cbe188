//! The node's own policy: defence in depth on the node. Whatever the
//! coordinator signs, the node's owner can restrict what this node accepts —
//! documents by name, principals (the envelope's signed `requested_by`) by
//! name or ARN, and whether the two documents that run whatever commands
//! their sender passes (`AWS-RunShellScript`, `AWS-RunPowerShellScript`) may
//! run at all. A refused command is reported Failed with the reason and never
//! runs; an association run likewise.
//!
//! Written in `/etc/tether/agent.toml` as a `[policy]` table, or in a file
//! that table names (`[policy] file = "/etc/tether/node-policy.toml"`, the
//! same keys at its top). Pure: [`PolicyToml`] is what the file says,
//! [`NodePolicy::from_toml`] checks it (a pattern that can never match is a
//! typo, refused naming it), [`NodePolicy::check`] decides.
//!
//! Rules, in order (the first that refuses wins):
//! 1. a command with no principal (from a coordinator that predates
//!    `requested_by`, or an association created before it was recorded) is
//!    refused when any principal rule is set;
//! 2. `deny_principals`, then `allow_principals` (when present, the
//!    principal must match one);
//! 3. `deny_documents`, then `allow_documents` (likewise);
//! 4. `run_shell_script = false` refuses `AWS-RunShellScript` and
//!    `AWS-RunPowerShellScript`.
//!
//! Patterns take `*` (any run of characters) and `?` (one character).
//! Documents match their name exactly (SSM's names are case-sensitive). A
//! principal pattern starting `arn:` matches the whole ARN; any other matches
//! a user's name (the ARN's last `/` segment, so paths do not matter). IAM
//! user names are unique without regard to case, so principals match without
//! it. The root principal has no user name: it is named by its ARN,
//! `arn:aws:iam::*:root` (a user may be called `root`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The documents `run_shell_script = false` refuses: they run whatever
/// commands the sender passes.
pub const SHELL_DOCUMENTS: [&str; 2] = ["AWS-RunShellScript", "AWS-RunPowerShellScript"];

/// Longest pattern accepted (an ARN with a path is well under it).
const MAX_PATTERN: usize = 2048;

/// `[policy]` in agent.toml, or the top of the file it names.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyToml {
    /// A file holding the policy instead (only in agent.toml; absolute).
    pub file: Option<PathBuf>,
    pub allow_documents: Option<Vec<String>>,
    #[serde(default)]
    pub deny_documents: Vec<String>,
    pub allow_principals: Option<Vec<String>>,
    #[serde(default)]
    pub deny_principals: Vec<String>,
    pub run_shell_script: Option<bool>,
}

impl PolicyToml {
    fn has_rules(&self) -> bool {
        self.allow_documents.is_some()
            || !self.deny_documents.is_empty()
            || self.allow_principals.is_some()
            || !self.deny_principals.is_empty()
            || self.run_shell_script.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{source_name}: {key}: pattern {pattern:?} {why}")]
    BadPattern {
        source_name: String,
        key: &'static str,
        pattern: String,
        why: String,
    },
    #[error(
        "{source_name}: [policy] names file {file:?} and sets rules as well: keep the rules in one place"
    )]
    FileAndRules { source_name: String, file: PathBuf },
    #[error("{source_name}: [policy] file {file:?} must be an absolute path")]
    RelativeFile { source_name: String, file: PathBuf },
    #[error(
        "{source_name}: `file` belongs in agent.toml's [policy], not in the policy file itself"
    )]
    NestedFile { source_name: String },
}

/// A list of patterns, allow or deny.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rules {
    allow: Option<Vec<String>>,
    deny: Vec<String>,
}

impl Rules {
    fn is_set(&self) -> bool {
        self.allow.is_some() || !self.deny.is_empty()
    }
}

/// Why the node's policy refused a command or an association run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this node's policy ({source_name}) does not accept it: {why}")]
pub struct PolicyRefusal {
    pub source_name: String,
    pub why: String,
}

/// The policy, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePolicy {
    /// Where it was read (named in refusals and logs).
    source_name: String,
    documents: Rules,
    principals: Rules,
    run_shell_script: bool,
}

/// `*` and `?` glob; `fold` compares ASCII without case.
pub fn matches(pattern: &str, text: &str, fold: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let same = |a: char, b: char| {
        if fold {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    // The classic linear walk: remember the last `*` and where it resumed.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || (p[i] != '*' && same(p[i], t[j]))) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == '*' {
        i += 1;
    }
    i == p.len()
}

/// A user's name from its ARN (`arn:aws:iam::ACCOUNT:user/PATH/NAME`); None
/// for any other principal (root).
fn user_name(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let rest = resource.strip_prefix("user/")?;
    rest.rsplit('/').next()
}

fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl NodePolicy {
    /// The policy `t` describes, read from `source_name` (a path, with
    /// `[policy]` when it is agent.toml's table); None when it sets no rule
    /// at all. `in_agent_toml` says whether `file` may appear.
    pub fn from_toml(
        source_name: &str,
        t: &PolicyToml,
        in_agent_toml: bool,
    ) -> Result<Option<NodePolicy>, PolicyError> {
        if t.file.is_some() && !in_agent_toml {
            return Err(PolicyError::NestedFile {
                source_name: source_name.into(),
            });
        }
        if !t.has_rules() {
            return Ok(None);
        }
        let check = |key: &'static str, list: &[String], principals: bool| {
            for p in list {
                let bad = |why: &str| PolicyError::BadPattern {
                    source_name: source_name.into(),
                    key,
                    pattern: p.clone(),
                    why: why.into(),
                };
                if p.trim().is_empty() {
                    return Err(bad("is empty"));
                }
                if p.len() > MAX_PATTERN {
                    return Err(bad(&format!("is longer than {MAX_PATTERN} bytes")));
                }
                if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(bad("holds white space, which no name has"));
                }
                if principals && p.starts_with("arn:") {
                    // arn:PARTITION:iam::ACCOUNT:RESOURCE — six parts, IAM's service.
                    let parts: Vec<&str> = p.splitn(6, ':').collect();
                    if parts.len() != 6 || !matches(parts[2], "iam", true) {
                        return Err(bad(
                            "is not an IAM principal ARN (arn:aws:iam::ACCOUNT:user/NAME or arn:aws:iam::ACCOUNT:root)",
                        ));
                    }
                } else if principals && p.contains([':', '/']) {
                    return Err(bad(
                        "is neither a user name nor an ARN starting arn: (the root principal is arn:aws:iam::*:root)",
                    ));
                } else if !principals
                    && !p
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.:/*?".contains(c))
                {
                    return Err(bad(
                        "holds a character no document name has (letters, digits, _ - . : / and the wildcards * ?)",
                    ));
                }
            }
            Ok(())
        };
        check(
            "allow_documents",
            t.allow_documents.as_deref().unwrap_or_default(),
            false,
        )?;
        check("deny_documents", &t.deny_documents, false)?;
        check(
            "allow_principals",
            t.allow_principals.as_deref().unwrap_or_default(),
            true,
        )?;
        check("deny_principals", &t.deny_principals, true)?;
        Ok(Some(NodePolicy {
            source_name: source_name.into(),
            documents: Rules {
                allow: t.allow_documents.clone(),
                deny: t.deny_documents.clone(),
            },
            principals: Rules {
                allow: t.allow_principals.clone(),
                deny: t.deny_principals.clone(),
            },
            run_shell_script: t.run_shell_script.unwrap_or(true),
        }))
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Whether this node accepts `document` sent by `requested_by` (an ARN,
    /// empty when the envelope names none).
    pub fn check(&self, document: &str, requested_by: &str) -> Result<(), PolicyRefusal> {
        self.decide(document, requested_by)
            .map_err(|why| PolicyRefusal {
                source_name: self.source_name.clone(),
                why,
            })
    }

    fn decide(&self, document: &str, requested_by: &str) -> Result<(), String> {
        if self.principals.is_set() {
            if requested_by.is_empty() {
                return Err(format!(
                    "document {document} names no principal (sent by a coordinator that predates requested_by, \
                     or an association not re-saved since), and this node accepts only named principals"
                ));
            }
            let name = user_name(requested_by);
            let hit = |p: &String| {
                if p.starts_with("arn:") {
                    matches(p, requested_by, true)
                } else {
                    name.is_some_and(|n| matches(p, n, true))
                }
            };
            if let Some(p) = self.principals.deny.iter().find(|p| hit(p)) {
                return Err(format!(
                    "principal {requested_by} matches deny_principals {p:?}"
                ));
            }
            if let Some(allow) = &self.principals.allow
                && !allow.iter().any(hit)
            {
                return Err(format!(
                    "principal {requested_by} is not in allow_principals [{}]",
                    quoted(allow)
                ));
            }
        }
        if let Some(p) = self
            .documents
            .deny
            .iter()
            .find(|p| matches(p, document, false))
        {
            return Err(format!("document {document} matches deny_documents {p:?}"));
        }
        if let Some(allow) = &self.documents.allow
            && !allow.iter().any(|p| matches(p, document, false))
        {
            return Err(format!(
                "document {document} is not in allow_documents [{}]",
                quoted(allow)
            ));
        }
        if !self.run_shell_script && SHELL_DOCUMENTS.contains(&document) {
            return Err(format!(
                "document {document} runs arbitrary commands and run_shell_script = false"
            ));
        }
        Ok(())
    }
}

/// Where the policy lives, as agent.toml's `[policy]` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// No `[policy]` table, or one without rules: the node accepts what verifies.
    None,
    /// The rules are in agent.toml itself.
    Inline(NodePolicy),
    /// agent.toml names this file (absolute); it must exist and hold the policy.
    File(PathBuf),
}

/// Reads agent.toml's `[policy]` table (`config` names agent.toml in errors).
pub fn source(config: &Path, t: Option<&PolicyToml>) -> Result<PolicySource, PolicyError> {
    let Some(t) = t else {
        return Ok(PolicySource::None);
    };
    let name = format!("{} [policy]", config.display());
    if let Some(file) = &t.file {
        if t.has_rules() {
            return Err(PolicyError::FileAndRules {
                source_name: name,
                file: file.clone(),
            });
        }
        if !file.is_absolute() {
            return Err(PolicyError::RelativeFile {
                source_name: name,
                file: file.clone(),
            });
        }
        return Ok(PolicySource::File(file.clone()));
    }
    Ok(match NodePolicy::from_toml(&name, t, true)? {
        Some(p) => PolicySource::Inline(p),
        None => PolicySource::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
    const OPS_BOB: &str = "arn:aws:iam::123456789012:user/ops/bob";
    const ROOT: &str = "arn:aws:iam::123456789012:root";

    fn policy(text: &str) -> NodePolicy {
        let t: PolicyToml = toml::from_str(text).unwrap();
        NodePolicy::from_toml("node-policy.toml", &t, false)
            .unwrap()
            .expect("rules")
    }

    #[test]
    fn wildcards_match_as_globs() {
        for (p, t, want) in [
            ("*", "", true),
            ("*", "AWS-RunShellScript", true),
            ("AWS-*", "AWS-RunShellScript", true),
            ("AWS-*", "Acme-AWS-x", false),
            ("*Script", "AWS-RunShellScript", true),
            ("AWS-Run*Script", "AWS-RunPowerShellScript", true),
            ("AWS-Run?hellScript", "AWS-RunShellScript", true),
            ("AWS-Run?hellScript", "AWS-RunSShellScript", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("exact", "Exact", false),
            ("**", "x", true),
        ] {
            assert_eq!(matches(p, t, false), want, "{p} ~ {t}");
        }
        assert!(matches("ALICE", "alice", true));
    }

    #[test]
    fn the_rules_apply_in_order_and_name_what_refused() {
        let p = policy(
            r#"
            allow_documents = ["AWS-*", "Acme-*"]
            deny_documents = ["AWS-RunPowerShellScript"]
            allow_principals = ["alice", "ops-*", "arn:aws:iam::*:user/ops/*", "arn:aws:iam::*:root"]
            deny_principals = ["mallory"]
            run_shell_script = false
            "#,
        );
        assert_eq!(p.check("AWS-GatherSoftwareInventory", ALICE), Ok(()));
        assert_eq!(p.check("Acme-Deploy", ROOT), Ok(()));
        assert_eq!(p.check("Acme-Deploy", OPS_BOB), Ok(()));
        assert_eq!(
            p.check("Acme-Deploy", "arn:aws:iam::1:user/Ops-Carol"),
            Ok(())
        );
        let why = |doc: &str, by: &str| p.check(doc, by).unwrap_err().to_string();
        assert_eq!(
            why("AWS-RunShellScript", ALICE),
            "this node's policy (node-policy.toml) does not accept it: document AWS-RunShellScript runs arbitrary commands and run_shell_script = false"
        );
        assert!(why("AWS-RunPowerShellScript", ALICE).ends_with(
            "document AWS-RunPowerShellScript matches deny_documents \"AWS-RunPowerShellScript\""
        ));
        assert!(
            why("Other", ALICE)
                .ends_with("document Other is not in allow_documents [\"AWS-*\", \"Acme-*\"]")
        );
        assert!(why("Acme-Deploy", "arn:aws:iam::1:user/Mallory").ends_with(
            "principal arn:aws:iam::1:user/Mallory matches deny_principals \"mallory\""
        ),);
        assert!(
            why("Acme-Deploy", "arn:aws:iam::1:user/eve").contains(
                "principal arn:aws:iam::1:user/eve is not in allow_principals [\"alice\""
            )
        );
        // A principal rule refuses envelopes that name no one.
        assert!(why("Acme-Deploy", "").contains("names no principal"));
    }

    #[test]
    fn root_is_named_by_its_arn_and_a_user_called_root_is_a_user() {
        let p = policy(r#"allow_principals = ["root"]"#);
        assert!(p.check("X", ROOT).is_err());
        assert_eq!(p.check("X", "arn:aws:iam::1:user/root"), Ok(()));
        let p = policy(r#"deny_principals = ["arn:aws:iam::*:root"]"#);
        assert!(p.check("X", ROOT).is_err());
        assert_eq!(p.check("X", ALICE), Ok(()));
    }

    #[test]
    fn only_what_is_set_applies() {
        let p = policy("run_shell_script = false");
        assert_eq!(p.check("Acme-Deploy", ""), Ok(()));
        assert!(p.check("AWS-RunShellScript", "").is_err());
        let p = policy(r#"deny_documents = ["AWS-RunShellScript"]"#);
        assert_eq!(p.check("AWS-RunPowerShellScript", ALICE), Ok(()));
        // An empty allow list accepts nothing.
        let p = policy("allow_documents = []");
        assert!(p.check("AWS-RunShellScript", ALICE).is_err());
    }

    #[test]
    fn bad_policies_are_refused_naming_the_key_and_the_pattern() {
        let bad = |text: &str| {
            let t: PolicyToml = toml::from_str(text).unwrap();
            NodePolicy::from_toml("p.toml", &t, false)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad(r#"allow_documents = [""]"#),
            "p.toml: allow_documents: pattern \"\" is empty"
        );
        assert!(bad(r#"deny_documents = ["AWS RunShellScript"]"#).contains("white space"));
        assert!(bad(r#"deny_documents = ["AWS-Run{Shell}"]"#).contains("no document name has"));
        assert!(
            bad(r#"allow_principals = ["arn:aws:ssm::1:user/x"]"#).contains("IAM principal ARN")
        );
        assert!(bad(r#"deny_principals = ["user/alice"]"#).contains("neither a user name"));
        assert!(bad(r#"file = "/x""#).contains("belongs in agent.toml"));
        let e = toml::from_str::<PolicyToml>("allow_document = [\"x\"]").unwrap_err();
        assert!(e.to_string().contains("allow_document"), "{e}");
    }

    #[test]
    fn agent_toml_holds_the_rules_or_names_a_file() {
        let config = Path::new("/etc/tether/agent.toml");
        assert_eq!(source(config, None), Ok(PolicySource::None));
        assert_eq!(
            source(config, Some(&PolicyToml::default())),
            Ok(PolicySource::None)
        );
        let t = PolicyToml {
            file: Some("/etc/tether/node-policy.toml".into()),
            ..Default::default()
        };
        assert_eq!(
            source(config, Some(&t)),
            Ok(PolicySource::File("/etc/tether/node-policy.toml".into()))
        );
        let t = PolicyToml {
            file: Some("node-policy.toml".into()),
            ..Default::default()
        };
        assert!(
            source(config, Some(&t))
                .unwrap_err()
                .to_string()
                .contains("must be an absolute path")
        );
        let t = PolicyToml {
            file: Some("/p.toml".into()),
            run_shell_script: Some(false),
            ..Default::default()
        };
        assert!(
            source(config, Some(&t))
                .unwrap_err()
                .to_string()
                .contains("keep the rules in one place")
        );
        let t = PolicyToml {
            run_shell_script: Some(false),
            ..Default::default()
        };
        let Ok(PolicySource::Inline(p)) = source(config, Some(&t)) else {
            panic!("inline")
        };
        assert_eq!(p.source_name(), "/etc/tether/agent.toml [policy]");
    }
}
