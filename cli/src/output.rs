//! Printing an operation's response the way `aws --output json|text|table`
//! does. This module owns the three renderings, ported from awscli's
//! `formatter.py` (JSON and table building), `text.py` and `table.py`
//! (colour off), plus the conversion of the response's timestamp members
//! from epoch seconds, as they travel on the wire, to the ISO 8601 strings
//! awscli v2 prints. It does no IO and knows operations only by name.

use std::fmt::Write as _;
use std::str::FromStr;

use chrono::{DateTime, Datelike as _, Utc};
use serde_json::{Map, Number, Value};

/// The `--output` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `json`: `json.dumps(indent=4, ensure_ascii=False)`.
    Json,
    /// `text`: tab-separated lines, one per structure, with upper-cased names.
    Text,
    /// `table`: boxed sections titled with the operation and member names.
    Table,
}

/// Why an output option was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// `--output` named a format that does not exist.
    #[error("invalid choice for --output: {value:?} (choose from 'json', 'text', 'table')")]
    UnknownFormat {
        /// The value given.
        value: String,
    },
}

impl FromStr for OutputFormat {
    type Err = OutputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(OutputFormat::Json),
            "text" => Ok(OutputFormat::Text),
            "table" => Ok(OutputFormat::Table),
            _ => Err(OutputError::UnknownFormat {
                value: s.to_owned(),
            }),
        }
    }
}

/// The width awscli assumes when stdout is not a terminal.
pub const DEFAULT_TERMINAL_WIDTH: usize = 80;

/// Renders `value`, the response of `operation` (e.g. `"SendCommand"`, the
/// table's title) with timestamps as epoch seconds (numbers, possibly
/// fractional) as on the AWS wire, exactly as `aws --output …` prints it
/// when stdout is not a terminal. Timestamps are converted with
/// [`timestamps_to_iso`] and a top-level `ResponseMetadata` is dropped; an
/// empty response prints nothing.
pub fn render(operation: &str, value: &Value, format: OutputFormat) -> String {
    render_with_width(operation, value, format, DEFAULT_TERMINAL_WIDTH)
}

/// [`render`] for a terminal `terminal_width` columns wide, which only
/// matters to tables: like awscli, a table wider than the terminal shows
/// its one-row sections as name/value rows instead.
pub fn render_with_width(
    operation: &str,
    value: &Value,
    format: OutputFormat,
    terminal_width: usize,
) -> String {
    let mut value = value.clone();
    if let Value::Object(members) = &mut value {
        members.remove("ResponseMetadata");
    }
    timestamps_to_iso(&mut value);
    match format {
        OutputFormat::Json => render_json(&value),
        OutputFormat::Text => render_text(&value),
        OutputFormat::Table => render_table(operation, &value, terminal_width, false),
    }
}

/// [`render`], tables coloured as awscli colours them when `color` is set.
pub fn render_styled(operation: &str, value: &Value, format: OutputFormat, color: bool) -> String {
    if format != OutputFormat::Table || !color {
        return render(operation, value, format);
    }
    let mut value = value.clone();
    if let Value::Object(members) = &mut value {
        members.remove("ResponseMetadata");
    }
    timestamps_to_iso(&mut value);
    render_table(operation, &value, DEFAULT_TERMINAL_WIDTH, true)
}

// ---------------------------------------------------------------------------
// Timestamps.

/// Converts, in place and at any depth, every number held by a member named
/// in the SSM model as a timestamp ([`tether_ssm::model::Model::timestamp_members`]) from epoch seconds to the ISO 8601 text
/// awscli v2 prints: `datetime.fromtimestamp(t, utc).isoformat()`, e.g.
/// `2017-01-05T16:05:42.658000+00:00`, with microseconds only when non-zero.
/// Anything else (strings, already-converted values) is left as it is.
pub fn timestamps_to_iso(value: &mut Value) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                if let Value::Number(n) = member {
                    if tether_ssm::model::model()
                        .timestamp_members()
                        .contains(name.as_str())
                        && let Some(iso) = epoch_to_iso(n)
                    {
                        *member = Value::String(iso);
                    }
                } else {
                    timestamps_to_iso(member);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(timestamps_to_iso),
        _ => {}
    }
}

/// Epoch seconds to `isoformat()` of an aware UTC datetime, rounding to the
/// microsecond half-to-even as CPython's `fromtimestamp` does. `None` outside
/// the years Python's datetime can hold.
fn epoch_to_iso(n: &Number) -> Option<String> {
    let (secs, micros) = if let Some(i) = n.as_i64() {
        (i, 0)
    } else {
        let t = n.as_f64().filter(|t| t.is_finite())?;
        let mut whole = t.trunc();
        let mut frac = ((t - whole) * 1e6).round_ties_even();
        if frac >= 1e6 {
            frac -= 1e6;
            whole += 1.0;
        } else if frac < 0.0 {
            frac += 1e6;
            whole -= 1.0;
        }
        if whole.abs() > 1e15 {
            return None;
        }
        (whole as i64, frac as u32)
    };
    let at = DateTime::<Utc>::from_timestamp(secs, micros * 1000)?;
    if !(1..=9999).contains(&at.year()) {
        return None;
    }
    let base = at.format("%Y-%m-%dT%H:%M:%S");
    Some(if micros == 0 {
        format!("{base}+00:00")
    } else {
        format!("{base}.{micros:06}+00:00")
    })
}

// ---------------------------------------------------------------------------
// Member order.

