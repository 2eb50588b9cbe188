//! Named profiles: several coordinators from one CLI, as the aws CLI's
//! `~/.aws/config` holds several accounts. The file (`$TETHER_CONFIG_FILE`,
//! else `~/.config/tether/config`) is INI as the aws CLI's:
//!
//! ```ini
//! [default]
//! operator_config = /var/lib/tether/operator.json
//!
//! [profile lab]
//! operator_config = ~/lab/operator.json
//! output = text
//! cli_read_timeout = 30
//! ```
//!
//! `--profile NAME`, else `$TETHER_PROFILE`, names the profile; a named
//! profile that the file does not have is refused as the aws CLI refuses it.
//! This module reads the file and nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::errors::{CliError, EXIT_GENERAL};

/// The settings a profile may hold.
pub const SETTINGS: [&str; 5] = [
    "operator_config",
    "output",
    "cli_read_timeout",
    "cli_connect_timeout",
    "color",
];

/// One profile's settings, by name.
pub type Profile = BTreeMap<String, String>;

/// Where the profiles file is: `$TETHER_CONFIG_FILE`, else `~/.config/tether/config`.
pub fn config_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TETHER_CONFIG_FILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/tether/config"))
}

/// Every profile in INI `text`: `[default]`, `[profile NAME]` or `[NAME]`
/// sections of `key = value` lines; `#` and `;` start comments.
pub fn parse(path: &Path, text: &str) -> Result<BTreeMap<String, Profile>, CliError> {
    let mut out: BTreeMap<String, Profile> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            let name = section
                .strip_prefix("profile ")
                .map(str::trim)
                .unwrap_or(section);
            out.entry(name.to_owned()).or_default();
            current = Some(name.to_owned());
            continue;
        }
        let bad = |why: &str| {
            CliError::config(format!(
                "Unable to parse config file: {} (line {}: {why})",
                path.display(),
                n + 1
            ))
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad("expected `key = value`"));
        };
        let Some(section) = &current else {
            return Err(bad("a setting before any [profile] section"));
        };
        out.entry(section.clone())
            .or_default()
            .insert(key.trim().to_owned(), value.trim().to_owned());
    }
    Ok(out)
}

/// The profile in force: the one `named` (by `--profile` or
/// `$TETHER_PROFILE`), which must exist, else `[default]` if the file has
/// one, else none.
pub fn select(named: Option<&str>) -> Result<Option<(String, Profile)>, CliError> {
    let file = config_file();
    let profiles = match &file {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::config(format!(
                    "Unable to read config file {}: {e}",
                    path.display()
                ))
            })?;
            parse(path, &text)?
        }
        _ => BTreeMap::new(),
    };
    match named {
        Some(name) => match profiles.get(name) {
            Some(p) => Ok(Some((name.to_owned(), p.clone()))),
            // The aws CLI's ProfileNotFound, a general error for it.
            None => Err(CliError::Configuration {
                message: format!("The config profile ({name}) could not be found"),
                exit: EXIT_GENERAL,
            }),
        },
        None => Ok(profiles
            .get("default")
            .map(|p| ("default".to_owned(), p.clone()))),
    }
}

/// `~/` at the start of a path is the home directory.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_read_as_the_aws_cli_reads_its_config() {
        let text = "# coordinators\n[default]\noperator_config = /a.json\n\n[profile lab]\noperator_config=~/lab.json\n output = text \n[prod]\n; comment\ncli_read_timeout = 5\n";
        let p = parse(Path::new("c"), text).unwrap();
        assert_eq!(p["default"]["operator_config"], "/a.json");
        assert_eq!(p["lab"]["output"], "text");
        assert_eq!(p["prod"]["cli_read_timeout"], "5");
        let err = parse(Path::new("c"), "output = json\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = parse(Path::new("c"), "[x]\nnonsense\n").unwrap_err();
        assert_eq!(err.exit(), 253);
    }
}
