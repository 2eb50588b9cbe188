//! How messages quote the values they are about, and [`UnknownName`], the
//! refusal of a name outside a closed set (document format, platform type,
//! action, parameter type). The bottom of the crate: it names no other
//! module, so every other may use it.

/// Longest stretch of a value quoted back in a message; values can be whole
/// scripts, and a message must stay one readable line.
const QUOTE_LIMIT: usize = 120;

/// Quotes `value` for a message: escaped like a Rust string literal and cut
/// after [`QUOTE_LIMIT`] characters.
pub(crate) fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTE_LIMIT) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
    }
}

/// A name that is not one of an enumeration's (platform type, action, ...).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} {} is unknown (known: {known})", quote(.value))]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub known: &'static str,
}

impl UnknownName {
    pub(crate) fn new(what: &'static str, value: &str, known: &'static str) -> UnknownName {
        UnknownName {
            what,
            value: value.to_owned(),
            known,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_and_cuts() {
        let long = "x".repeat(500);
        let cases = [
            ("plain", "\"plain\"".to_owned()),
            ("a\nb", "\"a\\nb\"".to_owned()),
            (long.as_str(), format!("\"{}\"…", "x".repeat(QUOTE_LIMIT))),
        ];
        for (value, want) in cases {
            assert_eq!(quote(value), want);
        }
    }
}
