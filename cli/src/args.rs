//! Command-line words into options, as the aws CLI's argparse parsers read
//! them: global options anywhere, the verb as the first positional word,
//! then the verb's own options (`--name value`, `--name=value`, lists of
//! several words, `--flag`/`--no-flag`), unique prefixes of option names
//! accepted, the last occurrence of an option winning, and what no parser
//! knows reported as `Unknown options: …`. Refusals carry argparse's words
//! (`the following arguments are required: --document-name`, `argument
//! --comment: expected one argument`, `ambiguous option: …`, `Invalid
//! choice, valid choices are: …`) so they print as the aws CLI prints them.
//!
//! Pure: it knows option tables, not operations; [`crate::verbs`] builds
//! the tables from the model.

use std::collections::BTreeMap;

/// How many words an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// None: `--debug` (argparse `store_true`).
    Flag,
    /// Exactly one: `--document-name NAME`.
    One,
    /// Any number, up to the next option: `--instance-ids A B` (`nargs='*'`).
    Many,
    /// One if given, else the default: `--generate-cli-skeleton [input]` (`nargs='?'`).
    Optional(&'static str),
}

/// One option of a parser.
#[derive(Debug, Clone)]
pub struct OptSpec {
    /// `--document-name`.
    pub name: String,
    pub arity: Arity,
    pub required: bool,
    /// The values allowed, if only some are.
    pub choices: Option<Vec<String>>,
    /// Values must be integers (argparse `type=int`).
    pub integer: bool,
}

impl OptSpec {
    pub fn new(name: impl Into<String>, arity: Arity) -> Self {
        OptSpec {
            name: name.into(),
            arity,
            required: false,
            choices: None,
            integer: false,
        }
    }

    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    pub fn choices(mut self, choices: &[&str]) -> Self {
        self.choices = Some(choices.iter().map(|c| (*c).to_owned()).collect());
        self
    }

    pub fn integer(mut self) -> Self {
        self.integer = true;
        self
    }
}

/// What argparse refused, in its words (without the `tether: error: ` prefix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// argparse's own refusals (`argument --comment: expected one argument`).
    #[error("{0}")]
    Parse(String),
    /// Words no parser took: `Unknown options: --bogus, x`.
    #[error("Unknown options: {}", .0.join(", "))]
    Unknown(Vec<String>),
}

/// The values given, by option name (`--document-name`), and the positional words.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub values: BTreeMap<String, Vec<String>>,
    /// The words no option of this parser took, in order: positional
    /// words and the options it does not know (with their `=value`).
    pub rest: Vec<String>,
}

impl Parsed {
    pub fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn one(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }
}

/// Whether argparse takes `word` for an option rather than a value: it
/// starts with `-`, is not `-` alone and is not a negative number.
pub fn looks_like_option(word: &str) -> bool {
    word.starts_with('-') && word != "-" && word.parse::<f64>().is_err()
}

/// Parses `words` against `specs` as argparse's `parse_known_args` does,
/// returning what it knows and the rest.
pub fn parse_known(specs: &[OptSpec], words: &[String]) -> Result<Parsed, ArgError> {
    let mut out = Parsed::default();
    let mut i = 0;
    let mut only_positionals = false;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        if only_positionals || !looks_like_option(word) {
            out.rest.push(word.clone());
            continue;
        }
        if word == "--" {
            only_positionals = true;
            continue;
        }
        let (name, explicit) = match word.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (word.as_str(), None),
        };
        let Some(spec) = find(specs, name)? else {
            out.rest.push(word.clone());
            continue;
        };
        let values = match spec.arity {
            Arity::Flag => {
                if let Some(v) = explicit {
                    return Err(ArgError::Parse(format!(
                        "argument {}: ignored explicit argument '{v}'",
                        spec.name
                    )));
                }
                Vec::new()
            }
            Arity::One => match explicit {
                Some(v) => vec![v],
                None if i < words.len() && !looks_like_option(&words[i]) => {
                    i += 1;
                    vec![words[i - 1].clone()]
                }
                None => {
                    return Err(ArgError::Parse(format!(
                        "argument {}: expected one argument",
                        spec.name
                    )));
                }
            },
            Arity::Optional(default) => match explicit {
                Some(v) => vec![v],
                None if i < words.len() && !looks_like_option(&words[i]) => {
                    i += 1;
                    vec![words[i - 1].clone()]
                }
                None => vec![default.to_owned()],
            },
            Arity::Many => {
                let mut vs: Vec<String> = explicit.into_iter().collect();
                while i < words.len() && !looks_like_option(&words[i]) && words[i] != "--" {
                    vs.push(words[i].clone());
                    i += 1;
                }
                vs
            }
        };
        for v in &values {
            check_value(spec, v)?;
        }
        out.values.insert(spec.name.clone(), values);
    }
    Ok(out)
}

