//! Authorisation: whether a caller may do what a request asks, decided once
//! at the one door (`actions::dispatch`) for every transport.
//!
//! - The root principal (the bootstrap token in `operator.json`, and access
//!   keys of no user) may do everything, as an AWS account's root.
//! - A user may do what its inline policies allow (`tether-iam`): actions
//!   are named as in AWS (`ssm:SendCommand`, `iam:CreateUser`,
//!   `cloudtrail:LookupEvents`), Tether's own with `tether:`; resources are
//!   AWS-shaped ARNs (`arn:aws:ssm:REGION:ACCOUNT:managed-instance/mi-…`,
//!   `…:document/NAME`, `arn:aws:iam::ACCOUNT:user/NAME`).
//!
//! The user and its policies are read from the store for every request, so a
//! deleted user or a changed policy holds at once on every replica (no
//! cache to drop). A refusal is `AccessDeniedException` in IAM's words.
//! [`audit_hook`] logs every refusal; the audit trail (`crate::audit`)
//! records every request from `actions::dispatch`.

use std::net::IpAddr;
use std::sync::OnceLock;

use tether_iam::{Context, Decision, Policy, Vocabulary};
use tether_ssm::{ApiError, Operation, Request};
use tether_store::{InstanceRow, UserRow};
use tether_util::time::{iso_ms, now_ms};

pub use crate::account::{Account, DEFAULT_REGION};
use crate::core::Coordinator;

/// A stored tag list, read or refused naming its row.
fn tag_pairs(row: &str, tags_json: &str) -> Result<Vec<(String, String)>, ApiError> {
    tether_ssm::target::tags_from_json(tags_json).map_err(|e| {
        tracing::error!(%row, error = %e, "stored value does not read back");
        ApiError::new(
            "InternalServerError",
            format!("stored {row}: tags is corrupt: {e}"),
        )
    })
}
use crate::credentials::{Caller, Principal};

/// The names a policy may use: every SSM operation (a policy copied from AWS
/// may name ones Tether does not serve), the IAM, CloudTrail and Tether
/// operations Tether serves and those the next slices add, and the
/// resource types of those services.
pub fn vocabulary() -> &'static Vocabulary {
    static V: OnceLock<Vocabulary> = OnceLock::new();
    V.get_or_init(|| {
        let m = tether_ssm::model::model();
        let mut actions: Vec<String> = m
            .ssm_operation_names()
            .map(|n| format!("ssm:{n}"))
            .collect();
        actions.extend(Operation::ALL.iter().map(|op| op.action()));
        actions.extend(
            [
                "cloudtrail:LookupEvents",
                "tether:VerifyAuditTrail",
                "tether:ConsoleLogin",
                "tether:GetMetrics",
                "kms:Decrypt",
                "kms:Encrypt",
            ]
            .map(String::from),
        );
        actions.sort();
        actions.dedup();
        let types = |s: &[&str]| s.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        Vocabulary {
            actions,
            resources: vec![
                (
                    "ssm".into(),
                    types(&[
                        "managed-instance",
                        "document",
                        "association",
                        "parameter",
                        "activation",
                        "command",
                        "maintenancewindow",
                        "patchbaseline",
                        "session",
                        "automation-definition",
                        "automation-execution",
                        "opsitem",
                        "resourcedatasync",
                    ]),
                ),
                ("ec2".into(), types(&["instance"])),
                (
                    "iam".into(),
                    types(&["user", "root", "group", "role", "policy"]),
                ),
                ("cloudtrail".into(), types(&["trail"])),
                ("kms".into(), types(&["key", "alias"])),
                ("tether".into(), types(&["audit-trail", "console"])),
            ],
        }
    })
}

/// Parses a policy document as `put-user-policy` takes it: a refusal is
/// IAM's `MalformedPolicyDocument`, naming the statement and the field.
pub fn parse_policy(document: &str) -> Result<Policy, ApiError> {
    Policy::parse(document, vocabulary())
        .map_err(|e| ApiError::new("MalformedPolicyDocument", e.message))
}

/// One resource a request touches, with its tags (`ssm:resourceTag/KEY`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub arn: String,
    pub tags: Vec<(String, String)>,
}