/// Puts every structure's members in the order of `shape` in the model, as
/// botocore parses an answer (it walks the model's members, not the
/// wire's), Tether's documented extra members after them, and members
/// neither knows last, as they came.
pub fn order_by_model(value: &mut Value, shape: &str) {
    let m = tether_ssm::model::model();
    let Some(def) = m.shape(shape) else {
        return;
    };
    match (def["type"].as_str().unwrap_or(""), value) {
        ("structure", Value::Object(obj)) => {
            let mut taken = std::mem::take(obj);
            let mut out = Map::new();
            for (name, member) in m.members(shape).into_iter().chain(m.extra_members(shape)) {
                if let Some(mut v) = taken.remove(name) {
                    if let Some(s) = member["shape"].as_str() {
                        order_by_model(&mut v, s);
                    }
                    out.insert(name.to_owned(), v);
                }
            }
            out.extend(taken);
            *obj = out;
        }
        ("list", Value::Array(items)) => {
            if let Some(s) = def["member"]["shape"].as_str() {
                items.iter_mut().for_each(|i| order_by_model(i, s));
            }
        }
        ("map", Value::Object(obj)) => {
            if let Some(s) = def["value"]["shape"].as_str() {
                obj.values_mut().for_each(|i| order_by_model(i, s));
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Terminals.

/// `text` made safe for a terminal: control characters (C0 but newline and
/// tab, a carriage return not ending a line, DEL, C1) shown as `\xNN`
/// instead of reaching the terminal, where a node's output could move the
/// cursor, rewrite the screen or set the window title. The aws CLI prints
/// them as they are; the CLI escapes them only when stdout is a terminal,
/// so what scripts read through a pipe stays byte for byte the aws CLI's.
pub fn escape_for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let control = match c {
            '\n' | '\t' => false,
            '\r' => chars.peek() != Some(&'\n'),
            c => c < ' ' || ('\u{7f}'..='\u{9f}').contains(&c),
        };
        if control {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Python's scalar formatting.

/// `repr(float)`: shortest round-trip digits, exponent form below 1e-4 and
/// from 1e16 up (`1e-05`, `1e+16`), `.0` on whole numbers.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // The value is 0.DIGITS × 10^point.
    let point = exponent + 1;
    let len = digits.len() as i64;
    if point <= -4 || point > 16 {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{first}{dot}e{exp_sign}{:02}", exponent.abs())
    } else if point <= 0 {
        format!(
            "{sign}0.{}{digits}",
            "0".repeat(point.unsigned_abs() as usize)
        )
    } else if point >= len {
        format!("{sign}{digits}{}.0", "0".repeat((point - len) as usize))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

fn py_number(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        n.to_string()
    } else {
        py_float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// `str(x)` of a decoded JSON value, as text and table cells show it.
pub fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// `repr(x)` of a decoded JSON value.
fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => py_number(n),
        Value::String(s) => py_str_repr(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(members) => {
            let members: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}: {}", py_str_repr(k), py_repr(v)))
                .collect();
            format!("{{{}}}", members.join(", "))
        }
    }
}

fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c < ' ' || ('\u{7f}'..'\u{a0}').contains(&c) => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

// ---------------------------------------------------------------------------
// JSON (formatter.py `JSONFormatter`).

fn render_json(value: &Value) -> String {
    if value.as_object().is_some_and(Map::is_empty) {
        return String::new();
    }
    let mut out = String::new();
    write_json(&mut out, value, 0);
    out.push('\n');
    out
}

fn write_json(out: &mut String, value: &Value, level: usize) {
    const INDENT: usize = 4;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&py_number(n)),
        Value::String(s) => write_json_string(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Object(members) if members.is_empty() => out.push_str("{}"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                out.push_str(&" ".repeat(INDENT * (level + 1)));
                write_json(out, item, level + 1);
            }
            out.push('\n');
            out.push_str(&" ".repeat(INDENT * level));
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (key, item)) in members.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                out.push_str(&" ".repeat(INDENT * (level + 1)));
                write_json_string(out, key);
                out.push_str(": ");
                write_json(out, item, level + 1);
            }
            out.push('\n');
            out.push_str(&" ".repeat(INDENT * level));
            out.push('}');
        }
    }
}

/// Python's `json` string encoding with `ensure_ascii=False`.
fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------
// Text (text.py).

fn render_text(value: &Value) -> String {
    let mut out = String::new();
    format_text(&mut out, value, None, None);
    out
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

fn format_text(
    out: &mut String,
    item: &Value,
    identifier: Option<&str>,
    scalar_keys: Option<&[String]>,
) {
    match item {
        Value::Object(members) => format_dict(out, scalar_keys, members, identifier),
        Value::Array(items) => format_list(out, items, identifier),
        scalar => {
            out.push_str(&py_str(scalar));
            out.push('\n');
        }
    }
}

fn format_list(out: &mut String, items: &[Value], identifier: Option<&str>) {
    if items.is_empty() {
        return;
    }
    if items.iter().any(Value::is_object) {
        let all_keys = all_scalar_keys(items);
        for element in items {
            format_text(out, element, identifier, Some(&all_keys));
        }
    } else if items.iter().any(Value::is_array) {
        let (scalars, non_scalars): (Vec<&Value>, Vec<&Value>) =
            items.iter().partition(|v| is_scalar(v));
        if !scalars.is_empty() {
            format_scalar_list(out, &scalars, identifier);
        }
        for non_scalar in non_scalars {
            format_text(out, non_scalar, identifier, None);
        }
    } else {
        let all: Vec<&Value> = items.iter().collect();
        format_scalar_list(out, &all, identifier);
    }
}

fn format_scalar_list(out: &mut String, elements: &[&Value], identifier: Option<&str>) {
    match identifier {
        Some(identifier) => {
            let identifier = identifier.to_uppercase();
            for item in elements {
                let _ = writeln!(out, "{identifier}\t{}", py_str(item));
            }
        }
        None => {
            let cells: Vec<String> = elements.iter().map(|v| py_str(v)).collect();
            out.push_str(&cells.join("\t"));
            out.push('\n');
        }
    }
}

fn format_dict(
    out: &mut String,
    scalar_keys: Option<&[String]>,
    item: &Map<String, Value>,
    identifier: Option<&str>,
) {
    let mut scalars: Vec<String> = Vec::new();
    let mut non_scalars: Vec<(&str, &Value)> = Vec::new();
    match scalar_keys {
        None => {
            for (key, value) in sorted(item) {
                if is_scalar(value) {
                    scalars.push(py_str(value));
                } else {
                    non_scalars.push((key, value));
                }
            }
        }
        Some(keys) => {
            for key in keys {
                scalars.push(item.get(key).map(py_str).unwrap_or_default());
            }
            for (key, value) in sorted(item) {
                if !keys.iter().any(|k| k == key) {
                    non_scalars.push((key, value));
                }
            }
        }
    }
    if !scalars.is_empty() {
        if let Some(identifier) = identifier {
            scalars.insert(0, identifier.to_uppercase());
        }
        out.push_str(&scalars.join("\t"));
        out.push('\n');
    }
    for (key, value) in non_scalars {
        format_text(out, value, Some(key), None);
    }
}

fn all_scalar_keys(items: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = items
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|members| {
            members
                .iter()
                .filter(|(_, v)| is_scalar(v))
                .map(|(k, _)| k.clone())
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// A map's entries in key order (Python's `sorted(d.items())`), whatever
/// order the map keeps.
fn sorted(members: &Map<String, Value>) -> Vec<(&str, &Value)> {
    let mut entries: Vec<(&str, &Value)> = members.iter().map(|(k, v)| (k.as_str(), v)).collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

// ---------------------------------------------------------------------------
// Table (formatter.py `TableFormatter`, table.py `MultiTable`).

fn render_table(operation: &str, value: &Value, terminal_width: usize, color: bool) -> String {
    let mut table = MultiTable::default();
    if !table.build(Some(operation), value, 0) {
        return String::new();
    }
    table.render(terminal_width, color)
}

/// awscli's `ColorizedStyler` (`--color on`, or `auto` on a terminal):
/// row elements bright blue, the nesting bars dim yellow.
const ROW_STYLE: &str = "\u{1b}[1m\u{1b}[34m";
const INDENT_STYLE: &str = "\u{1b}[2m\u{1b}[33m";
const RESET_STYLE: &str = "\u{1b}[0m";

/// Python truthiness: empty containers and strings, zero, false and null
/// make no table.
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(members) => !members.is_empty(),
    }
}

/// Scalar member names sorted, then the other member names sorted.
fn group_scalar_keys(members: &Map<String, Value>) -> (Vec<String>, Vec<String>) {
    let (scalars, more): (Vec<_>, Vec<_>) =
        sorted(members).into_iter().partition(|(_, v)| is_scalar(v));
    let names =
        |entries: Vec<(&str, &Value)>| entries.into_iter().map(|(k, _)| k.to_owned()).collect();
    (names(scalars), names(more))
}

#[derive(Default)]
struct MultiTable {
    sections: Vec<Section>,
}

impl MultiTable {
    fn current(&mut self) -> &mut Section {
        if self.sections.is_empty() {
            self.sections.push(Section::default());
        }
        let last = self.sections.len() - 1;
        &mut self.sections[last]
    }

    fn new_section(&mut self, title: Option<&str>, indent_level: usize) {
        self.sections.push(Section {
            title: title.unwrap_or_default().to_owned(),
            indent_level,
            ..Section::default()
        });
    }

    fn add_row_header(&mut self, headers: Vec<String>) {
        self.current().add_header(headers);
    }

    fn add_row(&mut self, row: Vec<String>) {
        self.current().add_row(row);
    }

    /// `TableFormatter._build_table`; `false` when there is nothing to show.
    fn build(&mut self, title: Option<&str>, current: &Value, indent_level: usize) -> bool {
        if !is_truthy(current) {
            return false;
        }
        if title.is_some() {
            self.new_section(title, indent_level);
        }
        match current {
            Value::Array(items) if items.first().is_some_and(Value::is_object) => {
                self.build_sub_table_from_list(items, indent_level, title);
            }
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::Array(cells) if cells.iter().all(is_scalar) => {
                            self.add_row(cells.iter().map(py_str).collect());
                        }
                        // Iterating a dict yields its keys, all scalars.
                        Value::Object(members) => self.add_row(members.keys().cloned().collect()),
                        Value::Array(_) => {
                            self.build(None, item, 0);
                        }
                        scalar => self.add_row(vec![py_str(scalar)]),
                    }
                }
            }
            Value::Object(members) => self.build_sub_table_from_dict(members, indent_level),
            _ => {}
        }
        true
    }

    fn build_sub_table_from_dict(&mut self, current: &Map<String, Value>, indent_level: usize) {
        let (headers, more) = group_scalar_keys(current);
        let cell = |key: &String| current.get(key).map(py_str).unwrap_or_default();
        if let [only] = headers.as_slice() {
            // A single scalar member is shown as a name/value row.
            let row = vec![only.clone(), cell(only)];
            self.add_row(row);
        } else if !headers.is_empty() {
            let row = headers.iter().map(cell).collect();
            self.add_row_header(headers);
            self.add_row(row);
        }
        for remaining in &more {
            if let Some(value) = current.get(remaining) {
                self.build(Some(remaining), value, indent_level + 1);
            }
        }
    }

    fn build_sub_table_from_list(
        &mut self,
        current: &[Value],
        indent_level: usize,
        title: Option<&str>,
    ) {
        let mut headers: Vec<String> = Vec::new();
        let mut more: Vec<String> = Vec::new();
        for members in current.iter().filter_map(Value::as_object) {
            let (h, m) = group_scalar_keys(members);
            headers.extend(h);
            more.extend(m);
        }
        headers.sort();
        headers.dedup();
        more.sort();
        more.dedup();
        self.add_row_header(headers.clone());
        for (i, element) in current.iter().enumerate() {
            if i > 0 && !more.is_empty() {
                self.new_section(title, indent_level);
                self.add_row_header(headers.clone());
            }
            let members = element.as_object();
            let row = headers
                .iter()
                .map(|h| {
                    members
                        .and_then(|m| m.get(h))
                        .map(py_str)
                        .unwrap_or_default()
                })
                .collect();
            self.add_row(row);
            for remaining in &more {
                if let Some(value) = members.and_then(|m| m.get(remaining)) {
                    self.build(Some(remaining), value, indent_level + 1);
                }
            }
        }
    }

    fn max_width(&self) -> usize {
        self.sections
            .iter()
            .map(Section::total_width)
            .max()
            .unwrap_or(0)
    }

    fn render(&mut self, terminal_width: usize, color: bool) -> String {
        let mut max_width = self.max_width();
        if max_width > terminal_width {
            self.convert_to_vertical();
            max_width = self.max_width();
        }
        let mut out = String::new();
        out.push_str(&"-".repeat(max_width));
        out.push('\n');
        for section in &self.sections {
            section.render(&mut out, max_width, color);
        }
        out
    }

    /// Shows every one-row section with headers as name/value rows.
    fn convert_to_vertical(&mut self) {
        for section in &mut self.sections {
            if section.rows.len() == 1 && !section.headers.is_empty() {
                let mut vertical = Section {
                    title: std::mem::take(&mut section.title),
                    indent_level: section.indent_level,
                    ..Section::default()
                };
                for (header, element) in section.headers.iter().zip(&section.rows[0]) {
                    vertical.add_row(vec![header.clone(), element.clone()]);
                }
                *section = vertical;
            }
        }
    }
}