/// The option `name` stands for: itself, or the one option it is a prefix of.
fn find<'a>(specs: &'a [OptSpec], name: &str) -> Result<Option<&'a OptSpec>, ArgError> {
    if let Some(s) = specs.iter().find(|s| s.name == name) {
        return Ok(Some(s));
    }
    if !name.starts_with("--") || name.len() < 3 {
        return Ok(None);
    }
    let matches: Vec<&OptSpec> = specs.iter().filter(|s| s.name.starts_with(name)).collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(ArgError::Parse(format!(
            "ambiguous option: {name} could match {}",
            many.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn check_value(spec: &OptSpec, value: &str) -> Result<(), ArgError> {
    if spec.integer && value.trim().parse::<i64>().is_err() {
        return Err(ArgError::Parse(format!(
            "argument {}: invalid int value: '{value}'",
            spec.name
        )));
    }
    if let Some(choices) = &spec.choices
        && !choices.iter().any(|c| c == value)
    {
        return Err(ArgError::Parse(invalid_choice(
            &format!("argument {}", spec.name),
            value,
            choices,
        )));
    }
    Ok(())
}

/// awscli's `Invalid choice` message: the choices two to a line, each
/// padded to 40 columns, then the close matches (difflib, cutoff 0.8).
pub fn invalid_choice(what: &str, value: &str, choices: &[String]) -> String {
    let mut msg = vec![format!("{what}: Invalid choice, valid choices are:\n")];
    for pair in choices.chunks(2) {
        msg.push(
            pair.iter()
                .map(|c| format!("{c:<40}"))
                .collect::<Vec<_>>()
                .join(" | "),
        );
    }
    let close = close_matches(value, choices);
    if !close.is_empty() {
        msg.push(format!("\n\nInvalid choice: '{value}', maybe you meant:\n"));
        for c in close {
            msg.push(format!("  * {c}"));
        }
    }
    msg.join("\n")
}

/// The options required and not given, as argparse names them.
pub fn missing_required(specs: &[OptSpec], parsed: &Parsed) -> Result<(), ArgError> {
    let missing: Vec<&str> = specs
        .iter()
        .filter(|s| s.required && !parsed.values.contains_key(&s.name))
        .map(|s| s.name.as_str())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ArgError::Parse(format!(
            "the following arguments are required: {}",
            missing.join(", ")
        )))
    }
}

/// difflib's `get_close_matches(word, possibilities, n=3, cutoff=0.8)`:
/// the best matches by Ratcliff/Obershelp similarity, best first.
pub fn close_matches(word: &str, possibilities: &[String]) -> Vec<String> {
    let mut scored: Vec<(f64, &String)> = possibilities
        .iter()
        .map(|p| (ratio(word, p), p))
        .filter(|(r, _)| *r >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.cmp(a.1)));
    scored.into_iter().take(3).map(|(_, p)| p.clone()).collect()
}

/// difflib's `SequenceMatcher(None, a, b).ratio()` (without its junk heuristic,
/// which only applies to sequences of 200 or more).
fn ratio(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    2.0 * matching(&a, &b) as f64 / (a.len() + b.len()) as f64
}