impl Resource {
    pub fn untagged(arn: String) -> Resource {
        Resource {
            arn,
            tags: Vec::new(),
        }
    }

    pub fn instance(account: &Account, row: &InstanceRow) -> Result<Resource, ApiError> {
        Ok(Resource {
            arn: account.instance_arn(&row.instance_id),
            tags: tag_pairs(&format!("instance {}", row.instance_id), &row.tags_json)?,
        })
    }
}

/// A user's identity and policies, as read for one request.
#[derive(Clone, Debug)]
pub struct UserAuthority {
    pub user: UserRow,
    pub arn: String,
    pub policies: Vec<(String, Policy)>,
    /// The request-wide condition keys (`aws:SourceIp`, `aws:CurrentTime`,
    /// `aws:PrincipalTag/KEY`, `aws:username`, …).
    pub context: Context,
}

/// What the caller of one request may do.
#[derive(Clone, Debug)]
pub enum Authority {
    Root { arn: String },
    User(Box<UserAuthority>),
}

impl Authority {
    /// Reads the caller's authority for this request: root needs nothing;
    /// a user is read with its policies now (a user deleted since its
    /// credential was checked is refused).
    pub async fn of(c: &Coordinator, caller: &Caller) -> Result<Authority, ApiError> {
        let Principal::User { user_name, .. } = &caller.principal else {
            return Ok(Authority::Root {
                arn: c.account.root_arn(),
            });
        };
        let gone = || {
            ApiError::new(
                "UnrecognizedClientException",
                format!(
                    "The security token included in the request is invalid: user {user_name} no longer exists"
                ),
            )
        };
        let user = c.store.user(user_name).await?.ok_or_else(gone)?;
        user_authority(c, user, caller.source, now_ms())
            .await
            .map(|u| Authority::User(Box::new(u)))
    }

    /// The principal's ARN (`RequestedBy`, refusals).
    pub fn arn(&self) -> &str {
        match self {
            Authority::Root { arn } => arn,
            Authority::User(u) => &u.arn,
        }
    }

    /// Whether `action` on `resource` is allowed; a refusal in IAM's words.
    pub fn check(&self, action: &str, resource: &Resource) -> Result<(), ApiError> {
        let Authority::User(u) = self else {
            return Ok(());
        };
        match decide(u, action, resource, &u.context) {
            Decision::Allowed(_) => Ok(()),
            d => Err(denied(&u.arn, action, &resource.arn, &d)),
        }
    }
}

/// The authority of the principal an association acts for (its
/// `requested_by`): root for the root ARN (and for associations saved
/// before the principal was kept); a user with their policies as they are
/// now, so a revoked permission stops the next run. A user deleted since is
/// refused.
pub async fn acting_for(c: &Coordinator, arn: &str) -> Result<Authority, ApiError> {
    let root = c.account.root_arn();
    if arn.is_empty() || arn == root {
        return Ok(Authority::Root { arn: root });
    }
    let gone = || {
        ApiError::new(
            "AccessDeniedException",
            format!(
                "the association acts for {arn}, which is no longer a user of this coordinator"
            ),
        )
    };
    let name = arn
        .split_once(":user/")
        .and_then(|(_, path)| path.rsplit('/').next())
        .ok_or_else(gone)?;
    let user = c.store.user(name).await?.ok_or_else(gone)?;
    let u = user_authority(c, user, None, now_ms()).await?;
    if u.arn != arn {
        return Err(gone());
    }
    Ok(Authority::User(Box::new(u)))
}

