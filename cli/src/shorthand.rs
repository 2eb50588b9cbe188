//! Flag values as the aws CLI accepts them. This module owns the translation
//! of one flag's command-line words into the JSON request value: `file://`
//! and `fileb://` parameter files (the only IO it does), JSON, and awscli's
//! shorthand syntax (`Key=tag:Env,Values=lab,prod`, `commands=[uname -a,id]`,
//! `{k=v}`, `''`/`""` quoting, `\,` escapes and `key@=file://…`), ported from
//! awscli's `shorthand.py`, `argprocess.py` and `paramfile.py`, followed by
//! the coercion awscli's `BackCompatVisitor` and botocore's parameter
//! validation apply for the [`Shape`] the flag expects. It knows nothing
//! about particular operations or flag names.

use base64::Engine as _;
use serde_json::{Map, Value};

pub use tether_ssm::model::Shape;

/// Why a flag value could not be turned into a request value.
///
/// Locations are written from the flag's value down, e.g. `value[0].Values`.
#[derive(Debug, thiserror::Error)]
pub enum ShorthandError {
    /// A `file://` or `fileb://` file could not be read.
    #[error("unable to load paramfile {path}: {source}")]
    ParamFile {
        /// The path as given after the prefix.
        path: String,
        /// The underlying IO error.
        #[source]
        source: std::io::Error,
    },
    /// A `file://` file is not UTF-8 text.
    #[error(
        "unable to load paramfile ({path}), text contents could not be decoded; \
         if this is a binary file, use the fileb:// prefix instead of file://"
    )]
    ParamFileNotText {
        /// The path as given after the prefix.
        path: String,
    },
    /// `fileb://` content given where something other than a string is expected.
    #[error(
        "binary paramfile fileb://{path} can only be used for a string value, not a {expected}"
    )]
    BinaryParamFile {
        /// The path as given after the prefix.
        path: String,
        /// The kind of value the flag expects.
        expected: &'static str,
    },
    /// The shorthand syntax is malformed.
    #[error(
        "Expected: '{expected}', received: '{received}' for input:\n{}",
        error_location(.input, *.index)
    )]
    Syntax {
        /// What the parser expected at `index`.
        expected: String,
        /// What it found there (`EOF` at the end of the input).
        received: String,
        /// Position in characters within `input`.
        index: usize,
        /// The whole shorthand input.
        input: String,
    },
    /// The same key appears twice at the top level of a shorthand value.
    #[error(
        "second instance of key \"{key}\" encountered for input:\n{input}\n\
         this is often because there is a preceding \",\" instead of a space"
    )]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// The whole shorthand input.
        input: String,
    },
    /// A value that looks like JSON is not valid JSON (or not the JSON kind expected).
    #[error("Invalid JSON: {reason}\nJSON received: {input}")]
    InvalidJson {
        /// What was wrong with it.
        reason: String,
        /// The JSON text received.
        input: String,
    },
    /// A value that should be an integer is not one.
    #[error("invalid literal for int() with base 10: '{value}'")]
    InvalidInteger {
        /// Where the value is.
        location: String,
        /// The text given.
        value: String,
    },
    /// No words were given for a flag that needs at least one.
    #[error("expected at least one value for a {expected}")]
    NoValue {
        /// The kind of value the flag expects.
        expected: &'static str,
    },
    /// Several words were given for a flag that takes a single value.
    #[error("expected one value for a {expected}, got {count}: {values:?}")]
    TooManyValues {
        /// The kind of value the flag expects.
        expected: &'static str,
        /// How many words were given.
        count: usize,
        /// The words given.
        values: Vec<String>,
    },
}

/// Parses a single-word flag value (`--parameters`, `--comment`, …).
///
/// A `file://path` or `fileb://path` value is replaced by the file's content
/// first. Scalars are taken as they are (integers and booleans parsed); for
/// lists, maps and structures, text starting with `[` or `{` is JSON and
/// anything else is awscli shorthand, coerced to `shape`. A list shape takes
/// the word as its single element, exactly like [`parse_list_arg`] with one word.
pub fn parse_value(raw: &str, shape: &Shape) -> Result<Value, ShorthandError> {
    match load_paramfile(raw)? {
        Some(Loaded::Text(text)) => value_from_text(&text, shape),
        Some(Loaded::Binary { path, bytes }) => binary_value(path, &bytes, shape),
        None => value_from_text(raw, shape),
    }
}

/// Parses a flag that takes several words (`--targets A B`, `--tags A B`,
/// `--instance-ids mi-1 mi-2`), as awscli does for list parameters.
///
/// Each word is one list element (shorthand, JSON object, or scalar). A
/// single word that is a JSON list is the whole list, and a single
/// `file://`/`fileb://` word is replaced by the file's content first. A
/// non-list `shape` takes exactly one word, as [`parse_value`].
pub fn parse_list_arg(raws: &[String], shape: &Shape) -> Result<Value, ShorthandError> {
    let Shape::List(member) = shape else {
        return match raws {
            [one] => parse_value(one, shape),
            [] => Err(ShorthandError::NoValue {
                expected: shape.kind(),
            }),
            _ => Err(ShorthandError::TooManyValues {
                expected: shape.kind(),
                count: raws.len(),
                values: raws.to_vec(),
            }),
        };
    };
    if let [one] = raws {
        return parse_value(one, shape);
    }
    if raws.is_empty() {
        // `--instance-ids` with no words: an empty list, as argparse's `nargs='*'`.
        return Ok(Value::Array(Vec::new()));
    }
    let words: Vec<&str> = raws.iter().map(String::as_str).collect();
    list_from_words(&words, member)
}