/// Characters in matching blocks: the longest common block, then the same
/// on each side of it.
fn matching(a: &[char], b: &[char]) -> usize {
    let (mut best, mut at_a, mut at_b) = (0, 0, 0);
    for i in 0..a.len() {
        for j in 0..b.len() {
            let mut k = 0;
            while i + k < a.len() && j + k < b.len() && a[i + k] == b[j + k] {
                k += 1;
            }
            if k > best {
                (best, at_a, at_b) = (k, i, j);
            }
        }
    }
    if best == 0 {
        return 0;
    }
    best + matching(&a[..at_a], &b[..at_b]) + matching(&a[at_a + best..], &b[at_b + best..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    fn specs() -> Vec<OptSpec> {
        vec![
            OptSpec::new("--document-name", Arity::One).required(true),
            OptSpec::new("--document-version", Arity::One),
            OptSpec::new("--instance-ids", Arity::Many),
            OptSpec::new("--details", Arity::Flag),
            OptSpec::new("--max-items", Arity::One).integer(),
            OptSpec::new("--output", Arity::One).choices(&["json", "text", "table"]),
            OptSpec::new("--generate-cli-skeleton", Arity::Optional("input")),
        ]
    }

    #[test]
    fn words_are_read_as_argparse_reads_them() {
        let p = parse_known(
            &specs(),
            &words("--document-n x --instance-ids a b --details help --bogus=1 y --max-items=-3"),
        )
        .unwrap();
        assert_eq!(p.one("--document-name"), Some("x"));
        assert_eq!(p.values["--instance-ids"], ["a", "b"]);
        assert!(p.flag("--details"));
        assert_eq!(p.rest, ["help", "--bogus=1", "y"]);
        assert_eq!(p.one("--max-items"), Some("-3"));
        let p = parse_known(&specs(), &words("--generate-cli-skeleton --details")).unwrap();
        assert_eq!(p.one("--generate-cli-skeleton"), Some("input"));
        // The last occurrence wins.
        let p = parse_known(&specs(), &words("--instance-ids a --instance-ids b c")).unwrap();
        assert_eq!(p.values["--instance-ids"], ["b", "c"]);

        for (line, want) in [
            (
                "--document",
                "ambiguous option: --document could match --document-name, --document-version",
            ),
            (
                "--document-name",
                "argument --document-name: expected one argument",
            ),
            (
                "--document-name --details",
                "argument --document-name: expected one argument",
            ),
            (
                "--details=yes",
                "argument --details: ignored explicit argument 'yes'",
            ),
            (
                "--max-items x",
                "argument --max-items: invalid int value: 'x'",
            ),
        ] {
            assert_eq!(
                parse_known(&specs(), &words(line)),
                Err(ArgError::Parse(want.to_owned())),
                "{line}"
            );
        }
        let p = parse_known(&specs(), &words("--details")).unwrap();
        assert_eq!(
            missing_required(&specs(), &p),
            Err(ArgError::Parse(
                "the following arguments are required: --document-name".into()
            ))
        );
        assert_eq!(
            ArgError::Unknown(vec!["--bogus".into(), "x".into()]).to_string(),
            "Unknown options: --bogus, x"
        );
    }

    #[test]
    fn invalid_choices_list_the_choices_as_awscli() {
        let err = parse_known(&specs(), &words("--output yaml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "argument --output: Invalid choice, valid choices are:\n\n{:<40} | {:<40}\n{:<40}",
                "json", "text", "table"
            )
        );
        let verbs: Vec<String> = ["send-command", "list-commands"].map(String::from).to_vec();
        assert_eq!(close_matches("send-comand", &verbs), ["send-command"]);
        assert!(
            invalid_choice("argument command", "send-comand", &verbs).ends_with(
                "\n\nInvalid choice: 'send-comand', maybe you meant:\n\n  * send-command"
            )
        );
        // difflib's ratio: 2*M/T.
        assert!((ratio("abcd", "bcde") - 0.75).abs() < 1e-9);
    }
}