/// Reads a user's policies and builds the request-wide context.
pub async fn user_authority(
    c: &Coordinator,
    user: UserRow,
    source: Option<IpAddr>,
    now: i64,
) -> Result<UserAuthority, ApiError> {
    let mut policies = Vec::new();
    for (name, document) in c.store.user_policies(&user.user_name).await? {
        // A stored policy that no longer parses refuses everything rather
        // than silently dropping what it may deny.
        let policy = parse_policy(&document).map_err(|e| {
            ApiError::new(
                "AccessDeniedException",
                format!(
                    "policy {name} of user {} no longer parses ({}): nothing is allowed until it is replaced",
                    user.user_name, e.message
                ),
            )
        })?;
        policies.push((name, policy));
    }
    let arn = c.account.user_arn(&user.path, &user.user_name);
    let mut context = Context::new();
    context
        .set("aws:CurrentTime", iso_ms(now))
        .set("aws:EpochTime", (now / 1000).to_string())
        .set("aws:username", user.user_name.clone())
        .set("aws:userid", user.user_id.clone())
        .set("aws:PrincipalArn", arn.clone())
        .set("aws:PrincipalAccount", c.account.id.clone())
        .set("aws:PrincipalType", "User")
        .set("aws:RequestedRegion", c.account.region.clone())
        .set("aws:SecureTransport", "true");
    if let Some(ip) = source {
        context.set("aws:SourceIp", ip.to_string());
    }
    let tags = tag_pairs(&format!("user {}", user.user_name), &user.tags_json)?;
    for (k, v) in &tags {
        context.set(&format!("aws:PrincipalTag/{k}"), v.clone());
    }
    Ok(UserAuthority {
        user,
        arn,
        policies,
        context,
    })
}

/// Evaluates one action on one resource for a user, the resource's tags
/// added to `context`.
pub fn decide(u: &UserAuthority, action: &str, resource: &Resource, context: &Context) -> Decision {
    let mut ctx = context.clone();
    for (k, v) in &resource.tags {
        ctx.set(&format!("ssm:resourceTag/{k}"), v.clone());
        ctx.set(&format!("aws:ResourceTag/{k}"), v.clone());
    }
    let policies: Vec<&Policy> = u.policies.iter().map(|(_, p)| p).collect();
    tether_iam::evaluate(
        &policies,
        &tether_iam::Request {
            action,
            resource: &resource.arn,
            context: &ctx,
        },
    )
}

/// IAM's refusal.
pub fn denied(arn: &str, action: &str, resource: &str, d: &Decision) -> ApiError {
    let why = match d {
        Decision::ExplicitlyDenied(_) => {
            "with an explicit deny in an identity-based policy".to_string()
        }
        _ => format!("because no identity-based policy allows the {action} action"),
    };
    ApiError::new(
        "AccessDeniedException",
        format!("User: {arn} is not authorized to perform: {action} on resource: {resource} {why}"),
    )
}

/// A resource a request names: an ARN, or a tagged resource whose tags
/// are read when it is authorised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Named {
    Arn(String),
    Tagged { kind: String, id: String },
}

impl Named {
    /// Its ARN, without reading anything (`*` for none in particular).
    pub fn arn(&self, a: &Account) -> String {
        match self {
            Named::Arn(arn) => arn.clone(),
            Named::Tagged { kind, id } => tagged_arn(a, kind, id),
        }
    }
}

