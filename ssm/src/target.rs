//! Which instances a command or an association reaches: SSM's `Targets`
//! (`InstanceIds`, `tag:KEY`, `tag-key`; `InstanceIds` with `*` for every
//! instance) and the legacy `InstanceIds` / `InstanceId` members, as one
//! type with one [`Target::matches`], so that SendCommand and associations
//! can never disagree about what a target selects.

use std::fmt;

use crate::ApiError;

/// One target, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `Key=InstanceIds,Values=...`: these instances.
    InstanceIds(Vec<String>),
    /// `Key=InstanceIds,Values=*`: every instance.
    AllInstances,
    /// `Key=tag:KEY,Values=...`: instances whose tag KEY has one of the values.
    Tag { key: String, values: Vec<String> },
    /// `Key=tag-key,Values=...`: instances carrying one of these tag keys.
    TagKey(Vec<String>),
}

/// A tag as instances carry it.
pub type Tag = (String, String);

impl Target {
    /// Parses one `{Key, Values}` pair as SSM accepts it (the key
    /// `InstanceIds` in any case, as the tutorial writes `instanceids`).
    pub fn parse(key: &str, values: &[String]) -> Result<Target, ApiError> {
        let bad = |why: String| ApiError::new("InvalidTarget", why);
        if values.is_empty() {
            return Err(bad(format!("target {key:?} needs at least one value")));
        }
        if key.eq_ignore_ascii_case("InstanceIds") {
            if values.iter().any(|v| v == "*") {
                return if values.len() == 1 {
                    Ok(Target::AllInstances)
                } else {
                    Err(bad(
                        "target InstanceIds: * stands for every instance and cannot be listed with others"
                            .into(),
                    ))
                };
            }
            if let Some(v) = values.iter().find(|v| !crate::ids::is_instance_id(v)) {
                return Err(bad(format!(
                    "target InstanceIds: {v:?} is not an instance ID (mi- or i- and hex digits)"
                )));
            }
            return Ok(Target::InstanceIds(values.to_vec()));
        }
        if key == "tag-key" {
            return Ok(Target::TagKey(values.to_vec()));
        }
        match key.strip_prefix("tag:") {
            Some(k) if !k.is_empty() => Ok(Target::Tag {
                key: k.to_string(),
                values: values.to_vec(),
            }),
            _ => Err(bad(format!(
                "target key {key:?} must be InstanceIds, tag:<name> or tag-key"
            ))),
        }
    }

    /// Whether an instance with this ID and these tags is selected.
    pub fn matches(&self, instance_id: &str, tags: &[Tag]) -> bool {
        match self {
            Target::InstanceIds(ids) => ids.iter().any(|id| id == instance_id),
            Target::AllInstances => true,
            Target::Tag { key, values } => tags.iter().any(|(k, v)| k == key && values.contains(v)),
            Target::TagKey(keys) => tags.iter().any(|(k, _)| keys.contains(k)),
        }
    }

    /// The instance IDs it names outright (`InstanceIds`), which exist
    /// whether or not any instance has them.
    pub fn named_ids(&self) -> &[String] {
        match self {
            Target::InstanceIds(ids) => ids,
            _ => &[],
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::InstanceIds(ids) => write!(f, "InstanceIds={}", ids.join(",")),
            Target::AllInstances => write!(f, "InstanceIds=*"),
            Target::Tag { key, values } => write!(f, "tag:{key}={}", values.join(",")),
            Target::TagKey(keys) => write!(f, "tag-key={}", keys.join(",")),
        }
    }
}

/// Targets as stored, in SSM's JSON (`[{"Key": ..., "Values": [...]}]`).
pub fn targets_from_json(json: &str) -> Result<Vec<Target>, String> {
    let wire: Vec<crate::input::Target> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    wire.iter()
        .map(|t| {
            Target::parse(
                t.key.as_deref().unwrap_or(""),
                t.values.as_deref().unwrap_or(&[]),
            )
            .map_err(|e| e.message)
        })
        .collect()
}

