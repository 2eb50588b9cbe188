//! Users, their inline policies and their operator tokens: IAM's verbs and
//! shapes (`CreateUser`, `GetUser`, `ListUsers`, `DeleteUser`, `TagUser`,
//! `UntagUser`, `ListUserTags`, `PutUserPolicy`, `GetUserPolicy`,
//! `ListUserPolicies`, `DeleteUserPolicy`, `SimulatePrincipalPolicy`) and
//! Tether's own (`CreateOperatorConfig`, `ListOperatorTokens`,
//! `DeleteOperatorToken`, `RotateRootToken`). Served on the operator channel
//! only.
//!
//! A policy is parsed when it is put (a malformed one is refused naming the
//! statement and the field) and again whenever it is evaluated.

use serde_json::{Value, json};
use tether_iam::{Context, Decision};
use tether_ssm::input::{
    CreateOperatorConfigRequest, CreateUserRequest, DeleteOperatorTokenRequest,
    DeleteUserPolicyRequest, DeleteUserRequest, GetUserPolicyRequest, GetUserRequest,
    ListOperatorTokensRequest, ListUserPoliciesRequest, ListUserTagsRequest, ListUsersRequest,
    PutUserPolicyRequest, SimulatePrincipalPolicyRequest, TagUserRequest, UntagUserRequest,
};
use tether_ssm::{ApiError, limits};
use tether_store::{OperatorTokenRow, UserDeletion, UserRow};
use tether_util::time::{iso_ms, now_ms};

use super::wire::{ID_ALPHABET, duration_ms, random_string, tag_pairs};
use crate::authz::{self, Authority, Resource};
use crate::core::Coordinator;
use crate::credentials::{Caller, token_hash};

fn no_such_user(op: &str, name: &str) -> ApiError {
    ApiError::new(
        "NoSuchEntity",
        format!("{op}: The user with name {name} cannot be found."),
    )
}

async fn existing(c: &Coordinator, op: &str, name: &str) -> Result<UserRow, ApiError> {
    c.store
        .user(name)
        .await?
        .ok_or_else(|| no_such_user(op, name))
}

fn tags_value(u: &UserRow) -> Result<Vec<Value>, ApiError> {
    Ok(tag_pairs(&format!("user {}", u.user_name), &u.tags_json)?
        .into_iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect())
}

fn user_json(c: &Coordinator, u: &UserRow, with_tags: bool) -> Result<Value, ApiError> {
    let mut v = json!({
        "Path": u.path,
        "UserName": u.user_name,
        "UserId": u.user_id,
        "Arn": c.account.user_arn(&u.path, &u.user_name),
        "CreateDate": iso_ms(u.created_ms),
    });
    let tags = tags_value(u)?;
    if with_tags && !tags.is_empty() {
        v["Tags"] = json!(tags);
    }
    Ok(v)
}

fn tags_json(tags: &[(String, String)]) -> String {
    json!(
        tags.iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect::<Vec<_>>()
    )
    .to_string()
}

pub(super) async fn create(c: &Coordinator, r: CreateUserRequest) -> Result<Value, ApiError> {
    let op = "CreateUser";
    if r.permissions_boundary.is_some() {
        return Err(ApiError::validation(format!(
            "{op}: PermissionsBoundary is not supported by Tether (inline policies only)"
        )));
    }
    let path = r.path.unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || !path.ends_with('/') {
        return Err(ApiError::new(
            "ValidationError",
            format!("{op}: Path {path:?} must begin and end with /"),
        ));
    }
    if c.store.users("/").await?.len() >= limits::USERS_PER_ACCOUNT {
        return Err(ApiError::new(
            "LimitExceeded",
            format!(
                "{op}: Cannot exceed quota for UsersPerAccount: {}",
                limits::USERS_PER_ACCOUNT
            ),
        ));
    }
    let tags: Vec<(String, String)> = r
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    let row = UserRow {
        user_name: r.user_name.clone(),
        user_id: format!("AIDA{}", random_string(ID_ALPHABET, 17)),
        path,
        created_ms: now_ms(),
        tags_json: tags_json(&tags),
    };
    if !c.store.insert_user(&row).await? {
        return Err(ApiError::new(
            "EntityAlreadyExists",
            format!("{op}: User with name {} already exists.", r.user_name),
        ));
    }
    tracing::info!(user = %row.user_name, "user created");
    Ok(json!({"User": user_json(c, &row, true)?}))
}

pub(super) async fn get(
    c: &Coordinator,
    authority: &Authority,
    r: GetUserRequest,
) -> Result<Value, ApiError> {
    let name = match (&r.user_name, authority) {
        (Some(n), _) => n.clone(),
        (None, Authority::User(u)) => u.user.user_name.clone(),
        (None, Authority::Root { .. }) => {
            return Ok(json!({"User": {
                "Path": "/", "UserName": "root", "UserId": c.account.id,
                "Arn": c.account.root_arn(), "CreateDate": iso_ms(0),
            }}));
        }
    };
    let u = existing(c, "GetUser", &name).await?;
    Ok(json!({"User": user_json(c, &u, true)?}))
}