const ROOT: &str = "value";

fn value_from_text(text: &str, shape: &Shape) -> Result<Value, ShorthandError> {
    match shape {
        Shape::String | Shape::Integer | Shape::Boolean => {
            conform(Value::String(text.to_owned()), shape, ROOT, Mode::Shorthand)
        }
        Shape::List(member) => list_from_words(&[text], member),
        Shape::Any => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') {
                parse_json(text)
            } else {
                parse_shorthand(text)
            }
        }
        Shape::Map(_) | Shape::Structure(_) => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('{') {
                conform(parse_json(text)?, shape, ROOT, Mode::Json)
            } else if trimmed.starts_with('[') {
                Err(ShorthandError::InvalidJson {
                    reason: format!("expected a JSON object for a {}", shape.kind()),
                    input: text.to_owned(),
                })
            } else {
                conform(parse_shorthand(text)?, shape, ROOT, Mode::Shorthand)
            }
        }
    }
}

fn list_from_words(words: &[&str], member: &Shape) -> Result<Value, ShorthandError> {
    match words {
        [] => {
            return Err(ShorthandError::NoValue { expected: "list" });
        }
        [one] if one.trim_start().starts_with('[') => {
            let list = Shape::List(Box::new(member.clone()));
            return conform(parse_json(one)?, &list, ROOT, Mode::Json);
        }
        _ => {}
    }
    let mut items = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        let location = format!("{ROOT}[{i}]");
        let item = if member.is_scalar() {
            conform(
                Value::String((*word).to_owned()),
                member,
                &location,
                Mode::Shorthand,
            )?
        } else {
            let trimmed = word.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') {
                conform(parse_json(word)?, member, &location, Mode::Json)?
            } else {
                conform(parse_shorthand(word)?, member, &location, Mode::Shorthand)?
            }
        };
        items.push(item);
    }
    Ok(Value::Array(items))
}

fn binary_value(path: String, bytes: &[u8], shape: &Shape) -> Result<Value, ShorthandError> {
    let encoded = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    match shape {
        Shape::String => Ok(encoded),
        Shape::List(member) if **member == Shape::String => Ok(Value::Array(vec![encoded])),
        _ => Err(ShorthandError::BinaryParamFile {
            path,
            expected: shape.kind(),
        }),
    }
}

fn parse_json(text: &str) -> Result<Value, ShorthandError> {
    serde_json::from_str(text).map_err(|e| ShorthandError::InvalidJson {
        reason: e.to_string(),
        input: text.to_owned(),
    })
}

/// Where a value came from: shorthand is coerced as awscli's
/// `BackCompatVisitor` does; JSON is only checked, as botocore does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Shorthand,
    Json,
}

fn conform(
    value: Value,
    shape: &Shape,
    location: &str,
    mode: Mode,
) -> Result<Value, ShorthandError> {
    // Only shorthand is coerced (awscli's `BackCompatVisitor`); anything the
    // shape does not fit is left as it is, for the parameter validation to
    // refuse in botocore's words.
    match shape {
        Shape::Any | Shape::String => Ok(value),
        Shape::Integer => match value {
            Value::String(text) if mode == Mode::Shorthand => match text.trim().parse::<i64>() {
                Ok(n) => Ok(Value::from(n)),
                Err(_) => Err(ShorthandError::InvalidInteger {
                    location: location.to_owned(),
                    value: text,
                }),
            },
            other => Ok(other),
        },
        Shape::Boolean => match value {
            Value::String(text) if mode == Mode::Shorthand => {
                if text.eq_ignore_ascii_case("true") {
                    Ok(Value::Bool(true))
                } else if text.eq_ignore_ascii_case("false") {
                    Ok(Value::Bool(false))
                } else {
                    Ok(Value::String(text))
                }
            }
            other => Ok(other),
        },
        Shape::List(member) => match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| conform(item, member, &format!("{location}[{i}]"), mode))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            // `foo=bar` where a list is expected means `["bar"]`.
            other if mode == Mode::Shorthand && !other.is_null() => {
                let item = conform(other, member, &format!("{location}[0]"), mode)?;
                Ok(Value::Array(vec![item]))
            }
            other => Ok(other),
        },
        Shape::Map(inner) => match value {
            Value::Object(entries) => {
                let mut out = Map::new();
                for (key, item) in entries {
                    let item = conform(item, inner, &format!("{location}.{key}"), mode)?;
                    out.insert(key, item);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other),
        },
        Shape::Structure(members) => match value {
            Value::Object(entries) => {
                let mut out = Map::new();
                for (key, item) in entries {
                    let item = match members.iter().find(|(name, _)| *name == key) {
                        Some((_, member)) => {
                            conform(item, member, &format!("{location}.{key}"), mode)?
                        }
                        None => item,
                    };
                    out.insert(key, item);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other),
        },
    }
}

// ---------------------------------------------------------------------------
// Parameter files (awscli/paramfile.py).

enum Loaded {
    Text(String),
    Binary { path: String, bytes: Vec<u8> },
}