#[derive(Default)]
struct Section {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    indent_level: usize,
    max_widths: Vec<usize>,
}

impl Section {
    fn add_header(&mut self, headers: Vec<String>) {
        self.update_max_widths(&headers);
        self.headers = headers;
    }

    fn add_row(&mut self, row: Vec<String>) {
        self.update_max_widths(&row);
        self.rows.push(row);
    }

    fn update_max_widths(&mut self, row: &[String]) {
        if self.max_widths.is_empty() {
            self.max_widths = row.iter().map(|c| text_width(c)).collect();
            return;
        }
        for (i, cell) in row.iter().enumerate() {
            let width = text_width(cell);
            match self.max_widths.get_mut(i) {
                Some(max) => *max = (*max).max(width),
                None => self.max_widths.push(width),
            }
        }
    }

    /// Column widths (content plus `padding`) scaled to add up to `max_width`.
    fn column_widths(&self, padding: usize, max_width: usize) -> Vec<usize> {
        let unscaled: Vec<usize> = self.max_widths.iter().map(|w| w + padding).collect();
        let total: usize = unscaled.iter().sum();
        if unscaled.is_empty() || total == 0 {
            return unscaled;
        }
        let scale = max_width as f64 / total as f64;
        let mut scaled: Vec<i64> = unscaled
            .iter()
            .map(|&w| (scale * w as f64).round_ties_even() as i64)
            .collect();
        let mut off_by = scaled.iter().sum::<i64>() - max_width as i64;
        while off_by != 0 {
            let order: Vec<usize> = if off_by < 0 {
                (0..scaled.len()).rev().collect()
            } else {
                (0..scaled.len()).collect()
            };
            for i in order {
                if off_by > 0 {
                    scaled[i] -= 1;
                    off_by -= 1;
                } else {
                    scaled[i] += 1;
                    off_by += 1;
                }
                if off_by == 0 {
                    break;
                }
            }
        }
        scaled.into_iter().map(|w| w.max(0) as usize).collect()
    }

    /// `total_width(padding=4, with_border=True, outer_padding=indent_level)`.
    fn total_width(&self) -> usize {
        let columns: usize = self.max_widths.iter().map(|w| w + 4).sum();
        let outer = 2 + 2 * self.indent_level;
        (text_width(&self.title) + outer).max(columns + outer)
    }

    fn render(&self, out: &mut String, max_width: usize, color: bool) {
        let edge = if color {
            format!("{INDENT_STYLE}|{RESET_STYLE}").repeat(self.indent_level)
        } else {
            "|".repeat(self.indent_level)
        };
        let mut line = |text: &str| {
            let _ = writeln!(out, "{edge}{text}{edge}");
        };
        let width = max_width.saturating_sub(self.indent_level * 2);
        if !self.title.is_empty() {
            line(&center_text(&self.title, width, "|", "|"));
            if self.headers.is_empty() && self.rows.is_empty() {
                line(&format!("+{}+", "-".repeat(width.saturating_sub(2))));
            }
        }
        if !self.headers.is_empty() {
            let widths = self.column_widths(4, width);
            line(&line_break(&widths));
            let mut current = String::new();
            for (i, (w, header)) in widths.iter().zip(&self.headers).enumerate() {
                current.push_str(&center_text(header, *w, if i == 0 { "|" } else { "" }, "|"));
            }
            line(&current);
        }
        if !self.rows.is_empty() {
            let widths = self.column_widths(4, width);
            if widths.is_empty() {
                return;
            }
            line(&line_break(&widths));
            for row in &self.rows {
                let mut current = String::new();
                for (i, (w, cell)) in widths.iter().zip(row).enumerate() {
                    let styled = format!("{ROW_STYLE}{cell}{RESET_STYLE}");
                    // The padding is the plain text's; only the text is styled.
                    let shown = if color {
                        styled.as_str()
                    } else {
                        cell.as_str()
                    };
                    current.push_str(&align_left_as(
                        shown,
                        text_width(cell),
                        *w,
                        if i == 0 { "|" } else { "" },
                        "|",
                    ));
                }
                line(&current);
            }
            line(&line_break(&widths));
        }
    }
}

/// `+-----+----+` for the given column widths.
fn line_break(widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, w) in widths.iter().enumerate() {
        if i == 0 {
            let _ = write!(out, "+{}+", "-".repeat(w.saturating_sub(2)));
        } else {
            let _ = write!(out, "{}+", "-".repeat(w.saturating_sub(1)));
        }
    }
    out
}

/// `table.center_text`, including its arithmetic when the text does not fit.
fn center_text(text: &str, length: usize, left_edge: &str, right_edge: &str) -> String {
    let text_length = text_width(text) as i64;
    let length = length as i64;
    let char_start = length.div_euclid(2) - text_length.div_euclid(2) - 1;
    let length_so_far = left_edge.len() as i64 + char_start + text_length;
    let right_spaces = length - right_edge.len() as i64 - length_so_far;
    format!(
        "{left_edge}{}{text}{}{right_edge}",
        spaces(char_start),
        spaces(right_spaces)
    )
}