pub(super) async fn list(c: &Coordinator, r: ListUsersRequest) -> Result<Value, ApiError> {
    let users = c
        .store
        .users(r.path_prefix.as_deref().unwrap_or("/"))
        .await?
        .iter()
        .map(|u| user_json(c, u, false))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({"Users": users, "IsTruncated": false}))
}

pub(super) async fn delete(c: &Coordinator, r: DeleteUserRequest) -> Result<Value, ApiError> {
    let op = "DeleteUser";
    let conflict = |what: &str| {
        ApiError::new(
            "DeleteConflict",
            format!("{op}: Cannot delete entity, must delete {what} first."),
        )
    };
    match c.store.delete_user(&r.user_name).await? {
        UserDeletion::Deleted => {
            tracing::info!(user = %r.user_name, "user deleted (and its operator tokens)");
            Ok(json!({}))
        }
        UserDeletion::NoSuchUser => Err(no_such_user(op, &r.user_name)),
        UserDeletion::HasAccessKeys(_) => Err(conflict("access keys")),
        UserDeletion::HasPolicies(_) => Err(conflict("policies")),
    }
}

pub(super) async fn tag(c: &Coordinator, r: TagUserRequest) -> Result<Value, ApiError> {
    let u = existing(c, "TagUser", &r.user_name).await?;
    let mut tags = tag_pairs(&format!("user {}", u.user_name), &u.tags_json)?;
    for t in r.tags {
        match tags.iter_mut().find(|(k, _)| *k == t.key) {
            Some(slot) => slot.1 = t.value,
            None => tags.push((t.key, t.value)),
        }
    }
    if tags.len() > 50 {
        return Err(ApiError::new(
            "LimitExceeded",
            format!("TagUser: a user has at most 50 tags ({} asked)", tags.len()),
        ));
    }
    c.store
        .set_user_tags(&u.user_name, &tags_json(&tags))
        .await?;
    Ok(json!({}))
}

pub(super) async fn untag(c: &Coordinator, r: UntagUserRequest) -> Result<Value, ApiError> {
    let u = existing(c, "UntagUser", &r.user_name).await?;
    let mut tags = tag_pairs(&format!("user {}", u.user_name), &u.tags_json)?;
    tags.retain(|(k, _)| !r.tag_keys.contains(k));
    c.store
        .set_user_tags(&u.user_name, &tags_json(&tags))
        .await?;
    Ok(json!({}))
}

pub(super) async fn list_tags(c: &Coordinator, r: ListUserTagsRequest) -> Result<Value, ApiError> {
    let u = existing(c, "ListUserTags", &r.user_name).await?;
    Ok(json!({"Tags": tags_value(&u)?, "IsTruncated": false}))
}

pub(super) async fn put_policy(
    c: &Coordinator,
    r: PutUserPolicyRequest,
) -> Result<Value, ApiError> {
    let op = "PutUserPolicy";
    let u = existing(c, op, &r.user_name).await?;
    authz::parse_policy(&r.policy_document).map_err(|e| {
        ApiError::new(
            e.kind,
            format!("{op}: policy {}: {}", r.policy_name, e.message),
        )
    })?;
    let others: Vec<(String, String)> = c
        .store
        .user_policies(&u.user_name)
        .await?
        .into_iter()
        .filter(|(n, _)| *n != r.policy_name)
        .collect();
    if others.len() >= limits::INLINE_POLICIES_PER_USER {
        return Err(ApiError::new(
            "LimitExceeded",
            format!(
                "{op}: user {} already has {} inline policies, the most allowed",
                u.user_name,
                others.len()
            ),
        ));
    }
    let bytes = others.iter().map(|(_, d)| d.len()).sum::<usize>() + r.policy_document.len();
    if bytes > limits::INLINE_POLICY_BYTES_PER_USER {
        return Err(ApiError::new(
            "LimitExceeded",
            format!(
                "{op}: the inline policies of user {} would total {bytes} bytes, more than {}",
                u.user_name,
                limits::INLINE_POLICY_BYTES_PER_USER
            ),
        ));
    }
    c.store
        .put_user_policy(&u.user_name, &r.policy_name, &r.policy_document)
        .await?;
    tracing::info!(user = %u.user_name, policy = %r.policy_name, "user policy put");
    Ok(json!({}))
}

