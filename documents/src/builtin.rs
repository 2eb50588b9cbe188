//! The built-in documents, embedded in the binary: the AWS- ones with their
//! real AWS content so `AWS-RunShellScript` means here what it means in SSM,
//! and Tether's own `Tether-UpdateAgent`. They are parsed once, on first use,
//! by the same parser as operators' documents.

use std::sync::LazyLock;

use crate::document::Document;

/// Name and content of every built-in document.
const BUILTINS: [(&str, &str); 4] = [
    (
        "AWS-RunShellScript",
        include_str!("../builtin/AWS-RunShellScript.json"),
    ),
    (
        "AWS-RunPowerShellScript",
        include_str!("../builtin/AWS-RunPowerShellScript.json"),
    ),
    (
        "AWS-GatherSoftwareInventory",
        include_str!("../builtin/AWS-GatherSoftwareInventory.json"),
    ),
    (
        // Tether's own (AWS has AWS-UpdateSSMAgent, with these parameters).
        "Tether-UpdateAgent",
        include_str!("../builtin/Tether-UpdateAgent.json"),
    ),
];

const NAMES: [&str; 4] = [BUILTINS[0].0, BUILTINS[1].0, BUILTINS[2].0, BUILTINS[3].0];

/// Parsed once; a built-in that failed to parse would be missing here, and
/// the tests below make sure none does.
static PARSED: LazyLock<Vec<Document>> = LazyLock::new(|| {
    BUILTINS
        .iter()
        .filter_map(|(name, content)| Document::parse(name, content).ok())
        .collect()
});

/// The built-in document `name`, parsed.
pub fn builtin(name: &str) -> Option<Document> {
    PARSED.iter().find(|d| d.name == name).cloned()
}

/// The names of the built-in documents.
pub fn builtin_names() -> &'static [&'static str] {
    &NAMES
}

/// The text of the built-in document `name`, as `GetDocument` returns it.
pub fn builtin_content(name: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, content)| *content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses() {
        for (name, content) in BUILTINS {
            if let Err(e) = Document::parse(name, content) {
                panic!("built-in {name} does not parse: {e}");
            }
            let doc = builtin(name).expect("listed built-in is available");
            assert_eq!(doc.content, content);
            assert_eq!(builtin_content(name), Some(content));
        }
        assert_eq!(
            builtin_names(),
            [
                "AWS-RunShellScript",
                "AWS-RunPowerShellScript",
                "AWS-GatherSoftwareInventory",
                "Tether-UpdateAgent"
            ]
        );
        let update = builtin("Tether-UpdateAgent").expect("update document");
        let resolved = update
            .resolve_parameters(&Default::default())
            .expect("defaults resolve");
        let steps = update
            .plan(&resolved, crate::PlatformType::Linux)
            .expect("plans on Linux");
        assert_eq!(steps[0].action, crate::StepAction::UpdateAgent);
        assert_eq!(steps[0].inputs["version"], "");
        assert_eq!(steps[0].inputs["allowDowngrade"], "false");
        assert!(steps[0].skipped.is_none());
        let windows = update
            .plan(&resolved, crate::PlatformType::Windows)
            .expect("plans on Windows");
        assert!(windows[0].skipped.is_some(), "{:?}", windows[0]);
        let bad = [("allowDowngrade", "yes")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect();
        assert!(update.resolve_parameters(&bad).is_err());
        let inv = builtin("AWS-GatherSoftwareInventory").expect("inventory document");
        let params = [
            ("networkConfig", "Disabled"),
            ("windowsUpdates", "Disabled"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
        .collect();
        let resolved = inv.resolve_parameters(&params).expect("parameters resolve");
        let steps = inv
            .plan(&resolved, crate::PlatformType::Linux)
            .expect("plans on Linux");
        assert_eq!(steps[0].inputs["networkConfig"], "Disabled");
        assert_eq!(steps[0].inputs["applications"], "Enabled");
        assert!(builtin("AWS-RunAnsiblePlaybook").is_none());
    }
}
