//! ConsoleLogin: signing in to the web console (`crate::console`). The
//! request carries the credential being signed in with; once it is
//! authorised (`tether:ConsoleLogin`) and recorded like any other, the
//! answer names the principal the session will stand for.

use serde_json::{Value, json};
use tether_ssm::ApiError;

use crate::authz::{self, Authority};

pub(super) fn login(authority: &Authority) -> Result<Value, ApiError> {
    let mut out = json!({ "Principal": authority.arn() });
    if let Some(user) = authz::user_of(authority) {
        out["UserName"] = json!(user);
    }
    Ok(out)
}
