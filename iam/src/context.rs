//! What a request brings to the conditions: its context keys.

use std::collections::HashMap;

/// The request's condition keys (`aws:SourceIp`, `aws:CurrentTime`,
/// `ssm:resourceTag/Env`, …), matched without case as IAM does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    values: HashMap<String, Vec<String>>,
}

impl Context {
    pub fn new() -> Context {
        Context::default()
    }

    /// Sets a single-valued key.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.values
            .insert(key.to_ascii_lowercase(), vec![value.into()]);
        self
    }

    /// Sets a multi-valued key.
    pub fn set_all(&mut self, key: &str, values: Vec<String>) -> &mut Self {
        self.values.insert(key.to_ascii_lowercase(), values);
        self
    }

    pub fn get(&self, key: &str) -> Option<&Vec<String>> {
        self.values.get(&key.to_ascii_lowercase())
    }

    /// The single value of a key, for policy variables.
    pub(crate) fn one(&self, key: &str) -> Option<&str> {
        self.get(key)
            .filter(|v| v.len() == 1)
            .map(|v| v[0].as_str())
    }
}