/// `table.align_left` with its two columns of left padding, for `text`
/// that shows as `text_length` columns (styled text is longer).
fn align_left_as(
    text: &str,
    text_length: usize,
    length: usize,
    left_edge: &str,
    right_edge: &str,
) -> String {
    let text_length = text_length as i64;
    let length = length as i64;
    let edges = (left_edge.len() + right_edge.len()) as i64;
    let padding = if length - (text_length + 2 + edges) >= 0 {
        2
    } else {
        0
    };
    let fill = length - (left_edge.len() as i64 + padding + text_length) - right_edge.len() as i64;
    format!(
        "{left_edge}{}{text}{}{right_edge}",
        spaces(padding),
        spaces(fill)
    )
}

fn spaces(n: i64) -> String {
    " ".repeat(usize::try_from(n).unwrap_or(0))
}

/// `table.get_text_length`: characters whose East Asian Width is Wide,
/// Fullwidth or Ambiguous count two columns.
fn text_width(text: &str) -> usize {
    text.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum()
}

fn is_wide(c: char) -> bool {
    let cp = u32::from(c);
    // Index of the first range whose end is >= cp.
    let pairs = WIDE_RANGES.len() / 2;
    let (mut lo, mut hi) = (0, pairs);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if WIDE_RANGES[2 * mid + 1] < cp {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo < pairs && WIDE_RANGES[2 * lo] <= cp
}

/// Inclusive `start, end` pairs of the code points Python's
/// `unicodedata.east_asian_width` (Unicode 14) calls `W`, `F` or `A`,
/// merged across unassigned code points.
#[rustfmt::skip]
const WIDE_RANGES: &[u32] = &[
    0xA1, 0xA1, 0xA4, 0xA4, 0xA7, 0xA8, 0xAA, 0xAA,
    0xAD, 0xAE, 0xB0, 0xB4, 0xB6, 0xBA, 0xBC, 0xBF,
    0xC6, 0xC6, 0xD0, 0xD0, 0xD7, 0xD8, 0xDE, 0xE1,
    0xE6, 0xE6, 0xE8, 0xEA, 0xEC, 0xED, 0xF0, 0xF0,
    0xF2, 0xF3, 0xF7, 0xFA, 0xFC, 0xFC, 0xFE, 0xFE,
    0x101, 0x101, 0x111, 0x111, 0x113, 0x113, 0x11B, 0x11B,
    0x126, 0x127, 0x12B, 0x12B, 0x131, 0x133, 0x138, 0x138,
    0x13F, 0x142, 0x144, 0x144, 0x148, 0x14B, 0x14D, 0x14D,
    0x152, 0x153, 0x166, 0x167, 0x16B, 0x16B, 0x1CE, 0x1CE,
    0x1D0, 0x1D0, 0x1D2, 0x1D2, 0x1D4, 0x1D4, 0x1D6, 0x1D6,
    0x1D8, 0x1D8, 0x1DA, 0x1DA, 0x1DC, 0x1DC, 0x251, 0x251,
    0x261, 0x261, 0x2C4, 0x2C4, 0x2C7, 0x2C7, 0x2C9, 0x2CB,
    0x2CD, 0x2CD, 0x2D0, 0x2D0, 0x2D8, 0x2DB, 0x2DD, 0x2DD,
    0x2DF, 0x2DF, 0x300, 0x36F, 0x391, 0x3A9, 0x3B1, 0x3C1,
    0x3C3, 0x3C9, 0x401, 0x401, 0x410, 0x44F, 0x451, 0x451,
    0x1100, 0x115F, 0x2010, 0x2010, 0x2013, 0x2016, 0x2018, 0x2019,
    0x201C, 0x201D, 0x2020, 0x2022, 0x2024, 0x2027, 0x2030, 0x2030,
    0x2032, 0x2033, 0x2035, 0x2035, 0x203B, 0x203B, 0x203E, 0x203E,
    0x2074, 0x2074, 0x207F, 0x207F, 0x2081, 0x2084, 0x20AC, 0x20AC,
    0x2103, 0x2103, 0x2105, 0x2105, 0x2109, 0x2109, 0x2113, 0x2113,
    0x2116, 0x2116, 0x2121, 0x2122, 0x2126, 0x2126, 0x212B, 0x212B,
    0x2153, 0x2154, 0x215B, 0x215E, 0x2160, 0x216B, 0x2170, 0x2179,
    0x2189, 0x2189, 0x2190, 0x2199, 0x21B8, 0x21B9, 0x21D2, 0x21D2,
    0x21D4, 0x21D4, 0x21E7, 0x21E7, 0x2200, 0x2200, 0x2202, 0x2203,
    0x2207, 0x2208, 0x220B, 0x220B, 0x220F, 0x220F, 0x2211, 0x2211,
    0x2215, 0x2215, 0x221A, 0x221A, 0x221D, 0x2220, 0x2223, 0x2223,
    0x2225, 0x2225, 0x2227, 0x222C, 0x222E, 0x222E, 0x2234, 0x2237,
    0x223C, 0x223D, 0x2248, 0x2248, 0x224C, 0x224C, 0x2252, 0x2252,
    0x2260, 0x2261, 0x2264, 0x2267, 0x226A, 0x226B, 0x226E, 0x226F,
    0x2282, 0x2283, 0x2286, 0x2287, 0x2295, 0x2295, 0x2299, 0x2299,
    0x22A5, 0x22A5, 0x22BF, 0x22BF, 0x2312, 0x2312, 0x231A, 0x231B,
    0x2329, 0x232A, 0x23E9, 0x23EC, 0x23F0, 0x23F0, 0x23F3, 0x23F3,
    0x2460, 0x24E9, 0x24EB, 0x254B, 0x2550, 0x2573, 0x2580, 0x258F,
    0x2592, 0x2595, 0x25A0, 0x25A1, 0x25A3, 0x25A9, 0x25B2, 0x25B3,
    0x25B6, 0x25B7, 0x25BC, 0x25BD, 0x25C0, 0x25C1, 0x25C6, 0x25C8,
    0x25CB, 0x25CB, 0x25CE, 0x25D1, 0x25E2, 0x25E5, 0x25EF, 0x25EF,
    0x25FD, 0x25FE, 0x2605, 0x2606, 0x2609, 0x2609, 0x260E, 0x260F,
    0x2614, 0x2615, 0x261C, 0x261C, 0x261E, 0x261E, 0x2640, 0x2640,
    0x2642, 0x2642, 0x2648, 0x2653, 0x2660, 0x2661, 0x2663, 0x2665,
    0x2667, 0x266A, 0x266C, 0x266D, 0x266F, 0x266F, 0x267F, 0x267F,
    0x2693, 0x2693, 0x269E, 0x269F, 0x26A1, 0x26A1, 0x26AA, 0x26AB,
    0x26BD, 0x26BF, 0x26C4, 0x26E1, 0x26E3, 0x26E3, 0x26E8, 0x26FF,
    0x2705, 0x2705, 0x270A, 0x270B, 0x2728, 0x2728, 0x273D, 0x273D,
    0x274C, 0x274C, 0x274E, 0x274E, 0x2753, 0x2755, 0x2757, 0x2757,
    0x2776, 0x277F, 0x2795, 0x2797, 0x27B0, 0x27B0, 0x27BF, 0x27BF,
    0x2B1B, 0x2B1C, 0x2B50, 0x2B50, 0x2B55, 0x2B59, 0x2E80, 0x303E,
    0x3041, 0x4DBF, 0x4E00, 0xA4C6, 0xA960, 0xA97C, 0xAC00, 0xD7A3,
    0xE000, 0xFAD9, 0xFE00, 0xFE19, 0xFE30, 0xFE6B, 0xFF01, 0xFF60,
    0xFFE0, 0xFFE6, 0xFFFD, 0xFFFD, 0x16FE0, 0x1B2FB, 0x1F004, 0x1F004,
    0x1F0CF, 0x1F0CF, 0x1F100, 0x1F10A, 0x1F110, 0x1F12D, 0x1F130, 0x1F169,
    0x1F170, 0x1F1AC, 0x1F200, 0x1F320, 0x1F32D, 0x1F335, 0x1F337, 0x1F37C,
    0x1F37E, 0x1F393, 0x1F3A0, 0x1F3CA, 0x1F3CF, 0x1F3D3, 0x1F3E0, 0x1F3F0,
    0x1F3F4, 0x1F3F4, 0x1F3F8, 0x1F43E, 0x1F440, 0x1F440, 0x1F442, 0x1F4FC,
    0x1F4FF, 0x1F53D, 0x1F54B, 0x1F54E, 0x1F550, 0x1F567, 0x1F57A, 0x1F57A,
    0x1F595, 0x1F596, 0x1F5A4, 0x1F5A4, 0x1F5FB, 0x1F64F, 0x1F680, 0x1F6C5,
    0x1F6CC, 0x1F6CC, 0x1F6D0, 0x1F6D2, 0x1F6D5, 0x1F6DF, 0x1F6EB, 0x1F6EC,
    0x1F6F4, 0x1F6FC, 0x1F7E0, 0x1F7F0, 0x1F90C, 0x1F93A, 0x1F93C, 0x1F945,
    0x1F947, 0x1F9FF, 0x1FA70, 0x1FAF6, 0x20000, 0x3FFFD, 0xE0100, 0x10FFFD,
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `SendCommand` as it comes over the wire.
    const SEND_COMMAND: &str = r#"{
  "Command": {
    "CloudWatchOutputConfig": {
      "CloudWatchLogGroupName": "",
      "CloudWatchOutputEnabled": false
    },
    "CommandId": "8d0d0b5f-6a5c-4f2e-9b1a-2c3d4e5f6a7b",
    "Comment": "uptime check",
    "CompletedCount": 0,
    "DocumentName": "AWS-RunShellScript",
    "ExpiresAfter": 1483635942.658,
    "InstanceIds": [
      "mi-0123456789abcdef0",
      "mi-0fedcba9876543210"
    ],
    "MaxConcurrency": "50",
    "NotificationConfig": {
      "NotificationArn": "",
      "NotificationEvents": [],
      "NotificationType": ""
    },
    "Parameters": {
      "commands": [
        "uptime",
        "echo \"done\""
      ]
    },
    "RequestedDateTime": 1483632342.658,
    "Status": "Pending",
    "TargetCount": 2,
    "Targets": [],
    "TimeoutSeconds": 3600
  },
  "ResponseMetadata": {
    "HTTPStatusCode": 200,
    "RequestId": "abc"
  }
}"#;
    /// `ListCommandInvocations` as it comes over the wire.
    const LIST_COMMAND_INVOCATIONS: &str = r#"{
  "CommandInvocations": [
    {
      "CommandId": "8d0d0b5f",
      "CommandPlugins": [
        {
          "Name": "aws:runShellScript",
          "Output": "up 3 days",
          "ResponseCode": 0,
          "ResponseFinishDateTime": 1483632345.25,
          "ResponseStartDateTime": 1483632344,
          "Status": "Success"
        }
      ],
      "InstanceId": "mi-0123456789abcdef0",
      "InstanceName": "web-1",
      "RequestedDateTime": 1483632342.658,
      "Status": "Success"
    },
    {
      "CommandId": "8d0d0b5f",
      "CommandPlugins": [
        {
          "Name": "aws:runShellScript",
          "Output": "",
          "ResponseCode": 1,
          "ResponseFinishDateTime": 1483632346.000001,
          "ResponseStartDateTime": 1483632344.9999995,
          "Status": "Failed"
        },
        {
          "Name": "aws:runPowerShellScript",
          "ResponseCode": -1,
          "Status": "Cancelled"
        }
      ],
      "InstanceId": "mi-0fedcba9876543210",
      "InstanceName": "db-1",
      "RequestedDateTime": 1483632342,
      "Status": "Failed"
    }
  ]
}"#;
    /// `DescribeInstanceInformation` as it comes over the wire.
    const DESCRIBE_INSTANCE_INFORMATION: &str = r#"{
  "InstanceInformationList": [
    {
      "AgentVersion": "0.1.0",
      "IPAddress": "10.0.0.11",
      "InstanceId": "mi-0123456789abcdef0",
      "IsLatestVersion": true,
      "LastPingDateTime": 1700000123.456789,
      "Name": "web-1",
      "PingStatus": "Online",
      "PlatformType": "Linux",
      "RegistrationDate": 1699990000
    },
    {
      "AgentVersion": "0.1.0",
      "IPAddress": "10.0.0.12",
      "InstanceId": "mi-0fedcba9876543210",
      "IsLatestVersion": false,
      "LastPingDateTime": 1700000001.5,
      "Name": "データ",
      "PingStatus": "ConnectionLost",
      "PlatformType": "Linux",
      "RegistrationDate": 1699990001.1
    }
  ]
}"#;
    /// `GetCommandInvocation` as it comes over the wire.
    const GET_COMMAND_INVOCATION: &str = r#"{
  "CommandId": "8d0d0b5f",
  "ExecutionElapsedTime": "PT0.5S",
  "ExecutionEndDateTime": "2017-01-05T16:05:45.25Z",
  "ExecutionStartDateTime": "2017-01-05T16:05:44.75Z",
  "InstanceId": "mi-0123456789abcdef0",
  "ResponseCode": 0,
  "StandardErrorContent": "",
  "StandardOutputContent": "Linux web-1\nété \"quoted\" \\ back\u0001\n",
  "Status": "Success"
}"#;
    /// `ListTagsForResource` as it comes over the wire.
    const LIST_TAGS_FOR_RESOURCE: &str = r#"{
  "TagList": [
    {
      "Key": "Env",
      "Value": "lab"
    },
    {
      "Key": "Owner",
      "Value": "ops"
    }
  ]
}"#;
    /// `AddTagsToResource` as it comes over the wire.
    const EMPTY: &str = r#"{
  "ResponseMetadata": {
    "RequestId": "abc"
  }
}"#;
    /// Golden outputs produced by awscli 1.45's own formatters (colour off,
    /// `TZ=UTC`, `cli_timestamp_format = iso8601`) from the same responses.
    #[test]
    fn render_matches_awscli() -> Result<(), serde_json::Error> {
        let cases: Vec<(&str, &str, OutputFormat, usize, &str)> = vec![
            (
                SEND_COMMAND,
                "SendCommand",
                OutputFormat::Json,
                80,
                r#"{
    "Command": {
        "CloudWatchOutputConfig": {
            "CloudWatchLogGroupName": "",
            "CloudWatchOutputEnabled": false
        },
        "CommandId": "8d0d0b5f-6a5c-4f2e-9b1a-2c3d4e5f6a7b",
        "Comment": "uptime check",
        "CompletedCount": 0,
        "DocumentName": "AWS-RunShellScript",
        "ExpiresAfter": "2017-01-05T17:05:42.658000+00:00",
        "InstanceIds": [
            "mi-0123456789abcdef0",
            "mi-0fedcba9876543210"
        ],
        "MaxConcurrency": "50",
        "NotificationConfig": {
            "NotificationArn": "",
            "NotificationEvents": [],
            "NotificationType": ""
        },
        "Parameters": {
            "commands": [
                "uptime",
                "echo \"done\""
            ]
        },
        "RequestedDateTime": "2017-01-05T16:05:42.658000+00:00",
        "Status": "Pending",
        "TargetCount": 2,
        "Targets": [],
        "TimeoutSeconds": 3600
    }
}
"#,
            ),
            (
                SEND_COMMAND,
                "SendCommand",
                OutputFormat::Text,
                80,
                concat!(
                    "COMMAND\t8d0d0b5f-6a5c-4f2e-9b1a-2c3d4e5f6a7b\tuptime check\t0\tAWS-RunShellScript\t2017-01-05T17:05:42.658000+00:00\t50\t2017-01-05T16:05:42.658000+00:00\tPending\t2\t3600\n",
                    "CLOUDWATCHOUTPUTCONFIG\t\tFalse\n",
                    "INSTANCEIDS\tmi-0123456789abcdef0\n",
                    "INSTANCEIDS\tmi-0fedcba9876543210\n",
                    "NOTIFICATIONCONFIG\t\t\n",
                    "COMMANDS\tuptime\n",
                    "COMMANDS\techo \"done\"\n",
                ),
            ),
            (
                SEND_COMMAND,
                "SendCommand",
                OutputFormat::Table,
                80,
                r#"-----------------------------------------------------------------
|                          SendCommand                          |
+---------------------------------------------------------------+
||                           Command                           ||
|+--------------------+----------------------------------------+|
||  CommandId         |  8d0d0b5f-6a5c-4f2e-9b1a-2c3d4e5f6a7b  ||
||  Comment           |  uptime check                          ||
||  CompletedCount    |  0                                     ||
||  DocumentName      |  AWS-RunShellScript                    ||
||  ExpiresAfter      |  2017-01-05T17:05:42.658000+00:00      ||
||  MaxConcurrency    |  50                                    ||
||  RequestedDateTime |  2017-01-05T16:05:42.658000+00:00      ||
||  Status            |  Pending                               ||
||  TargetCount       |  2                                     ||
||  TimeoutSeconds    |  3600                                  ||
|+--------------------+----------------------------------------+|
|||                  CloudWatchOutputConfig                   |||
||+--------------------------------------------+--------------+||
|||  CloudWatchLogGroupName                    |              |||
|||  CloudWatchOutputEnabled                   |  False       |||
||+--------------------------------------------+--------------+||
|||                        InstanceIds                        |||
||+-----------------------------------------------------------+||
|||  mi-0123456789abcdef0                                     |||
|||  mi-0fedcba9876543210                                     |||
||+-----------------------------------------------------------+||
|||                    NotificationConfig                     |||
||+-------------------------------------------------+---------+||
|||  NotificationArn                                |         |||
|||  NotificationType                               |         |||
||+-------------------------------------------------+---------+||
|||                        Parameters                         |||
||+-----------------------------------------------------------+||
||||                        commands                         ||||
|||+---------------------------------------------------------+|||
||||  uptime                                                 ||||
||||  echo "done"                                            ||||
|||+---------------------------------------------------------+|||
"#,
            ),
            (
                LIST_COMMAND_INVOCATIONS,
                "ListCommandInvocations",
                OutputFormat::Json,
                80,
                r#"{
    "CommandInvocations": [
        {
            "CommandId": "8d0d0b5f",
            "CommandPlugins": [
                {
                    "Name": "aws:runShellScript",
                    "Output": "up 3 days",
                    "ResponseCode": 0,
                    "ResponseFinishDateTime": "2017-01-05T16:05:45.250000+00:00",
                    "ResponseStartDateTime": "2017-01-05T16:05:44+00:00",
                    "Status": "Success"
                }
            ],
            "InstanceId": "mi-0123456789abcdef0",
            "InstanceName": "web-1",
            "RequestedDateTime": "2017-01-05T16:05:42.658000+00:00",
            "Status": "Success"
        },
        {
            "CommandId": "8d0d0b5f",
            "CommandPlugins": [
                {
                    "Name": "aws:runShellScript",
                    "Output": "",
                    "ResponseCode": 1,
                    "ResponseFinishDateTime": "2017-01-05T16:05:46.000001+00:00",
                    "ResponseStartDateTime": "2017-01-05T16:05:45+00:00",
                    "Status": "Failed"
                },
                {
                    "Name": "aws:runPowerShellScript",
                    "ResponseCode": -1,
                    "Status": "Cancelled"
                }
            ],
            "InstanceId": "mi-0fedcba9876543210",
            "InstanceName": "db-1",
            "RequestedDateTime": "2017-01-05T16:05:42+00:00",
            "Status": "Failed"
        }
    ]
}
"#,
            ),
            (
                LIST_COMMAND_INVOCATIONS,
                "ListCommandInvocations",
                OutputFormat::Text,
                80,
                concat!(
                    "COMMANDINVOCATIONS\t8d0d0b5f\tmi-0123456789abcdef0\tweb-1\t2017-01-05T16:05:42.658000+00:00\tSuccess\n",
                    "COMMANDPLUGINS\taws:runShellScript\tup 3 days\t0\t2017-01-05T16:05:45.250000+00:00\t2017-01-05T16:05:44+00:00\tSuccess\n",
                    "COMMANDINVOCATIONS\t8d0d0b5f\tmi-0fedcba9876543210\tdb-1\t2017-01-05T16:05:42+00:00\tFailed\n",
                    "COMMANDPLUGINS\taws:runShellScript\t\t1\t2017-01-05T16:05:46.000001+00:00\t2017-01-05T16:05:45+00:00\tFailed\n",
                    "COMMANDPLUGINS\taws:runPowerShellScript\t\t-1\t\t\tCancelled\n",
                ),
            ),
            (
                LIST_COMMAND_INVOCATIONS,
                "ListCommandInvocations",
                OutputFormat::Table,
                80,
                r#"-----------------------------------------------------------------------------------------------------------------------------------------
|                                                        ListCommandInvocations                                                         |
+---------------------------------------------------------------------------------------------------------------------------------------+
||                                                         CommandInvocations                                                          ||
|+------------------------------------------------+------------------------------------------------------------------------------------+|
||  CommandId                                     |  8d0d0b5f                                                                          ||
||  InstanceId                                    |  mi-0123456789abcdef0                                                              ||
||  InstanceName                                  |  web-1                                                                             ||
||  RequestedDateTime                             |  2017-01-05T16:05:42.658000+00:00                                                  ||
||  Status                                        |  Success                                                                           ||
|+------------------------------------------------+------------------------------------------------------------------------------------+|
|||                                                          CommandPlugins                                                           |||
||+------------------------------------------------------+----------------------------------------------------------------------------+||
|||  Name                                                |  aws:runShellScript                                                        |||
|||  Output                                              |  up 3 days                                                                 |||
|||  ResponseCode                                        |  0                                                                         |||
|||  ResponseFinishDateTime                              |  2017-01-05T16:05:45.250000+00:00                                          |||
|||  ResponseStartDateTime                               |  2017-01-05T16:05:44+00:00                                                 |||
|||  Status                                              |  Success                                                                   |||
||+------------------------------------------------------+----------------------------------------------------------------------------+||
||                                                         CommandInvocations                                                          ||
|+-------------------------------------------------------+-----------------------------------------------------------------------------+|
||  CommandId                                            |  8d0d0b5f                                                                   ||
||  InstanceId                                           |  mi-0fedcba9876543210                                                       ||
||  InstanceName                                         |  db-1                                                                       ||
||  RequestedDateTime                                    |  2017-01-05T16:05:42+00:00                                                  ||
||  Status                                               |  Failed                                                                     ||
|+-------------------------------------------------------+-----------------------------------------------------------------------------+|
|||                                                          CommandPlugins                                                           |||
||+-------------------------+---------+---------------+------------------------------------+----------------------------+-------------+||
|||          Name           | Output  | ResponseCode  |      ResponseFinishDateTime        |   ResponseStartDateTime    |   Status    |||
||+-------------------------+---------+---------------+------------------------------------+----------------------------+-------------+||
|||  aws:runShellScript     |         |  1            |  2017-01-05T16:05:46.000001+00:00  |  2017-01-05T16:05:45+00:00 |  Failed     |||
|||  aws:runPowerShellScript|         |  -1           |                                    |                            |  Cancelled  |||
||+-------------------------+---------+---------------+------------------------------------+----------------------------+-------------+||
"#,
            ),
            (
                LIST_COMMAND_INVOCATIONS,
                "ListCommandInvocations",
                OutputFormat::Table,
                200,
                r#"-----------------------------------------------------------------------------------------------------------------------------------------
|                                                        ListCommandInvocations                                                         |
+---------------------------------------------------------------------------------------------------------------------------------------+
||                                                         CommandInvocations                                                          ||
|+---------------+-------------------------------+---------------------+------------------------------------------------+--------------+|
||   CommandId   |          InstanceId           |    InstanceName     |               RequestedDateTime                |   Status     ||
|+---------------+-------------------------------+---------------------+------------------------------------------------+--------------+|
||  8d0d0b5f     |  mi-0123456789abcdef0         |  web-1              |  2017-01-05T16:05:42.658000+00:00              |  Success     ||
|+---------------+-------------------------------+---------------------+------------------------------------------------+--------------+|
|||                                                          CommandPlugins                                                           |||
||+--------------------+-------------+----------------+-------------------------------------+-----------------------------+-----------+||
|||        Name        |   Output    | ResponseCode   |       ResponseFinishDateTime        |    ResponseStartDateTime    |  Status   |||
||+--------------------+-------------+----------------+-------------------------------------+-----------------------------+-----------+||
|||  aws:runShellScript|  up 3 days  |  0             |  2017-01-05T16:05:45.250000+00:00   |  2017-01-05T16:05:44+00:00  |  Success  |||
||+--------------------+-------------+----------------+-------------------------------------+-----------------------------+-----------+||
||                                                         CommandInvocations                                                          ||
|+-----------------+----------------------------------+----------------------+------------------------------------------+--------------+|
||    CommandId    |           InstanceId             |    InstanceName      |            RequestedDateTime             |   Status     ||
|+-----------------+----------------------------------+----------------------+------------------------------------------+--------------+|
||  8d0d0b5f       |  mi-0fedcba9876543210            |  db-1                |  2017-01-05T16:05:42+00:00               |  Failed      ||
|+-----------------+----------------------------------+----------------------+------------------------------------------+--------------+|
|||                                                          CommandPlugins                                                           |||
||+-------------------------+---------+---------------+------------------------------------+----------------------------+-------------+||
|||          Name           | Output  | ResponseCode  |      ResponseFinishDateTime        |   ResponseStartDateTime    |   Status    |||
||+-------------------------+---------+---------------+------------------------------------+----------------------------+-------------+||
|||  aws:runShellScript     |         |  1            |  2017-01-05T16:05:46.000001+00:00  |  2017-01-05T16:05:45+00:00 |  Failed     |||
|||  aws:runPowerShellScript|         |  -1           |                                    |                            |  Cancelled  |||
||+-------------------------+---------+---------------+------------------------------------+----------------------------+-------------+||
"#,
            ),
            (
                DESCRIBE_INSTANCE_INFORMATION,
                "DescribeInstanceInformation",
                OutputFormat::Json,
                80,
                r#"{
    "InstanceInformationList": [
        {
            "AgentVersion": "0.1.0",
            "IPAddress": "10.0.0.11",
            "InstanceId": "mi-0123456789abcdef0",
            "IsLatestVersion": true,
            "LastPingDateTime": "2023-11-14T22:15:23.456789+00:00",
            "Name": "web-1",
            "PingStatus": "Online",
            "PlatformType": "Linux",
            "RegistrationDate": "2023-11-14T19:26:40+00:00"
        },
        {
            "AgentVersion": "0.1.0",
            "IPAddress": "10.0.0.12",
            "InstanceId": "mi-0fedcba9876543210",
            "IsLatestVersion": false,
            "LastPingDateTime": "2023-11-14T22:13:21.500000+00:00",
            "Name": "データ",
            "PingStatus": "ConnectionLost",
            "PlatformType": "Linux",
            "RegistrationDate": "2023-11-14T19:26:41.100000+00:00"
        }
    ]
}
"#,
            ),
            (
                DESCRIBE_INSTANCE_INFORMATION,
                "DescribeInstanceInformation",
                OutputFormat::Text,
                80,
                concat!(
                    "INSTANCEINFORMATIONLIST\t0.1.0\t10.0.0.11\tmi-0123456789abcdef0\tTrue\t2023-11-14T22:15:23.456789+00:00\tweb-1\tOnline\tLinux\t2023-11-14T19:26:40+00:00\n",
                    "INSTANCEINFORMATIONLIST\t0.1.0\t10.0.0.12\tmi-0fedcba9876543210\tFalse\t2023-11-14T22:13:21.500000+00:00\tデータ\tConnectionLost\tLinux\t2023-11-14T19:26:41.100000+00:00\n",
                ),
            ),
            (
                DESCRIBE_INSTANCE_INFORMATION,
                "DescribeInstanceInformation",
                OutputFormat::Table,
                80,
                r#"------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------
|                                                                                  DescribeInstanceInformation                                                                                 |
+----------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------+
||                                                                                   InstanceInformationList                                                                                  ||
|+--------------+------------+-----------------------+------------------+-----------------------------------+---------+-----------------+----------------+------------------------------------+|
|| AgentVersion | IPAddress  |      InstanceId       | IsLatestVersion  |         LastPingDateTime          |  Name   |   PingStatus    | PlatformType   |         RegistrationDate           ||
|+--------------+------------+-----------------------+------------------+-----------------------------------+---------+-----------------+----------------+------------------------------------+|
||  0.1.0       |  10.0.0.11 |  mi-0123456789abcdef0 |  True            |  2023-11-14T22:15:23.456789+00:00 |  web-1  |  Online         |  Linux         |  2023-11-14T19:26:40+00:00         ||
||  0.1.0       |  10.0.0.12 |  mi-0fedcba9876543210 |  False           |  2023-11-14T22:13:21.500000+00:00 |  データ |  ConnectionLost |  Linux         |  2023-11-14T19:26:41.100000+00:00  ||
|+--------------+------------+-----------------------+------------------+-----------------------------------+---------+-----------------+----------------+------------------------------------+|
"#,
            ),
            (
                GET_COMMAND_INVOCATION,
                "GetCommandInvocation",
                OutputFormat::Json,
                80,
                r#"{
    "CommandId": "8d0d0b5f",
    "ExecutionElapsedTime": "PT0.5S",
    "ExecutionEndDateTime": "2017-01-05T16:05:45.25Z",
    "ExecutionStartDateTime": "2017-01-05T16:05:44.75Z",
    "InstanceId": "mi-0123456789abcdef0",
    "ResponseCode": 0,
    "StandardErrorContent": "",
    "StandardOutputContent": "Linux web-1\nété \"quoted\" \\ back\u0001\n",
    "Status": "Success"
}
"#,
            ),
            (
                GET_COMMAND_INVOCATION,
                "GetCommandInvocation",
                OutputFormat::Text,
                80,
                concat!(
                    "8d0d0b5f\tPT0.5S\t2017-01-05T16:05:45.25Z\t2017-01-05T16:05:44.75Z\tmi-0123456789abcdef0\t0\t\tLinux web-1\n",
                    "été \"quoted\" \\ back\u{1}\n",
                    "\tSuccess\n",
                ),
            ),
            (
                LIST_TAGS_FOR_RESOURCE,
                "ListTagsForResource",
                OutputFormat::Text,
                80,
                concat!("TAGLIST\tEnv\tlab\n", "TAGLIST\tOwner\tops\n",),
            ),
            (
                LIST_TAGS_FOR_RESOURCE,
                "ListTagsForResource",
                OutputFormat::Table,
                80,
                r#"----------------------
| ListTagsForResource|
+--------------------+
||      TagList     ||
|+--------+---------+|
||   Key  |  Value  ||
|+--------+---------+|
||  Env   |  lab    ||
||  Owner |  ops    ||
|+--------+---------+|
"#,
            ),
            (EMPTY, "AddTagsToResource", OutputFormat::Json, 80, ""),
            (EMPTY, "AddTagsToResource", OutputFormat::Text, 80, ""),
            (EMPTY, "AddTagsToResource", OutputFormat::Table, 80, ""),
        ];
        for (body, operation, format, width, want) in cases {
            let response: Value = serde_json::from_str(body)?;
            let got = render_with_width(operation, &response, format, width);
            assert_eq!(got, want, "{operation} {format:?} at width {width}");
            if width == DEFAULT_TERMINAL_WIDTH {
                assert_eq!(render(operation, &response, format), want);
            }
        }
        Ok(())
    }

    #[test]
    fn timestamps_become_iso_8601() {
        // Expected values are Python's `datetime.fromtimestamp(t, tzutc()).isoformat()`.
        let cases: Vec<(Value, &str)> = vec![
            (json!(0), "1970-01-01T00:00:00+00:00"),
            (json!(1483632342.658), "2017-01-05T16:05:42.658000+00:00"),
            (json!(1483632342), "2017-01-05T16:05:42+00:00"),
            (json!(1483632344.9999995), "2017-01-05T16:05:45+00:00"),
            (json!(1483632346.000001), "2017-01-05T16:05:46.000001+00:00"),
            (json!(1700000123.456789), "2023-11-14T22:15:23.456789+00:00"),
            (json!(1699990001.1), "2023-11-14T19:26:41.100000+00:00"),
            (json!(1.5), "1970-01-01T00:00:01.500000+00:00"),
            (json!(-1.5), "1969-12-31T23:59:58.500000+00:00"),
            (json!(253402300799_u64), "9999-12-31T23:59:59+00:00"),
            (json!(951782400.0000005), "2000-02-29T00:00:00+00:00"),
            (json!(1e-7), "1970-01-01T00:00:00+00:00"),
        ];
        for (epoch, want) in cases {
            let mut value = json!({"Nested": [{"RequestedDateTime": epoch.clone()}]});
            timestamps_to_iso(&mut value);
            assert_eq!(
                value["Nested"][0]["RequestedDateTime"],
                json!(want),
                "{epoch}"
            );
        }

        let mut value = json!({
            "CommandInvocations": [{
                "CommandPlugins": [{"ResponseStartDateTime": 1483632344, "ResponseCode": 0}],
                "RequestedDateTime": 1483632342.658,
            }],
            // String-typed in the model: never converted.
            "ExecutionStartDateTime": "2017-01-05T16:05:44.75Z",
            // Timestamp in some shapes, string in others: left as it is.
            "StartDate": "2017-01-05",
            "EndDate": 1483632342,
            // Not a timestamp member at all.
            "TimeoutSeconds": 3600,
            // Out of the range Python can show: left alone.
            "CreatedDate": 1e300,
        });
        timestamps_to_iso(&mut value);
        let once = value.clone();
        timestamps_to_iso(&mut value);
        assert_eq!(value, once, "conversion is idempotent");
        assert_eq!(
            value,
            json!({
                "CommandInvocations": [{
                    "CommandPlugins": [{
                        "ResponseStartDateTime": "2017-01-05T16:05:44+00:00",
                        "ResponseCode": 0,
                    }],
                    "RequestedDateTime": "2017-01-05T16:05:42.658000+00:00",
                }],
                "ExecutionStartDateTime": "2017-01-05T16:05:44.75Z",
                "StartDate": "2017-01-05",
                "EndDate": 1483632342,
                "TimeoutSeconds": 3600,
                "CreatedDate": 1e300,
            })
        );
    }

    #[test]
    fn timestamp_members_come_from_the_model_and_exclude_string_names() {
        let names = tether_ssm::model::model().timestamp_members();
        assert!(names.len() > 40, "{names:?}");
        for name in [
            "ExecutionStartDateTime",
            "ExecutionEndDateTime",
            "ExecutionElapsedTime",
            // Timestamps in some shapes, strings in others: not told by name.
            "StartDate",
            "EndDate",
        ] {
            assert!(!names.contains(name), "{name}");
        }
        for name in ["RequestedDateTime", "ResponseStartDateTime", "ExpiresAfter"] {
            assert!(names.contains(name), "{name}");
        }
    }

    #[test]
    fn terminal_escapes_never_reach_a_terminal() {
        assert_eq!(
            escape_for_terminal("\u{1b}[31mred\u{1b}[0m\u{7}\u{1}\u{7f}\u{9b}|\tx\r\nok\rhidden\n"),
            "\\x1b[31mred\\x1b[0m\\x07\\x01\\x7f\\x9b|\tx\r\nok\\x0dhidden\n"
        );
        assert_eq!(escape_for_terminal("データ é\n"), "データ é\n");
    }

    #[test]
    fn members_print_in_model_order_with_extras_after() {
        let mut v = json!({"Status": "Success", "Zed": 1, "DocumentHash": "h",
                           "PluginName": "aws:runShellScript", "CommandId": "c"});
        order_by_model(&mut v, "GetCommandInvocationResult");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["CommandId", "PluginName", "Status", "DocumentHash", "Zed"]
        );
        let mut v = json!({"CommandInvocations": [{"Status": "x", "CommandId": "c",
                           "CommandPlugins": [{"Output": "o", "Name": "n"}]}]});
        order_by_model(&mut v, "ListCommandInvocationsResult");
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"CommandInvocations":[{"CommandId":"c","Status":"x","CommandPlugins":[{"Name":"n","Output":"o"}]}]}"#
        );
    }

    #[test]
    fn floats_print_like_python_repr() {
        // Expected values are Python's `repr(float)`.
        let cases: Vec<(f64, &str)> = vec![
            (0.1, "0.1"),
            (2.5, "2.5"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123456.789, "123456.789"),
            (-0.0, "-0.0"),
            (3.0, "3.0"),
            (100.0, "100.0"),
            (1.5e300, "1.5e+300"),
            (12345678901234567.0, "1.2345678901234568e+16"),
            (1.0 / 3.0, "0.3333333333333333"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (-2.5e-7, "-2.5e-07"),
            (1234567890123456.7, "1234567890123456.8"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float(f), want, "{f:e}");
        }
        // JSON keeps the order the response has (the server's, which follows the model).
        let value = json!({"Big": 1e16, "Count": 3, "Flag": true, "None": null, "Ratio": 1e-5});
        assert_eq!(
            render("Op", &value, OutputFormat::Text),
            "1e+16\t3\tTrue\tNone\t1e-05\n"
        );
        assert_eq!(
            render("Op", &value, OutputFormat::Json),
            "{\n    \"Big\": 1e+16,\n    \"Count\": 3,\n    \"Flag\": true,\n    \"None\": null,\n    \"Ratio\": 1e-05\n}\n"
        );
    }

    #[test]
    fn output_format_parses_awscli_names() {
        let cases = [
            ("json", Some(OutputFormat::Json)),
            ("text", Some(OutputFormat::Text)),
            ("table", Some(OutputFormat::Table)),
            ("yaml", None),
            ("JSON", None),
            ("", None),
        ];
        for (name, want) in cases {
            match (name.parse::<OutputFormat>(), want) {
                (Ok(got), Some(want)) => assert_eq!(got, want),
                (Err(OutputError::UnknownFormat { value }), None) => assert_eq!(value, name),
                (got, want) => panic!("{name:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn text_and_table_edge_cases() {
        // Top-level scalars print bare; nested scalar lists print one per line.
        let value = json!({"Ids": ["a", "b"], "Name": "x", "Nested": [["p", "q"], "r"]});
        assert_eq!(
            render("Op", &value, OutputFormat::Text),
            "x\nIDS\ta\nIDS\tb\nNESTED\tr\nNESTED\tp\nNESTED\tq\n"
        );
        // A dict with one scalar member is a name/value row.
        let value = json!({"Status": "Success"});
        assert_eq!(
            render("GetStatus", &value, OutputFormat::Table),
            "-----------------------\n\
             |      GetStatus      |\n\
             +---------+-----------+\n\
             |  Status |  Success  |\n\
             +---------+-----------+\n"
        );
        // A title wider than the columns sets the width, without padding.
        let value = json!({"Ids": ["a"]});
        assert_eq!(
            render("DescribeSomethingLong", &value, OutputFormat::Table),
            "-----------------------\n\
             |DescribeSomethingLong|\n\
             +---------------------+\n\
             ||        Ids        ||\n\
             |+-------------------+|\n\
             ||  a                ||\n\
             |+-------------------+|\n"
        );
        // Falsy responses and members print nothing.
        for value in [json!({}), json!({"ResponseMetadata": {"RequestId": "r"}})] {
            for format in [OutputFormat::Json, OutputFormat::Text, OutputFormat::Table] {
                assert_eq!(render("Op", &value, format), "", "{value} {format:?}");
            }
        }
        // Only an empty object is "no response body" to the JSON printer.
        assert_eq!(render("Op", &json!([]), OutputFormat::Json), "[]\n");
        assert_eq!(render("Op", &json!([]), OutputFormat::Text), "");
        assert_eq!(render("Op", &json!([]), OutputFormat::Table), "");
    }
}