/// Loads `file://` (text, universal newlines) or `fileb://` (bytes) values;
/// `None` when `value` is not a parameter-file reference.
fn load_paramfile(value: &str) -> Result<Option<Loaded>, ShorthandError> {
    let (path, binary) = if let Some(path) = value.strip_prefix("file://") {
        (path, false)
    } else if let Some(path) = value.strip_prefix("fileb://") {
        (path, true)
    } else {
        return Ok(None);
    };
    let expanded = expand_vars(&expand_user(path));
    let bytes = std::fs::read(&expanded).map_err(|source| ShorthandError::ParamFile {
        path: path.to_owned(),
        source,
    })?;
    if binary {
        return Ok(Some(Loaded::Binary {
            path: path.to_owned(),
            bytes,
        }));
    }
    let text = String::from_utf8(bytes).map_err(|_| ShorthandError::ParamFileNotText {
        path: path.to_owned(),
    })?;
    // Python's text mode reads with universal newlines.
    Ok(Some(Loaded::Text(
        text.replace("\r\n", "\n").replace('\r', "\n"),
    )))
}

/// `os.path.expanduser` for `~` and `~/…` (other users' homes are left alone).
fn expand_user(path: &str) -> String {
    let rest = match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => return path.to_owned(),
    };
    match std::env::var("HOME") {
        Ok(home) if !home.is_empty() => format!("{}{rest}", home.trim_end_matches('/')),
        _ => path.to_owned(),
    }
}

/// `os.path.expandvars`: `$NAME` and `${NAME}`, unknown variables left as they are.
fn expand_vars(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
            (&after[..end], end)
        };
        let valid = !name.is_empty() && !name.contains(['=', '\0']);
        match valid.then(|| std::env::var(name).ok()).flatten() {
            Some(val) => {
                out.push_str(&val);
                rest = &after[consumed..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// The shorthand grammar (awscli/shorthand.py `ShorthandParser`).

/// Parses shorthand syntax into a JSON object of strings, lists and objects
/// (no coercion: every scalar is a string).
fn parse_shorthand(input: &str) -> Result<Value, ShorthandError> {
    let mut parser = Parser {
        input,
        chars: input.chars().collect(),
        index: 0,
        resolve_paramfiles: false,
    };
    parser.parameter().map(Value::Object)
}

/// The caret display awscli puts under a shorthand syntax error.
fn error_location(input: &str, index: usize) -> String {
    let chars: Vec<char> = input.chars().collect();
    let index = index.min(chars.len());
    let consumed_part: String = chars[..index].iter().collect();
    let remaining_part: String = chars[index..].iter().collect();
    let spaces = match consumed_part.rfind('\n') {
        Some(nl) => consumed_part[nl + 1..].chars().count(),
        None => index,
    };
    let (consumed, remaining) = match remaining_part.find('\n') {
        Some(nl) => (
            format!("{consumed_part}{}", &remaining_part[..nl]),
            remaining_part[nl..].to_owned(),
        ),
        None => (input.to_owned(), String::new()),
    };
    format!("{consumed}\n{}^{remaining}", " ".repeat(spaces))
}

/// Python's `str.isspace` (what regex `\s` and `str.rstrip` use).
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `string.whitespace`, which the parser skips between tokens.
fn is_skippable_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}')
}

/// `_START_WORD`: anything printable (BMP) but space, quotes, `,` `=` `[` `{`.
fn is_start_word(c: char) -> bool {
    matches!(c, '!' | '#'..='&' | '('..='+' | '-'..='<' | '>'..='Z' | '\\'..='z' | '|'..='\u{ffff}')
}

/// `_FIRST_FOLLOW_CHARS`: whitespace and anything printable (BMP) but quotes, `,` `]` `}`.
fn is_first_follow(c: char) -> bool {
    is_py_space(c)
        || matches!(c, '!' | '#'..='&' | '('..='+' | '-'..='\\' | '^'..='|' | '~'..='\u{ffff}')
}

/// `_SECOND_FOLLOW_CHARS`: whitespace and anything printable (BMP) but quotes, `,` `=`.
fn is_second_follow(c: char) -> bool {
    is_py_space(c) || matches!(c, '!' | '#'..='&' | '('..='+' | '-'..='<' | '>'..='\u{ffff}')
}

struct Parser<'a> {
    input: &'a str,
    chars: Vec<char>,
    index: usize,
    resolve_paramfiles: bool,
}