pub(super) async fn get_policy(
    c: &Coordinator,
    r: GetUserPolicyRequest,
) -> Result<Value, ApiError> {
    let op = "GetUserPolicy";
    let u = existing(c, op, &r.user_name).await?;
    let doc = c
        .store
        .user_policies(&u.user_name)
        .await?
        .into_iter()
        .find(|(n, _)| *n == r.policy_name)
        .map(|(_, d)| d)
        .ok_or_else(|| {
            ApiError::new(
                "NoSuchEntity",
                format!(
                    "{op}: The user policy with name {} cannot be found.",
                    r.policy_name
                ),
            )
        })?;
    Ok(json!({"UserName": u.user_name, "PolicyName": r.policy_name, "PolicyDocument": doc}))
}

pub(super) async fn list_policies(
    c: &Coordinator,
    r: ListUserPoliciesRequest,
) -> Result<Value, ApiError> {
    let u = existing(c, "ListUserPolicies", &r.user_name).await?;
    let names: Vec<String> = c
        .store
        .user_policies(&u.user_name)
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    Ok(json!({"PolicyNames": names, "IsTruncated": false}))
}

pub(super) async fn delete_policy(
    c: &Coordinator,
    r: DeleteUserPolicyRequest,
) -> Result<Value, ApiError> {
    let op = "DeleteUserPolicy";
    let u = existing(c, op, &r.user_name).await?;
    if !c
        .store
        .delete_user_policy(&u.user_name, &r.policy_name)
        .await?
    {
        return Err(ApiError::new(
            "NoSuchEntity",
            format!(
                "{op}: The user policy with name {} cannot be found.",
                r.policy_name
            ),
        ));
    }
    Ok(json!({}))
}

/// Issues a user an operator token and answers an `operator.json` that
/// carries it (plus the token's ID, user and expiry, which the CLI ignores
/// when it reads the file).
pub(super) async fn create_operator_config(
    c: &Coordinator,
    r: CreateOperatorConfigRequest,
) -> Result<Value, ApiError> {
    let op = "CreateOperatorConfig";
    let u = existing(c, op, &r.user_name).await?;
    let ttl = match &r.expires_in {
        Some(d) => duration_ms(op, "ExpiresIn", d)?,
        None => limits::OPERATOR_TOKEN_DEFAULT_TTL_SECS * 1000,
    };
    let Some(template) = &c.operator_config else {
        return Err(ApiError::new(
            "InternalServerError",
            format!("{op}: this coordinator has no operator.json to copy"),
        ));
    };
    let token = hex::encode(rand::random::<[u8; 32]>());
    let now = now_ms();
    let row = OperatorTokenRow {
        token_hash: token_hash(&token),
        created_ms: now,
        token_id: Some(format!("ot-{}", hex::encode(rand::random::<[u8; 8]>()))),
        user_name: Some(u.user_name.clone()),
        expires_ms: Some(now + ttl),
    };
    c.store.insert_operator_token(&row).await?;
    tracing::info!(user = %u.user_name, token_id = ?row.token_id, "operator token issued");
    let mut v = serde_json::to_value(tether_cli::OperatorConfig {
        token,
        ..template.clone()
    })
    .map_err(|e| ApiError::new("InternalServerError", format!("{op}: {e}")))?;
    v["UserName"] = json!(u.user_name);
    v["TokenId"] = json!(row.token_id);
    v["Expiration"] = json!(iso_ms(now + ttl));
    Ok(v)
}

pub(super) async fn list_operator_tokens(
    c: &Coordinator,
    r: ListOperatorTokensRequest,
) -> Result<Value, ApiError> {
    let tokens: Vec<Value> = c
        .store
        .operator_tokens(r.user_name.as_deref())
        .await?
        .iter()
        .map(|t| {
            json!({
                "TokenId": t.token_id,
                "UserName": t.user_name,
                "CreateDate": iso_ms(t.created_ms),
                "Expiration": t.expires_ms.map(iso_ms),
            })
        })
        .collect();
    Ok(json!({"OperatorTokens": tokens}))
}

pub(super) async fn delete_operator_token(
    c: &Coordinator,
    r: DeleteOperatorTokenRequest,
) -> Result<Value, ApiError> {
    if !c.store.delete_operator_token(&r.token_id).await? {
        return Err(ApiError::new(
            "NoSuchEntity",
            format!(
                "DeleteOperatorToken: The operator token with ID {} cannot be found.",
                r.token_id
            ),
        ));
    }
    tracing::info!(token_id = %r.token_id, "operator token revoked");
    Ok(json!({}))
}

