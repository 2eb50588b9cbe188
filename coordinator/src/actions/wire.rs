//! The pieces of SSM's JSON that every action shares: timestamps as epoch
//! seconds, pages and their `NextToken`, tags as stored, and stored JSON
//! read back (a value that does not parse is an error naming its row).

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tether_ssm::target::Tag;
use tether_ssm::{ApiError, limits};

/// Epoch seconds, as SSM timestamps travel on the wire.
pub fn ts(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// SSM's string timestamps in GetCommandInvocation, e.g. `2017-06-14T21:38:43.363Z`.
pub fn string_time(ms: Option<i64>) -> String {
    ms.map(tether_util::time::iso_ms).unwrap_or_default()
}

/// Where a page starts and how many items it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub offset: i64,
    pub size: i64,
}

impl Page {
    /// The page a request asks for: from its `NextToken` (or the start), of
    /// `MaxResults` items (the model has checked its range) or `default`.
    pub fn of(
        op: &str,
        next_token: Option<&str>,
        max_results: Option<i64>,
        default: i64,
    ) -> Result<Page, ApiError> {
        let offset = match next_token {
            None | Some("") => 0,
            Some(t) => decode_token(t).ok_or_else(|| {
                ApiError::new(
                    "InvalidNextToken",
                    format!("{op}: NextToken {t:?} is not valid"),
                )
            })?,
        };
        Ok(Page {
            offset,
            size: max_results.unwrap_or(default).max(1),
        })
    }

    /// One page of a list held in memory, as `{member: [...], NextToken?}`:
    /// from the page's offset, as many items as [`Packer`] lets in.
    pub fn of_list(self, member: &str, all: Vec<Value>) -> Value {
        let total = all.len();
        let start = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let mut packer = self.packer();
        for v in all.into_iter().skip(start) {
            if !packer.push(v) {
                break;
            }
        }
        let taken = packer.len();
        self.answer(member, packer, taken, start.saturating_add(taken) < total)
    }

    /// A packer for this page's items.
    pub fn packer(self) -> Packer {
        Packer {
            size: usize::try_from(self.size).unwrap_or(usize::MAX),
            budget: limits::MAX_LIST_PAGE_BYTES,
            items: Vec::new(),
            bytes: 0,
        }
    }

    /// The page's answer, `{member: [...], NextToken?}`: `consumed` is how
    /// many of the list's items from the offset on this page accounts for,
    /// `more` whether any may follow them.
    pub fn answer(self, member: &str, packed: Packer, consumed: usize, more: bool) -> Value {
        let mut out = json!({ member: packed.items });
        if more {
            out["NextToken"] = json!(encode_token(
                self.offset
                    .saturating_add(i64::try_from(consumed).unwrap_or(i64::MAX))
            ));
        }
        out
    }
}

/// The items of one page as they are gathered: at most the page's size and,
/// past the first item, at most [`limits::MAX_LIST_PAGE_BYTES`] of JSON
/// together. A page holds fewer items (and a NextToken) rather than more
/// bytes; an item larger than the budget travels alone.
#[derive(Debug)]
pub struct Packer {
    size: usize,
    budget: usize,
    items: Vec<Value>,
    bytes: usize,
}

impl Packer {
    /// Takes `v` if the page has room for it; false (and `v` dropped) when
    /// the page is full.
    pub fn push(&mut self, v: Value) -> bool {
        let n = json_bytes(&v);
        if !self.fits(n) {
            return false;
        }
        self.bytes += n;
        self.items.push(v);
        true
    }

    /// Whether an item of `n` bytes would still be taken.
    pub fn fits(&self, n: usize) -> bool {
        self.items.len() < self.size
            && (self.items.is_empty() || self.bytes.saturating_add(n) <= self.budget)
    }

    /// Items taken so far.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The IDs, from the first on, whose sizes (the bytes each item will list,
/// as the store counts them) fit [`limits::MAX_LIST_PAGE_BYTES`] together;
/// always the first: a page is never empty while items remain.
pub fn fitting(sizes: &[(String, i64)]) -> Vec<String> {
    let mut bytes = 0usize;
    let mut chosen = Vec::new();
    for (id, size) in sizes {
        let n = usize::try_from(*size).unwrap_or(usize::MAX);
        if !chosen.is_empty() && bytes.saturating_add(n) > limits::MAX_LIST_PAGE_BYTES {
            break;
        }
        bytes = bytes.saturating_add(n);
        chosen.push(id.clone());
    }
    chosen
}

/// The bytes `v` takes as JSON, counted without building the text.
pub fn json_bytes(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

fn encode_token(offset: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("offset:{offset}"))
}

fn decode_token(t: &str) -> Option<i64> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(t).ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
        .filter(|o: &i64| *o >= 0)
}

/// A JSON column read back; `row` names where it came from (`command X:
/// parameters`) for the error when it does not parse.
pub fn stored<T: DeserializeOwned>(row: &str, json: &str) -> Result<T, ApiError> {
    serde_json::from_str(json).map_err(|e| corrupt(row, &e.to_string()))
}

