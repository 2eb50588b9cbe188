//! [`DocumentFormat`]: the text formats a document may be written in, which
//! one a text is in, and the byte-order mark either may start with.

use std::fmt;

use crate::message::UnknownName;

/// The formats a document can be written in (SSM's `DocumentFormat`, less TEXT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DocumentFormat {
    Json,
    Yaml,
}

impl DocumentFormat {
    /// The SSM name: `JSON` or `YAML`.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentFormat::Json => "JSON",
            DocumentFormat::Yaml => "YAML",
        }
    }

    /// The format a text is most likely in: JSON when its first non-blank
    /// character opens an object, YAML otherwise.
    pub fn detect(content: &str) -> DocumentFormat {
        if strip_bom(content).trim_start().starts_with('{') {
            DocumentFormat::Json
        } else {
            DocumentFormat::Yaml
        }
    }
}

impl fmt::Display for DocumentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DocumentFormat {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "JSON" => Ok(DocumentFormat::Json),
            "YAML" => Ok(DocumentFormat::Yaml),
            _ => Err(UnknownName::new("document format", s, "JSON, YAML")),
        }
    }
}

pub(crate) fn strip_bom(content: &str) -> &str {
    content.strip_prefix('\u{feff}').unwrap_or(content)
}