/// Tether's RotateRootToken (root only: `authz` refuses it to every user,
/// whatever their policies say). Every root token — one per replica's
/// operator.json — is replaced by one new token in one transaction, so the
/// old ones are refused from the next request on, on every replica (each
/// request looks its token up). The serving replica rewrites its own
/// operator.json (owner-only, atomically); the answer is that operator.json,
/// the new token shown once.
pub(super) async fn rotate_root_token(c: &Coordinator) -> Result<Value, ApiError> {
    let op = "RotateRootToken";
    let Some(template) = &c.operator_config else {
        return Err(ApiError::new(
            "InternalServerError",
            format!("{op}: this coordinator has no operator.json to rewrite"),
        ));
    };
    let config = tether_cli::OperatorConfig {
        token: hex::encode(rand::random::<[u8; 32]>()),
        ..template.clone()
    };
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| ApiError::new("InternalServerError", format!("{op}: {e}")))?;
    let revoked = c
        .store
        .rotate_root_token(&token_hash(&config.token), now_ms())
        .await?;
    if let Some(path) = &c.operator_config_path {
        // The rotation stands either way: the answer carries the new token.
        match tether_util::fs::write_private(path, text.as_bytes()) {
            Ok(()) => {
                tracing::info!(revoked, path = %path.display(), "root token rotated; operator.json rewritten")
            }
            Err(e) => {
                tracing::error!(revoked, path = %path.display(), error = %e, "root token rotated, but operator.json could not be rewritten: save the token the caller received")
            }
        }
    }
    let mut v = serde_json::to_value(config)
        .map_err(|e| ApiError::new("InternalServerError", format!("{op}: {e}")))?;
    v["RevokedTokenCount"] = json!(revoked);
    Ok(v)
}

/// IAM's SimulatePrincipalPolicy for a user of this account: each action on
/// each resource (default `*`), with the user's policies (and any given in
/// `PolicyInputList`), the context entries given, and an instance's tags
/// when the resource is one of this coordinator's instances.
pub(super) async fn simulate(
    c: &Coordinator,
    _caller: &Caller,
    r: SimulatePrincipalPolicyRequest,
) -> Result<Value, ApiError> {
    let op = "SimulatePrincipalPolicy";
    let prefix = format!("arn:aws:iam::{}:user/", c.account.id);
    let name = r
        .policy_source_arn
        .strip_prefix(&prefix)
        .and_then(|rest| rest.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                "InvalidInput",
                format!(
                    "{op}: PolicySourceArn {:?} is not a user of this account ({prefix}NAME)",
                    r.policy_source_arn
                ),
            )
        })?;
    let user = existing(c, op, name).await?;
    let mut u = authz::user_authority(c, user, None, now_ms()).await?;
    for (i, doc) in r.policy_input_list.iter().flatten().enumerate() {
        let p = authz::parse_policy(doc).map_err(|e| {
            ApiError::new(
                "MalformedPolicyDocument",
                format!("{op}: PolicyInputList.{}: {}", i + 1, e.message),
            )
        })?;
        u.policies.push((format!("PolicyInputList.{}", i + 1), p));
    }
    let mut context: Context = u.context.clone();
    for e in r.context_entries.iter().flatten() {
        if let Some(k) = &e.context_key_name {
            context.set_all(k, e.context_key_values.clone().unwrap_or_default());
        }
    }
    let arns = r.resource_arns.clone().unwrap_or_else(|| vec!["*".into()]);
    let mut results = Vec::new();
    for action in &r.action_names {
        for arn in &arns {
            let resource = resource_of(c, arn).await?;
            let d = authz::decide(&u, action, &resource, &context);
            let (decision, matched) = match &d {
                Decision::Allowed(m) => ("allowed", Some(m)),
                Decision::ExplicitlyDenied(m) => ("explicitDeny", Some(m)),
                Decision::ImplicitlyDenied => ("implicitDeny", None),
            };
            let statements: Vec<Value> = matched
                .map(|m| {
                    let (id, kind) = match u.policies.get(m.policy) {
                        Some((n, _)) if n.starts_with("PolicyInputList.") => (n.clone(), "none"),
                        Some((n, _)) => (n.clone(), "user"),
                        None => (String::new(), "none"),
                    };
                    json!({"SourcePolicyId": id, "SourcePolicyType": kind})
                })
                .into_iter()
                .collect();
            results.push(json!({
                "EvalActionName": action,
                "EvalResourceName": arn,
                "EvalDecision": decision,
                "MatchedStatements": statements,
                "MissingContextValues": [],
            }));
        }
    }
    Ok(json!({"EvaluationResults": results, "IsTruncated": false}))
}

/// A resource ARN with its tags when it is one of this coordinator's instances.
async fn resource_of(c: &Coordinator, arn: &str) -> Result<Resource, ApiError> {
    let id = arn
        .rsplit_once(":managed-instance/")
        .or_else(|| arn.rsplit_once(":instance/"))
        .map(|(_, id)| id);
    if let Some(id) = id
        && !id.contains(['*', '?'])
        && let Some(row) = c.store.any_instance(id).await?
    {
        return Ok(Resource {
            arn: arn.to_string(),
            tags: Resource::instance(&c.account, &row)?.tags,
        });
    }
    Ok(Resource::untagged(arn.to_string()))
}