/// A resource's stored tags (`[{"Key":..,"Value":..}]`) as pairs; `row`
/// names the resource for the error when they do not parse.
pub fn tag_pairs(row: &str, tags_json: &str) -> Result<Vec<Tag>, ApiError> {
    tether_ssm::target::tags_from_json(tags_json).map_err(|e| corrupt(&format!("{row}: tags"), &e))
}

/// A stored value that does not read back, as the service's fault.
pub fn corrupt(row: &str, why: &str) -> ApiError {
    tracing::error!(%row, error = %why, "stored value does not read back");
    ApiError::new(
        "InternalServerError",
        format!("stored {row} is corrupt: {why}"),
    )
}

/// Tags as SSM's JSON list.
pub fn tags_json(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
}

/// Base32's alphabet: access key IDs and IAM's user IDs.
pub const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// `len` characters drawn at random from `alphabet`.
pub fn random_string(alphabet: &[u8], len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// `30d`, `12h`, `15m`, `90s` in milliseconds; `op`'s `member` is named in
/// the refusal.
pub fn duration_ms(op: &str, member: &str, text: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::validation(format!(
            "{op}: {member} {text:?} is not a duration (a number and a unit, s, m, h or d: e.g. 30d)"
        ))
    };
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .filter(|s| *s > 0)
    .ok_or_else(bad)?;
    if secs > limits::OPERATOR_TOKEN_MAX_TTL_SECS {
        return Err(ApiError::validation(format!(
            "{op}: {member} {text:?} is longer than the most allowed, {} days",
            limits::OPERATOR_TOKEN_MAX_TTL_SECS / 86_400
        )));
    }
    Ok(secs * 1000)
}

/// The tags a request gives (SSM's `Tags` member) as key/value pairs.
pub fn given_tags(tags: Option<Vec<tether_ssm::input::Tag>>) -> Vec<(String, String)> {
    tags.unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_pages() {
        assert_eq!(decode_token(&encode_token(150)), Some(150));
        assert_eq!(decode_token("garbage"), None);
        let p = Page::of("Op", None, Some(2), 50).unwrap();
        let v = p.of_list("Items", vec![json!(1), json!(2), json!(3)]);
        assert_eq!(v["Items"], json!([1, 2]));
        let next = v["NextToken"].as_str().unwrap();
        let p = Page::of("Op", Some(next), Some(2), 50).unwrap();
        let v = p.of_list("Items", vec![json!(1), json!(2), json!(3)]);
        assert_eq!(v["Items"], json!([3]));
        assert!(v.get("NextToken").is_none());
        let e = Page::of("Op", Some("nope"), None, 50).unwrap_err();
        assert_eq!(e.kind, "InvalidNextToken");
    }

    #[test]
    fn pages_stop_at_the_byte_budget_but_never_come_back_empty() {
        let item = |kib: usize| json!({"Blob": "x".repeat(kib * 1024)});
        // 50 items of 100 KiB: a page holds what fits 1 MiB, and says where to go on.
        let all: Vec<Value> = (0..50).map(|_| item(100)).collect();
        let p = Page::of("Op", None, None, 50).unwrap();
        let v = p.of_list("Items", all.clone());
        let n = v["Items"].as_array().unwrap().len();
        assert_eq!(n, 10);
        assert!(json_bytes(&v["Items"]) <= limits::MAX_LIST_PAGE_BYTES);
        let next = v["NextToken"].as_str().unwrap();
        assert_eq!(decode_token(next), Some(10));
        // Following the tokens visits every item once.
        let (mut seen, mut token) = (n, Some(next.to_string()));
        while let Some(t) = token {
            let v = Page::of("Op", Some(&t), None, 50)
                .unwrap()
                .of_list("Items", all.clone());
            seen += v["Items"].as_array().unwrap().len();
            token = v["NextToken"].as_str().map(str::to_string);
        }
        assert_eq!(seen, 50);
        // An item larger than the budget travels alone.
        let v = p.of_list("Items", vec![item(2048), item(1)]);
        assert_eq!(v["Items"].as_array().unwrap().len(), 1);
        assert!(v.get("NextToken").is_some());
        assert_eq!(
            json_bytes(&json!({"a": [1, "é"]})),
            r#"{"a":[1,"é"]}"#.len()
        );
    }

    #[test]
    fn corrupt_stored_json_names_the_row() {
        let e = tag_pairs("instance mi-1", "{not json").unwrap_err();
        assert_eq!(e.kind, "InternalServerError");
        assert!(e.message.contains("instance mi-1: tags"), "{}", e.message);
        assert_eq!(
            tag_pairs("instance mi-1", r#"[{"Key":"Env","Value":"lab"}]"#).unwrap(),
            vec![("Env".to_string(), "lab".to_string())]
        );
    }

    #[test]
    fn durations_name_what_is_wrong() {
        assert_eq!(
            duration_ms("Op", "ExpiresIn", "30d").unwrap(),
            30 * 86_400_000
        );
        assert_eq!(duration_ms("Op", "ExpiresIn", "90s").unwrap(), 90_000);
        for bad in ["", "d", "30", "30w", "-1d", "0s", "9999d"] {
            let e = duration_ms("Op", "ExpiresIn", bad).unwrap_err();
            assert!(e.message.contains("Op: ExpiresIn"), "{bad}: {e}");
        }
    }
}
