//! The pieces of SSM's JSON that every action shares: timestamps as epoch
//! seconds, pages and their `NextToken`, tags as stored, and stored JSON
//! read back (a value that does not parse is an error naming its row).

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tether_ssm::ApiError;
use tether_ssm::target::Tag;

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

    /// One page of a list held in memory, as `{member: [...], NextToken?}`.
    pub fn of_list(self, member: &str, all: Vec<Value>) -> Value {
        let total = all.len() as i64;
        let page: Vec<Value> = all
            .into_iter()
            .skip(self.offset as usize)
            .take(self.size as usize)
            .collect();
        let mut out = json!({ member: page });
        if self.offset + self.size < total {
            out["NextToken"] = json!(encode_token(self.offset + self.size));
        }
        out
    }

    /// Adds `NextToken` when a page read from the store came back full
    /// (there may be more).
    pub fn with_next_token(self, mut v: Value, got: usize) -> Value {
        if got as i64 >= self.size {
            v["NextToken"] = json!(encode_token(self.offset + self.size));
        }
        v
    }
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
    fn corrupt_stored_json_names_the_row() {
        let e = tag_pairs("instance mi-1", "{not json").unwrap_err();
        assert_eq!(e.kind, "InternalServerError");
        assert!(e.message.contains("instance mi-1: tags"), "{}", e.message);
        assert_eq!(
            tag_pairs("instance mi-1", r#"[{"Key":"Env","Value":"lab"}]"#).unwrap(),
            vec![("Env".to_string(), "lab".to_string())]
        );
    }
}