/// The resources a request names, as far as the request itself says (the
/// instances SendCommand's, CreateAssociation's and UpdateAssociation's
/// targets reach are resolved and checked by their handlers);
/// `caller_user` stands for an IAM verb's omitted `UserName`. Pure.
///
/// As IAM's Service Authorization Reference for SSM: an operation whose
/// IAM action has resource types is checked on those ARNs — documents,
/// managed instances (with their tags as `ssm:resourceTag/KEY`), the
/// association, the activation, the user; one without any (the List and
/// Describe operations over everything — ListCommands,
/// ListCommandInvocations, GetCommandInvocation, DescribeInstanceInformation
/// whatever its filters, ListAssociations, ListDocuments, GetInventory,
/// DescribeActivations — and CancelCommand) on `*`, so that a policy copied
/// from AWS (`"Resource": "*"` for those) means here what it means there.
/// Their answers are not filtered by permission, as in AWS.
pub fn named(a: &Account, caller_user: Option<&str>, request: &Request) -> Vec<Named> {
    let doc = |name: &str| Named::Arn(a.ssm_arn("document", name));
    let user = |name: Option<&str>| -> Named {
        match name.or(caller_user) {
            Some(n) => Named::Arn(a.user_arn("/", n)),
            None => Named::Arn(a.root_arn()),
        }
    };
    let tagged = |kind: &str, id: &str| Named::Tagged {
        kind: kind.to_string(),
        id: id.to_string(),
    };
    use Request as R;
    // The association operations name the association (IAM's required
    // `association` resource), or, by the legacy Name and InstanceId, its
    // document and instance.
    let association: Option<(Option<&str>, Option<&str>, Option<&str>)> = match request {
        R::DescribeAssociation(r) => Some((
            r.association_id.as_deref(),
            r.name.as_deref(),
            r.instance_id.as_deref(),
        )),
        R::DeleteAssociation(r) => Some((
            r.association_id.as_deref(),
            r.name.as_deref(),
            r.instance_id.as_deref(),
        )),
        R::UpdateAssociation(r) => Some((Some(r.association_id.as_str()), None, None)),
        _ => None,
    };
    if let Some((id, name, instance)) = association {
        let mut out = Vec::new();
        if let Some(id) = id {
            out.push(Named::Arn(a.ssm_arn("association", id)));
        } else {
            if let Some(name) = name {
                out.push(doc(name));
            }
            if let Some(instance) = instance {
                out.push(tagged("ManagedInstance", instance));
            }
        }
        if out.is_empty() {
            out.push(Named::Arn("*".into()));
        }
        return out;
    }
    let param = |name: &str| Named::Arn(a.parameter_arn(name));
    // The operations that name several parameters: each is checked.
    match request {
        R::GetParameters(r) => return r.names.iter().map(|n| param(n)).collect(),
        R::DeleteParameters(r) => return r.names.iter().map(|n| param(n)).collect(),
        _ => {}
    }
    let key = |id: &str| Named::Arn(a.key_arn(id));
    vec![match request {
        R::PutParameter(r) => param(&r.name),
        R::GetParameter(r) => param(&r.name),
        R::GetParametersByPath(r) => param(r.path.trim_end_matches('/')),
        R::GetParameterHistory(r) => param(&r.name),
        R::LabelParameterVersion(r) => param(&r.name),
        R::UnlabelParameterVersion(r) => param(&r.name),
        R::DeleteParameter(r) => param(&r.name),
        R::CreateParameterKey(r) => key(&r.key_id),
        R::RotateParameterKey(r) => key(&r.key_id),
        R::SendCommand(r) => doc(&r.document_name),
        R::CreateDocument(r) => doc(&r.name),
        R::UpdateDocument(r) => doc(&r.name),
        R::DeleteDocument(r) => doc(&r.name),
        R::GetDocument(r) => doc(&r.name),
        R::DescribeDocument(r) => doc(&r.name),
        R::ListDocumentVersions(r) => doc(&r.name),
        R::UpdateDocumentDefaultVersion(r) => doc(&r.name),
        R::CreateAssociation(r) => doc(&r.name),
        R::DeregisterManagedInstance(r) => tagged("ManagedInstance", &r.instance_id),
        R::DescribeInstanceAssociationsStatus(r) => tagged("ManagedInstance", &r.instance_id),
        R::ListInventoryEntries(r) => tagged("ManagedInstance", &r.instance_id),
        R::ListInventoryChanges(r) => tagged("ManagedInstance", &r.instance_id),
        R::AddTagsToResource(r) => tagged(&r.resource_type, &r.resource_id),
        R::RemoveTagsFromResource(r) => tagged(&r.resource_type, &r.resource_id),
        R::ListTagsForResource(r) => tagged(&r.resource_type, &r.resource_id),
        R::DeleteActivation(r) => Named::Arn(a.ssm_arn("activation", &r.activation_id)),
        R::CreateUser(r) => Named::Arn(a.user_arn(r.path.as_deref().unwrap_or("/"), &r.user_name)),
        R::GetUser(r) => user(r.user_name.as_deref()),
        R::DeleteUser(r) => user(Some(&r.user_name)),
        R::TagUser(r) => user(Some(&r.user_name)),
        R::UntagUser(r) => user(Some(&r.user_name)),
        R::ListUserTags(r) => user(Some(&r.user_name)),
        R::PutUserPolicy(r) => user(Some(&r.user_name)),
        R::GetUserPolicy(r) => user(Some(&r.user_name)),
        R::ListUserPolicies(r) => user(Some(&r.user_name)),
        R::DeleteUserPolicy(r) => user(Some(&r.user_name)),
        R::CreateAccessKey(r) => user(r.user_name.as_deref()),
        R::UpdateAccessKey(r) => user(r.user_name.as_deref()),
        R::ListAccessKeys(r) => user(r.user_name.as_deref()),
        R::DeleteAccessKey(r) => user(r.user_name.as_deref()),
        R::CreateOperatorConfig(r) => user(Some(&r.user_name)),
        R::ListOperatorTokens(r) => match &r.user_name {
            Some(n) => user(Some(n)),
            None => Named::Arn("*".into()),
        },
        R::SimulatePrincipalPolicy(r) => Named::Arn(r.policy_source_arn.clone()),
        R::RotateRootToken(_) => Named::Arn(a.root_arn()),
        _ => Named::Arn("*".into()),
    }]
}