impl Parser<'_> {
    fn parameter(&mut self) -> Result<Map<String, Value>, ShorthandError> {
        let mut params = Map::new();
        let (key, value) = self.keyval()?;
        params.insert(key, value);
        while !self.at_eof() {
            // Deliberately laxer than awscli, which rejects `a=[b]\n`: trailing
            // whitespace (a file's final newline) ends the input.
            if self.chars[self.index..]
                .iter()
                .all(|&c| is_skippable_space(c))
            {
                break;
            }
            self.expect(',', true)?;
            let (key, value) = self.keyval()?;
            if params.contains_key(&key) {
                return Err(ShorthandError::DuplicateKey {
                    key,
                    input: self.input.to_owned(),
                });
            }
            params.insert(key, value);
        }
        Ok(params)
    }

    fn keyval(&mut self) -> Result<(String, Value), ShorthandError> {
        let key = self.key();
        self.file_optional_marker();
        self.expect('=', true)?;
        let values = self.values()?;
        Ok((key, values))
    }

    /// `key@=` marks values that may be `file://`/`fileb://` references.
    fn file_optional_marker(&mut self) {
        self.resolve_paramfiles = false;
        self.consume_whitespace();
        if self.current() == Some('@') {
            self.index += 1;
            self.consume_whitespace();
            self.resolve_paramfiles = true;
        }
    }

    fn key(&mut self) -> String {
        let start = self.index;
        while let Some(c) = self.current() {
            if !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '#' | '/' | ':')) {
                break;
            }
            self.index += 1;
        }
        self.chars[start..self.index].iter().collect()
    }

    fn values(&mut self) -> Result<Value, ShorthandError> {
        match self.current() {
            None => Ok(Value::String(String::new())),
            Some('[') => self.explicit_list(),
            Some('{') => self.hash_literal(),
            Some(_) => self.csv_value(),
        }
    }

    fn csv_value(&mut self) -> Result<Value, ShorthandError> {
        let first = self.first_value()?;
        self.consume_whitespace();
        if self.current() != Some(',') {
            return Ok(Value::String(first));
        }
        self.expect(',', true)?;
        let mut list = vec![first];
        loop {
            match self.csv_item() {
                Ok((item, at_end)) => {
                    list.push(item);
                    if at_end {
                        break;
                    }
                }
                Err(err @ ShorthandError::Syntax { .. }) => {
                    if self.at_eof() {
                        return Err(err);
                    }
                    // `foo=a,b,c=d`: `c` starts the next key; back up to its comma.
                    self.backtrack_to(',');
                    break;
                }
                Err(err) => return Err(err),
            }
        }
        if list.len() == 1 {
            return Ok(Value::String(list.swap_remove(0)));
        }
        Ok(Value::Array(list.into_iter().map(Value::String).collect()))
    }

    /// One further csv value and its trailing comma; `true` when it ended the input.
    fn csv_item(&mut self) -> Result<(String, bool), ShorthandError> {
        let item = self.second_value()?;
        self.consume_whitespace();
        if self.at_eof() {
            return Ok((item, true));
        }
        self.expect(',', true)?;
        Ok((item, false))
    }

    fn explicit_list(&mut self) -> Result<Value, ShorthandError> {
        self.expect('[', true)?;
        let mut values = Vec::new();
        while self.current() != Some(']') {
            values.push(self.explicit_values()?);
            self.consume_whitespace();
            if self.current() != Some(']') {
                self.expect(',', false)?;
                self.consume_whitespace();
            }
        }
        self.expect(']', false)?;
        Ok(Value::Array(values))
    }

    fn explicit_values(&mut self) -> Result<Value, ShorthandError> {
        match self.current() {
            Some('[') => self.explicit_list(),
            Some('{') => self.hash_literal(),
            _ => self.first_value().map(Value::String),
        }
    }

    fn hash_literal(&mut self) -> Result<Value, ShorthandError> {
        self.expect('{', true)?;
        let mut keyvals = Map::new();
        while self.current() != Some('}') {
            let key = self.key();
            self.file_optional_marker();
            self.expect('=', true)?;
            let value = self.explicit_values()?;
            self.consume_whitespace();
            if self.current() != Some('}') {
                self.expect(',', false)?;
                self.consume_whitespace();
            }
            keyvals.insert(key, value);
        }
        self.expect('}', false)?;
        Ok(Value::Object(keyvals))
    }

    fn first_value(&mut self) -> Result<String, ShorthandError> {
        match self.current() {
            Some('\'') => self.quoted('\''),
            Some('"') => self.quoted('"'),
            _ => match self.match_word(is_first_follow) {
                Some(end) => self.take_word(end),
                None => Ok(String::new()),
            },
        }
    }

    fn second_value(&mut self) -> Result<String, ShorthandError> {
        match self.current() {
            Some('\'') => self.quoted('\''),
            Some('"') => self.quoted('"'),
            _ => match self.match_word(is_second_follow) {
                Some(end) => self.take_word(end),
                None => Err(self.syntax_error("<second>", "<none>")),
            },
        }
    }

    /// End of `(\\,|[START_WORD])(\\,|[follow])*` matched at the cursor.
    fn match_word(&self, follow: fn(char) -> bool) -> Option<usize> {
        let step = |i: usize, class: fn(char) -> bool| -> Option<usize> {
            match (self.chars.get(i), self.chars.get(i + 1)) {
                (Some('\\'), Some(',')) => Some(2),
                (Some(&c), _) if class(c) => Some(1),
                _ => None,
            }
        };
        let mut end = self.index + step(self.index, is_start_word)?;
        while let Some(n) = step(end, follow) {
            end += n;
        }
        Some(end)
    }

    fn take_word(&mut self, end: usize) -> Result<String, ShorthandError> {
        let word: String = self.chars[self.index..end].iter().collect();
        self.index = end;
        let word = word.replace("\\,", ",");
        self.resolve(word.trim_end_matches(is_py_space).to_owned())
    }

    /// A `'…'` or `"…"` value: `\q` is the quote and `\\` a backslash.
    fn quoted(&mut self, quote: char) -> Result<String, ShorthandError> {
        // The regex `q(?:\\q|[^q])*q`: the first unescaped quote closes it;
        // failing that, backtracking makes the last escaped quote close it.
        let start = self.index + 1;
        let mut i = start;
        let mut last_escaped_quote = None;
        let mut close = None;
        while let Some(&c) = self.chars.get(i) {
            if c == '\\' && self.chars.get(i + 1) == Some(&quote) {
                last_escaped_quote = Some(i + 1);
                i += 2;
            } else if c == quote {
                close = Some(i);
                break;
            } else {
                i += 1;
            }
        }
        let Some(close) = close.or(last_escaped_quote) else {
            let name = if quote == '\'' {
                "<single quoted>"
            } else {
                "<double quoted>"
            };
            return Err(self.syntax_error(name, "<none>"));
        };
        let body: String = self.chars[start..close].iter().collect();
        self.index = close + 1;
        let body = body
            .replace(&format!("\\{quote}"), &quote.to_string())
            .replace("\\\\", "\\");
        self.resolve(body)
    }

    fn resolve(&self, value: String) -> Result<String, ShorthandError> {
        if !self.resolve_paramfiles {
            return Ok(value);
        }
        Ok(match load_paramfile(&value)? {
            Some(Loaded::Text(text)) => text,
            Some(Loaded::Binary { bytes, .. }) => {
                base64::engine::general_purpose::STANDARD.encode(bytes)
            }
            None => value,
        })
    }

    fn expect(&mut self, c: char, consume_whitespace: bool) -> Result<(), ShorthandError> {
        if consume_whitespace {
            self.consume_whitespace();
        }
        match self.current() {
            Some(actual) if actual == c => {
                self.index += 1;
                if consume_whitespace {
                    self.consume_whitespace();
                }
                Ok(())
            }
            Some(actual) => Err(self.syntax_error(&c.to_string(), &actual.to_string())),
            None => Err(self.syntax_error(&c.to_string(), "EOF")),
        }
    }

    fn syntax_error(&self, expected: &str, received: &str) -> ShorthandError {
        ShorthandError::Syntax {
            expected: expected.to_owned(),
            received: received.to_owned(),
            index: self.index,
            input: self.input.to_owned(),
        }
    }

    fn current(&self) -> Option<char> {
        self.chars.get(self.index).copied()
    }

    fn at_eof(&self) -> bool {
        self.index >= self.chars.len()
    }

    fn backtrack_to(&mut self, c: char) {
        while self.index > 0 && self.chars.get(self.index) != Some(&c) {
            self.index -= 1;
        }
    }

    fn consume_whitespace(&mut self) {
        while self.current().is_some_and(is_skippable_space) {
            self.index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parameters() -> Shape {
        Shape::Map(Box::new(Shape::List(Box::new(Shape::String))))
    }

    fn targets() -> Shape {
        Shape::List(Box::new(Shape::Structure(vec![
            ("Key", Shape::String),
            ("Values", Shape::List(Box::new(Shape::String))),
        ])))
    }

    fn tags() -> Shape {
        Shape::List(Box::new(Shape::Structure(vec![
            ("Key", Shape::String),
            ("Value", Shape::String),
        ])))
    }

    fn words(raws: &[&str]) -> Vec<String> {
        raws.iter().map(|s| (*s).to_owned()).collect()
    }

    type Check = fn(&ShorthandError) -> bool;

    enum Want {
        Ok(Value),
        Err(Check),
        /// Read, and left as it is for the parameter validation to refuse
        /// (`params::validate`, botocore's words).
        Left,
    }

    fn check(what: &str, got: Result<Value, ShorthandError>, want: &Want) {
        match (got, want) {
            (Ok(got), Want::Ok(want)) => assert_eq!(&got, want, "{what}"),
            (Ok(_), Want::Left) => {}
            (Err(err), Want::Err(check)) => {
                assert!(check(&err), "{what}: unexpected error {err:?}")
            }
            (Ok(got), Want::Err(_)) => panic!("{what}: expected an error, got {got}"),
            (Err(err), Want::Ok(want)) => panic!("{what}: expected {want}, got error {err}"),
            (Err(err), Want::Left) => panic!("{what}: expected it read, got error {err}"),
        }
    }

    /// `--parameters`, a map of string lists, one word. Expected values
    /// were produced by awscli 1.45's own parser and botocore's validator.
    #[test]
    fn parameters_table() {
        let cases: Vec<(&str, Want)> = vec![
            (
                "commands=ifconfig",
                Want::Ok(json!({"commands": ["ifconfig"]})),
            ),
            (
                r#"commands="echo a,b""#,
                Want::Ok(json!({"commands": ["echo a,b"]})),
            ),
            (
                "commands=[uname -a,id]",
                Want::Ok(json!({"commands": ["uname -a", "id"]})),
            ),
            (
                "commands=uname -a,id",
                Want::Ok(json!({"commands": ["uname -a", "id"]})),
            ),
            (
                r#"commands='echo "hi"',workingDirectory=/tmp"#,
                Want::Ok(json!({"commands": ["echo \"hi\""], "workingDirectory": ["/tmp"]})),
            ),
            (
                r#"{"commands":["ls -l"]}"#,
                Want::Ok(json!({"commands": ["ls -l"]})),
            ),
            (
                r#"  {"commands": ["a"]}"#,
                Want::Ok(json!({"commands": ["a"]})),
            ),
            (
                r"commands=[echo a\,b,'x y']",
                Want::Ok(json!({"commands": ["echo a,b", "x y"]})),
            ),
            (
                r"commands=echo a\,b",
                Want::Ok(json!({"commands": ["echo a,b"]})),
            ),
            (
                "executionTimeout=3600,commands=ls",
                Want::Ok(json!({"commands": ["ls"], "executionTimeout": ["3600"]})),
            ),
            ("commands=", Want::Ok(json!({"commands": [""]}))),
            (
                r#"commands="say \"hi\"""#,
                Want::Ok(json!({"commands": ["say \"hi\""]})),
            ),
            ("commands=[]", Want::Ok(json!({"commands": []}))),
            (
                "commands=[\n  echo one,\n  echo two\n]",
                Want::Ok(json!({"commands": ["echo one", "echo two"]})),
            ),
            (
                "commands = ls , pwd",
                Want::Ok(json!({"commands": ["ls", "pwd"]})),
            ),
            (
                "commands=ls,pwd,workingDirectory=/tmp,executionTimeout=60",
                Want::Ok(json!({
                    "commands": ["ls", "pwd"],
                    "executionTimeout": ["60"],
                    "workingDirectory": ["/tmp"],
                })),
            ),
            (r"commands='it\'s'", Want::Ok(json!({"commands": ["it's"]}))),
            (
                "commands=café,naïve",
                Want::Ok(json!({"commands": ["café", "naïve"]})),
            ),
            ("commands=a,b", Want::Ok(json!({"commands": ["a", "b"]}))),
            // awscli rejects whitespace after a closing bracket; a file's
            // final newline is accepted here.
            ("commands=[ls]\n", Want::Ok(json!({"commands": ["ls"]}))),
            ("commands={}\n", Want::Left),
            // Errors.
            (
                "commands",
                Want::Err(|e| {
                    matches!(e, ShorthandError::Syntax { expected, received, index: 8, .. }
                        if expected == "=" && received == "EOF")
                }),
            ),
            (
                "",
                Want::Err(
                    |e| matches!(e, ShorthandError::Syntax { expected, .. } if expected == "="),
                ),
            ),
            (
                "commands=a,commands=b",
                Want::Err(
                    |e| matches!(e, ShorthandError::DuplicateKey { key, .. } if key == "commands"),
                ),
            ),
            (r#"{"commands": "ls"}"#, Want::Left),
            (r#"{"commands": [1]}"#, Want::Left),
            (
                "{bad json",
                Want::Err(
                    |e| matches!(e, ShorthandError::InvalidJson { input, .. } if input == "{bad json"),
                ),
            ),
            (
                r#"["ls"]"#,
                Want::Err(|e| matches!(e, ShorthandError::InvalidJson { .. })),
            ),
            ("commands={a=b}", Want::Left),
            ("commands=[ {a=b} ]", Want::Left),
            (
                "commands=[a",
                Want::Err(|e| {
                    matches!(e, ShorthandError::Syntax { expected, received, .. }
                        if expected == "," && received == "EOF")
                }),
            ),
            (
                "commands='abc",
                Want::Err(|e| {
                    matches!(e, ShorthandError::Syntax { expected, index: 9, .. }
                        if expected == "<single quoted>")
                }),
            ),
            (
                "commands=a,",
                Want::Err(
                    |e| matches!(e, ShorthandError::Syntax { expected, .. } if expected == "<second>"),
                ),
            ),
        ];
        for (raw, want) in &cases {
            check(raw, parse_value(raw, &parameters()), want);
        }
    }

    /// `--targets`, a list of `Key`/`Values` structures, one or more words.
    #[test]
    fn targets_table() {
        let cases: Vec<(Vec<&str>, Want)> = vec![
            (
                vec!["Key=tag:Env,Values=lab,prod"],
                Want::Ok(json!([{"Key": "tag:Env", "Values": ["lab", "prod"]}])),
            ),
            (
                vec!["Key=tag:Env,Values=a,b", "Key=InstanceIds,Values=mi-1"],
                Want::Ok(json!([
                    {"Key": "tag:Env", "Values": ["a", "b"]},
                    {"Key": "InstanceIds", "Values": ["mi-1"]},
                ])),
            ),
            (
                vec!["Key=InstanceIds,Values=mi-1"],
                Want::Ok(json!([{"Key": "InstanceIds", "Values": ["mi-1"]}])),
            ),
            (
                vec!["Key=InstanceIds,Values=[mi-1,mi-2]"],
                Want::Ok(json!([{"Key": "InstanceIds", "Values": ["mi-1", "mi-2"]}])),
            ),
            (
                vec![r#"[{"Key":"InstanceIds","Values":["mi-1"]}]"#],
                Want::Ok(json!([{"Key": "InstanceIds", "Values": ["mi-1"]}])),
            ),
            (
                vec![
                    r#"{"Key":"a","Values":["b"]}"#,
                    r#"{"Key":"c","Values":["d"]}"#,
                ],
                Want::Ok(json!([{"Key": "a", "Values": ["b"]}, {"Key": "c", "Values": ["d"]}])),
            ),
            (
                vec!["Values=lab,prod,Key=tag:Env"],
                Want::Ok(json!([{"Key": "tag:Env", "Values": ["lab", "prod"]}])),
            ),
            (
                vec!["Key = tag:Env , Values = a , b"],
                Want::Ok(json!([{"Key": "tag:Env", "Values": ["a", "b"]}])),
            ),
            (
                vec![r#"Key="tag:Name",Values="web server","db,primary""#],
                Want::Ok(json!([{"Key": "tag:Name", "Values": ["web server", "db,primary"]}])),
            ),
            // Errors.
            (vec!["Key=tag:Env,Values=lab,Foo=bar"], Want::Left),
            (
                vec!["Key=a,Key=b"],
                Want::Err(
                    |e| matches!(e, ShorthandError::DuplicateKey { key, .. } if key == "Key"),
                ),
            ),
            (vec!["Key=[a,b],Values=c"], Want::Left),
            (vec![r#"[{"Key":"a","Values":"b"}]"#], Want::Left),
            (
                vec!["Key=a,Values=b,"],
                Want::Err(
                    |e| matches!(e, ShorthandError::Syntax { expected, .. } if expected == "<second>"),
                ),
            ),
            (vec![r#"[{"Key":"a","Bogus":1}]"#], Want::Left),
            (
                vec!["{Key=x}"],
                Want::Err(
                    |e| matches!(e, ShorthandError::InvalidJson { input, .. } if input == "{Key=x}"),
                ),
            ),
            (
                vec!["Key=a,Values=b", "nonsense"],
                Want::Err(|e| {
                    matches!(e, ShorthandError::Syntax { expected, received, input, .. }
                        if expected == "=" && received == "EOF" && input == "nonsense")
                }),
            ),
            // `--targets` with no words: an empty list (argparse's `nargs='*'`).
            (vec![], Want::Ok(json!([]))),
        ];
        for (raws, want) in &cases {
            let what = format!("{raws:?}");
            check(&what, parse_list_arg(&words(raws), &targets()), want);
            if let [one] = raws.as_slice() {
                check(&what, parse_value(one, &targets()), want);
            }
        }
    }

    /// `--tags`, a list of `Key`/`Value` structures, one or more words.
    #[test]
    fn tags_table() {
        let cases: Vec<(Vec<&str>, Want)> = vec![
            (
                vec!["Key=a,Value=b", "Key=c,Value=d"],
                Want::Ok(json!([{"Key": "a", "Value": "b"}, {"Key": "c", "Value": "d"}])),
            ),
            (
                vec!["Key=Name,Value=web server"],
                Want::Ok(json!([{"Key": "Name", "Value": "web server"}])),
            ),
            (
                vec!["Key=k,Value="],
                Want::Ok(json!([{"Key": "k", "Value": ""}])),
            ),
            (
                vec!["Key=env,Value='a,b'"],
                Want::Ok(json!([{"Key": "env", "Value": "a,b"}])),
            ),
            (
                vec![r"Key=env,Value=a\,b"],
                Want::Ok(json!([{"Key": "env", "Value": "a,b"}])),
            ),
            (
                vec!["Key=path,Value=/a=b"],
                Want::Ok(json!([{"Key": "path", "Value": "/a=b"}])),
            ),
            // awscli quirk: a space is not a separator, so this is one Key.
            (
                vec!["Key=a Value=b"],
                Want::Ok(json!([{"Key": "a Value=b"}])),
            ),
            (
                vec![r#"[{"Key":"a","Value":"b"}]"#],
                Want::Ok(json!([{"Key": "a", "Value": "b"}])),
            ),
            // Errors.
            (vec!["Key=env,Value=a,b"], Want::Left),
            (vec!["Key=a,Valu=b"], Want::Left),
            (vec!["Key={a=b},Value=c"], Want::Left),
            (
                vec!["Key=a,Value=b", "Key=c,Value=d,Value=e"],
                Want::Err(
                    |e| matches!(e, ShorthandError::DuplicateKey { key, .. } if key == "Value"),
                ),
            ),
        ];
        for (raws, want) in &cases {
            check(
                &format!("{raws:?}"),
                parse_list_arg(&words(raws), &tags()),
                want,
            );
        }
    }

    #[test]
    fn scalars_and_scalar_lists() {
        let int_list = Shape::List(Box::new(Shape::Integer));
        let str_list = Shape::List(Box::new(Shape::String));
        let nested = Shape::Structure(vec![
            ("Count", Shape::Integer),
            ("Enabled", Shape::Boolean),
            ("Ids", Shape::List(Box::new(Shape::String))),
        ]);
        let cases: Vec<(&str, &Shape, Want)> = vec![
            ("42", &Shape::Integer, Want::Ok(json!(42))),
            (" -7 ", &Shape::Integer, Want::Ok(json!(-7))),
            ("TRUE", &Shape::Boolean, Want::Ok(json!(true))),
            ("false", &Shape::Boolean, Want::Ok(json!(false))),
            ("a,b=c", &Shape::String, Want::Ok(json!("a,b=c"))),
            ("mi-1,mi-2", &str_list, Want::Ok(json!(["mi-1,mi-2"]))),
            (
                r#"["mi-1","mi-2"]"#,
                &str_list,
                Want::Ok(json!(["mi-1", "mi-2"])),
            ),
            ("5", &int_list, Want::Ok(json!([5]))),
            (
                "Count=3,Enabled=True,Ids=x",
                &nested,
                Want::Ok(json!({"Count": 3, "Enabled": true, "Ids": ["x"]})),
            ),
            (
                r#"{"Count": 3, "Enabled": false, "Ids": []}"#,
                &nested,
                Want::Ok(json!({"Count": 3, "Enabled": false, "Ids": []})),
            ),
            (
                "ten",
                &Shape::Integer,
                Want::Err(|e| {
                    matches!(e, ShorthandError::InvalidInteger { location, value }
                        if location == "value" && value == "ten")
                }),
            ),
            (
                "1.5",
                &int_list,
                Want::Err(
                    |e| matches!(e, ShorthandError::InvalidInteger { location, .. } if location == "value[0]"),
                ),
            ),
            ("yes", &Shape::Boolean, Want::Left),
            (
                "Count=x",
                &nested,
                Want::Err(
                    |e| matches!(e, ShorthandError::InvalidInteger { location, .. } if location == "value.Count"),
                ),
            ),
            (r#"{"Count": "3"}"#, &nested, Want::Left),
            (r#"{"Enabled": null}"#, &nested, Want::Left),
        ];
        for (raw, shape, want) in &cases {
            check(raw, parse_value(raw, shape), want);
        }
        let err = parse_list_arg(&words(&["a", "b"]), &Shape::String);
        assert!(matches!(
            err,
            Err(ShorthandError::TooManyValues { count: 2, .. })
        ));
        let many = parse_list_arg(&words(&["1", "2"]), &int_list);
        assert_eq!(many.ok(), Some(json!([1, 2])));
    }

    /// A scratch file removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str, content: &[u8]) -> Scratch {
            let path = std::env::temp_dir()
                .join(format!("tether-shorthand-{}-{name}", std::process::id()));
            assert!(
                std::fs::write(&path, content).is_ok(),
                "writing {}",
                path.display()
            );
            Scratch(path)
        }

        fn uri(&self, prefix: &str) -> String {
            format!("{prefix}{}", self.0.display())
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn paramfiles() {
        let shorthand = Scratch::new(
            "params.txt",
            b"commands=[\r\n  echo one,\r\n  echo two\r\n]\r\n",
        );
        let json_targets = Scratch::new(
            "targets.json",
            br#"[{"Key": "InstanceIds", "Values": ["mi-1"]}]"#,
        );
        let one_target = Scratch::new("target.txt", b"Key=tag:Env,Values=lab,prod\n");
        let script = Scratch::new("script.sh", b"#!/bin/sh\necho hi\n");
        let binary = Scratch::new("blob.bin", &[0xff, 0x00, 0x41]);

        let got = parse_value(&shorthand.uri("file://"), &parameters());
        assert_eq!(
            got.ok(),
            Some(json!({"commands": ["echo one", "echo two"]}))
        );

        let got = parse_list_arg(&[json_targets.uri("file://")], &targets());
        assert_eq!(
            got.ok(),
            Some(json!([{"Key": "InstanceIds", "Values": ["mi-1"]}]))
        );

        let got = parse_list_arg(&[one_target.uri("file://")], &targets());
        assert_eq!(
            got.ok(),
            Some(json!([{"Key": "tag:Env", "Values": ["lab", "prod"]}]))
        );

        // A string takes the file's content verbatim.
        let got = parse_value(&script.uri("file://"), &Shape::String);
        assert_eq!(got.ok(), Some(json!("#!/bin/sh\necho hi\n")));

        // `key@=file://…` loads one shorthand value from a file.
        let raw = format!("commands@={},workingDirectory=/tmp", script.uri("file://"));
        let got = parse_value(&raw, &parameters());
        assert_eq!(
            got.ok(),
            Some(json!({"commands": ["#!/bin/sh\necho hi\n"], "workingDirectory": ["/tmp"]}))
        );
        // Without `@` the reference is just text.
        let raw = format!("commands={}", script.uri("file://"));
        let got = parse_value(&raw, &parameters());
        assert_eq!(got.ok(), Some(json!({"commands": [script.uri("file://")]})));

        // fileb:// is base64 for strings and refused elsewhere.
        let got = parse_value(&binary.uri("fileb://"), &Shape::String);
        assert_eq!(got.ok(), Some(json!("/wBB")));
        let got = parse_list_arg(&[binary.uri("fileb://")], &targets());
        assert!(matches!(
            got,
            Err(ShorthandError::BinaryParamFile {
                expected: "list",
                ..
            })
        ));
        let got = parse_value(&binary.uri("file://"), &Shape::String);
        assert!(matches!(got, Err(ShorthandError::ParamFileNotText { .. })));

        let missing = format!(
            "file://{}/tether-no-such-file",
            std::env::temp_dir().display()
        );
        let got = parse_value(&missing, &parameters());
        assert!(
            matches!(&got, Err(ShorthandError::ParamFile { path, .. }) if path.ends_with("tether-no-such-file")),
            "{got:?}"
        );
        // Several words are never parameter files.
        let raws = [script.uri("file://"), "x".to_owned()];
        let got = parse_list_arg(&raws, &Shape::List(Box::new(Shape::String)));
        assert_eq!(got.ok(), Some(json!([script.uri("file://"), "x"])));
    }

    #[test]
    fn syntax_error_points_at_the_problem() {
        let err = parse_value("commands=a,commands=b", &parameters());
        let Err(err) = err else {
            panic!("expected an error");
        };
        assert!(err.to_string().contains("commands=a,commands=b"), "{err}");

        let err = parse_value("commands=[a\n,b", &parameters());
        let Err(err) = err else {
            panic!("expected an error");
        };
        assert_eq!(
            err.to_string(),
            "Expected: ',', received: 'EOF' for input:\ncommands=[a\n,b\n  ^"
        );
        let err = parse_value("a=b,c=[d", &parameters());
        let Err(err) = err else {
            panic!("expected an error");
        };
        assert_eq!(
            err.to_string(),
            "Expected: ',', received: 'EOF' for input:\na=b,c=[d\n        ^"
        );
    }

    #[test]
    fn paths_expand_home_and_variables() {
        // Only variables that are certainly set are used.
        let home = std::env::var("HOME").unwrap_or_default();
        if !home.is_empty() {
            assert_eq!(
                expand_user("~/x"),
                format!("{}/x", home.trim_end_matches('/'))
            );
            assert_eq!(expand_vars("$HOME/x"), format!("{home}/x"));
            assert_eq!(expand_vars("${HOME}/x"), format!("{home}/x"));
        }
        assert_eq!(expand_user("~other/x"), "~other/x");
        assert_eq!(
            expand_vars("/a/$TETHER_SURELY_UNSET_VAR/b"),
            "/a/$TETHER_SURELY_UNSET_VAR/b"
        );
        assert_eq!(expand_vars("/a/${unclosed"), "/a/${unclosed");
        assert_eq!(expand_vars("cost$"), "cost$");
    }
}