/// Tags as stored, in SSM's JSON (`[{"Key": ..., "Value": ...}]`).
pub fn tags_from_json(json: &str) -> Result<Vec<Tag>, String> {
    let wire: Vec<crate::input::Tag> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(wire.into_iter().map(|t| (t.key, t.value)).collect())
}

/// Whether any of `targets` selects the instance.
pub fn any_matches(targets: &[Target], instance_id: &str, tags: &[Tag]) -> bool {
    targets.iter().any(|t| t.matches(instance_id, tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parsing_names_what_is_wrong() {
        assert_eq!(
            Target::parse("instanceids", &s(&["mi-0123456789abcdef0"])).unwrap(),
            Target::InstanceIds(s(&["mi-0123456789abcdef0"]))
        );
        assert_eq!(
            Target::parse("InstanceIds", &s(&["*"])).unwrap(),
            Target::AllInstances
        );
        assert_eq!(
            Target::parse("tag:Env", &s(&["lab"])).unwrap(),
            Target::Tag {
                key: "Env".into(),
                values: s(&["lab"])
            }
        );
        assert_eq!(
            Target::parse("tag-key", &s(&["Env"])).unwrap(),
            Target::TagKey(s(&["Env"]))
        );
        for (key, values, fragment) in [
            ("tag:", &["x"][..], "must be InstanceIds"),
            ("Environment", &["x"], "must be InstanceIds"),
            ("tag:Env", &[], "at least one value"),
            ("InstanceIds", &["not-an-id"], "is not an instance ID"),
            (
                "InstanceIds",
                &["*", "mi-0123456789abcdef0"],
                "cannot be listed",
            ),
        ] {
            let e = Target::parse(key, &s(values)).unwrap_err();
            assert_eq!(e.kind, "InvalidTarget");
            assert!(e.message.contains(fragment), "{key}: {}", e.message);
        }
    }

    #[test]
    fn one_rule_for_what_a_target_selects() {
        let tags = vec![("Env".to_string(), "lab".to_string())];
        let id = "mi-0123456789abcdef0";
        for (target, want) in [
            (Target::InstanceIds(s(&[id])), true),
            (Target::InstanceIds(s(&["mi-00000000000000000"])), false),
            (Target::AllInstances, true),
            (
                Target::Tag {
                    key: "Env".into(),
                    values: s(&["prod", "lab"]),
                },
                true,
            ),
            (
                Target::Tag {
                    key: "Env".into(),
                    values: s(&["prod"]),
                },
                false,
            ),
            (
                Target::Tag {
                    key: "Role".into(),
                    values: s(&["lab"]),
                },
                false,
            ),
            (Target::TagKey(s(&["Env"])), true),
            (Target::TagKey(s(&["Role"])), false),
        ] {
            assert_eq!(target.matches(id, &tags), want, "{target}");
        }
        assert!(!Target::TagKey(s(&["Env"])).matches(id, &[]));
    }

    #[test]
    fn stored_targets_and_tags_read_back_or_say_why_not() {
        assert_eq!(
            targets_from_json(
                r#"[{"Key":"tag:Env","Values":["lab"]},{"Key":"instanceids","Values":["*"]}]"#
            )
            .unwrap(),
            vec![
                Target::Tag {
                    key: "Env".into(),
                    values: s(&["lab"])
                },
                Target::AllInstances
            ]
        );
        assert!(targets_from_json("{").is_err());
        assert!(targets_from_json(r#"[{"Key":"bogus","Values":["x"]}]"#).is_err());
        assert_eq!(
            tags_from_json(r#"[{"Key":"Env","Value":"lab"}]"#).unwrap(),
            vec![("Env".to_string(), "lab".to_string())]
        );
        assert!(tags_from_json(r#"[{"Key":"Env"}]"#).is_err());
    }
}