/// The user an authority stands for, if any.
pub fn user_of(authority: &Authority) -> Option<&str> {
    match authority {
        Authority::User(u) => Some(u.user.user_name.as_str()),
        Authority::Root { .. } => None,
    }
}

/// The resources a request names, with their tags (see [`named`]).
pub async fn resources(
    c: &Coordinator,
    authority: &Authority,
    request: &Request,
) -> Result<Vec<Resource>, ApiError> {
    let mut out = Vec::new();
    for n in named(&c.account, user_of(authority), request) {
        out.push(match n {
            Named::Arn(arn) => Resource::untagged(arn),
            Named::Tagged { kind, id } => tagged(c, &kind, &id).await?,
        });
    }
    Ok(out)
}

/// A tagged resource's ARN by SSM's `ResourceType`.
fn tagged_arn(a: &Account, kind: &str, id: &str) -> String {
    match kind {
        "ManagedInstance" => a.instance_arn(id),
        "Document" => a.ssm_arn("document", id),
        "Association" => a.ssm_arn("association", id),
        "Parameter" => a.parameter_arn(id),
        _ => a.ssm_arn(&kind.to_ascii_lowercase(), id),
    }
}

/// A tagged resource by SSM's `ResourceType`.
async fn tagged(c: &Coordinator, kind: &str, id: &str) -> Result<Resource, ApiError> {
    let a = &c.account;
    Ok(match kind {
        "ManagedInstance" => match c.store.any_instance(id).await? {
            Some(row) => Resource::instance(a, &row)?,
            None => Resource::untagged(a.instance_arn(id)),
        },
        _ => Resource::untagged(tagged_arn(a, kind, id)),
    })
}

/// Checks the request at the door: its action on every resource it names.
pub async fn authorize(
    c: &Coordinator,
    authority: &Authority,
    request: &Request,
) -> Result<(), ApiError> {
    let Authority::User(user) = authority else {
        return Ok(());
    };
    let action = request.operation().action();
    // Root's own credential is root's alone, as an AWS account's root
    // password: no policy can give it to a user.
    if matches!(request, Request::RotateRootToken(_)) {
        return Err(ApiError::new(
            "AccessDeniedException",
            format!(
                "User: {} is not authorized to perform: {action} on resource: {} because only the root principal may rotate the root token",
                user.arn,
                c.account.root_arn()
            ),
        ));
    }
    for r in resources(c, authority, request).await? {
        authority.check(&action, &r)?;
    }
    Ok(())
}

/// Called once per request after it was authorised (or refused) and run,
/// with the outcome: logs refusals (the audit trail, `crate::audit`, records
/// every request from `actions::dispatch`).
pub fn audit_hook(
    caller: &Caller,
    authority: Option<&Authority>,
    operation: Operation,
    outcome: &Result<serde_json::Value, ApiError>,
) {
    if let Err(e) = outcome
        && e.kind == "AccessDeniedException"
    {
        tracing::info!(
            principal = authority.map(Authority::arn).unwrap_or("?"),
            credential = caller.principal.credential_id().unwrap_or("root"),
            transport = ?caller.transport,
            source = ?caller.source,
            operation = operation.name(),
            refusal = %e.message,
            "request refused"
        );
    }
}
