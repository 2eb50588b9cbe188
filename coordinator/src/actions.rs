//! The action layer: the one door every operator request comes through,
//! whatever carried it — the tether CLI over gRPC (`grpc.rs`), AWS JSON 1.1
//! over HTTPS (`ssm_http.rs`), the web console (`console/`).
//!
//! [`handle`] takes the operation's name and the body's bytes from an edge,
//! parses and validates them once against the model into a typed
//! [`Request`] (`tether_ssm::request`), and [`dispatch`]es it with the
//! [`Caller`] to one handler per operation. [`dispatch`] is the single
//! place where authorisation and audit hook in: it sees every request, typed,
//! with who sent it. The same bad request therefore gets the same error code
//! and message on every transport.
//!
//! The children own the operations, one area each; only this module and
//! its children know the SSM JSON shapes of answers. Handlers check what the
//! model cannot (semantics, existence, Tether's own limits from
//! `tether_ssm::limits`), never what it already has.

pub mod access_keys;
mod activations;
mod associations;
mod commands;
mod console;
mod documents;
mod instances;
mod inventory;
pub mod parameters;
pub(crate) mod references;
mod releases;
pub mod sizes;
mod tags;
mod trail;
mod trust_rotation;
mod users;
pub mod wire;

use std::cell::RefCell;

use serde_json::Value;
use tether_ssm::{ApiError, Operation, Request};

pub use commands::truncate_output;

use crate::audit;
use crate::authz::{self, Authority};
use crate::core::Coordinator;
use crate::credentials::{Caller, Transport};

/// Runs one request as an edge received it: `operation` by name, `body` the
/// JSON bytes (empty for no input). Tether's size caps (`sizes`) hold here,
/// whatever carried the request.
pub async fn handle(
    c: &Coordinator,
    caller: &Caller,
    operation: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let request = match typed(caller.transport, operation, body) {
        Ok(r) => r,
        Err(e) => {
            // Refused before it was typed (unknown, malformed, too large):
            // recorded as a refusal, under the action its name would have.
            // The name is outside input: bounded before it is recorded.
            let name: String = operation.chars().take(128).collect();
            let known = Operation::from_name(operation);
            let action = known
                .map(Operation::action)
                .unwrap_or_else(|| format!("unknown:{name}"));
            let read_only = known.is_some_and(|op| !op.changes_something());
            let mut draft =
                audit::Draft::new(&c.account, &who(caller), &name, action, read_only, body);
            draft.error = Some((e.kind.to_string(), e.message.clone()));
            c.audit.now(draft, "refused").await;
            return Err(e);
        }
    };
    dispatch(c, caller, request, body).await
}

/// The typed request of `operation` with `body`, as it arrived on
/// `transport`, within Tether's size caps.
pub(crate) fn typed(
    transport: Transport,
    operation: &str,
    body: &[u8],
) -> Result<Request, ApiError> {
    let op = Operation::named(operation)?;
    // Tether's own operations (access keys among them: a key cannot mint
    // keys) are for the operator channel; the HTTPS API is SSM's. (An
    // operator token over HTTPS — `/metrics` — is the operator's channel.)
    if transport == Transport::Https && !op.is_ssm() {
        return Err(ApiError::new(
            "UnknownOperationException",
            format!("operation {operation:?} is not supported by this coordinator"),
        ));
    }
    sizes::check_body(operation, body)?;
    let request = Request::from_json(op, body)?;
    sizes::check_request(&request)?;
    Ok(request)
}

tokio::task_local! {
    /// The instances a change being dispatched will ring once its outcome
    /// is recorded ([`ring_when_recorded`]).
    static RINGS: RefCell<Vec<String>>;
}

/// SendCommand's record in the making: its handler takes the draft to write
/// the intent and the outcome records in the command's own transaction
/// ([`take_change_draft`], `audit::Trail::with_change`) and says when they
/// are written ([`change_recorded`]).
#[derive(Default)]
struct ChangeRecord {
    draft: Option<audit::Draft>,
    recorded: bool,
}

tokio::task_local! {
    static WITH_CHANGE: RefCell<ChangeRecord>;
}

/// The draft of the change being dispatched, for its handler to record with
/// the change itself (`None` outside such a change, or once taken).
pub(crate) fn take_change_draft() -> Option<audit::Draft> {
    WITH_CHANGE
        .try_with(|r| r.borrow_mut().draft.take())
        .ok()
        .flatten()
}

/// The handler wrote the change's intent and outcome records with it.
pub(crate) fn change_recorded() {
    let _ = WITH_CHANGE.try_with(|r| r.borrow_mut().recorded = true);
}

/// Wakes `instance_id`'s agent: once the outcome of the change being
/// dispatched is recorded, or at once outside [`dispatch`].
pub(crate) fn ring_when_recorded(c: &Coordinator, instance_id: &str) {
    if RINGS
        .try_with(|r| r.borrow_mut().push(instance_id.to_string()))
        .is_err()
    {
        c.ring(instance_id);
    }
}

/// Runs one typed request for `caller` (`body` its JSON as received, for
/// the audit trail): reads what the caller may do (per request, from the
/// store), authorises the request once here (SendCommand's instances, known
/// only once its targets resolve, in its handler), runs it, and records it
/// in the audit trail — a change's intent before it is made (a change whose
/// intent cannot be recorded is refused), its outcome and every refusal
/// before the answer, allowed reads in the background (`crate::audit`).
pub async fn dispatch(
    c: &Coordinator,
    caller: &Caller,
    request: Request,
    body: &[u8],
) -> Result<Value, ApiError> {
    let op = request.operation();
    tracing::debug!(operation = op.name(), principal = ?caller.principal, transport = ?caller.transport, "action");
    let mut draft = audit::Draft::of(&c.account, &who(caller), op, body);
    let authority = match Authority::of(c, caller).await {
        Ok(a) => a,
        Err(e) => {
            draft.resources = authz::named(&c.account, caller.principal.user_name(), &request)
                .iter()
                .map(|n| n.arn(&c.account))
                .collect();
            let outcome = Err(e);
            draft.outcome(&outcome);
            c.audit.now(draft, "refused").await;
            authz::audit_hook(caller, None, op, &outcome);
            return outcome;
        }
    };
    draft.principal(authority.arn());
    draft.resources = audit_resources(c, &authority, &request);
    if let Err(e) = authz::authorize(c, &authority, &request).await {
        let outcome = Err(e);
        draft.outcome(&outcome);
        c.audit.now(draft, "refused").await;
        authz::audit_hook(caller, Some(&authority), op, &outcome);
        return outcome;
    }
    let outcome = if audit::recorded_before_answer(&request) {
        // SendCommand writes its intent and outcome records in the
        // command's own transaction (two turns of the write lock fewer on
        // the hottest change); every other change appends its intent first.
        let with_change = matches!(request, Request::SendCommand(_));
        if !with_change {
            c.audit.intent(&draft).await?;
        }
        let record = ChangeRecord {
            draft: with_change.then(|| draft.clone()),
            recorded: false,
        };
        // Agents woken by the change (SendCommand, CancelCommand) are rung
        // once its outcome is recorded (rung first, their polls' writes
        // would hold the database's write lock the record waits for), and
        // just after the answer leaves (`Coordinator::ring_after_answer`).
        let (outcome, rings, recorded) = RINGS
            .scope(
                RefCell::new(Vec::new()),
                WITH_CHANGE.scope(RefCell::new(record), async {
                    let outcome = run(c, caller, &authority, request).await;
                    let recorded = WITH_CHANGE.with(|r| r.borrow().recorded);
                    (outcome, RINGS.with(RefCell::take), recorded)
                }),
            )
            .await;
        if with_change && !recorded {
            // Refused or failed with nothing stored: its intent and outcome now.
            let intent = draft.clone();
            draft.outcome(&outcome);
            c.audit.now_both(&intent, draft).await;
        } else {
            draft.outcome(&outcome);
            // Recorded with the change, then failed: the error too.
            if !with_change || outcome.is_err() {
                c.audit.now(draft, "outcome").await;
            }
        }
        c.ring_after_answer(rings);
        outcome
    } else {
        let outcome = run(c, caller, &authority, request).await;
        draft.outcome(&outcome);
        match &outcome {
            Err(e) if e.kind == "AccessDeniedException" => c.audit.now(draft, "refused").await,
            // A scraper's successful reads of /metrics: one record an hour.
            Ok(_)
                if op == Operation::GetMetrics
                    && caller.transport == Transport::HttpsToken
                    && !c.audit.scrape_to_record(
                        authority.arn(),
                        caller.source,
                        tether_util::time::now_ms(),
                    ) => {}
            _ => c.audit.later(draft, "read"),
        }
        outcome
    };
    if let Err(e) = &outcome
        && e.kind == "AccessDeniedException"
    {
        authz::audit_hook(caller, Some(&authority), op, &outcome);
    }
    outcome
}

/// Who a caller is, for the audit trail.
pub(crate) fn who(caller: &Caller) -> audit::Who<'_> {
    audit::Who {
        user_name: caller.principal.user_name(),
        credential_id: caller.principal.credential_id(),
        source: caller.source,
        transport: match caller.transport {
            Transport::Grpc => "grpc",
            Transport::Https | Transport::HttpsToken => "https",
            Transport::Console => "console",
        },
    }
}

/// The ARNs a request names, for its audit record (pure: nothing is read).
/// SendCommand's instance IDs are named as given; what its targets resolve
/// to is not listed (one record per request, whatever it fans out to).
fn audit_resources(c: &Coordinator, authority: &Authority, request: &Request) -> Vec<String> {
    let mut arns: Vec<String> = authz::named(&c.account, authz::user_of(authority), request)
        .iter()
        .map(|n| n.arn(&c.account))
        .collect();
    if let Request::SendCommand(r) = request {
        for id in r.instance_ids.iter().flatten() {
            arns.push(c.account.instance_arn(id));
        }
    }
    arns
}

/// Runs one authorised request.
async fn run(
    c: &Coordinator,
    caller: &Caller,
    authority: &Authority,
    request: Request,
) -> Result<Value, ApiError> {
    match request {
        Request::CreateActivation(r) => activations::create(c, r).await,
        Request::DescribeActivations(r) => activations::describe(c, r).await,
        Request::DeleteActivation(r) => activations::delete(c, r).await,
        Request::DescribeInstanceInformation(r) => instances::describe(c, r).await,
        Request::DeregisterManagedInstance(r) => instances::deregister(c, r).await,
        Request::SendCommand(r) => commands::send(c, authority, r).await,
        Request::ListCommands(r) => commands::list(c, r).await,
        Request::ListCommandInvocations(r) => commands::list_invocations(c, r).await,
        Request::GetCommandInvocation(r) => commands::get_invocation(c, r).await,
        Request::CancelCommand(r) => commands::cancel(c, r).await,
        Request::CreateDocument(r) => documents::create(c, r).await,
        Request::UpdateDocument(r) => documents::update(c, r).await,
        Request::DeleteDocument(r) => documents::delete(c, r).await,
        Request::GetDocument(r) => documents::get(c, r).await,
        Request::DescribeDocument(r) => documents::describe(c, r).await,
        Request::ListDocuments(r) => documents::list(c, r).await,
        Request::ListDocumentVersions(r) => documents::list_versions(c, r).await,
        Request::UpdateDocumentDefaultVersion(r) => documents::update_default_version(c, r).await,
        Request::AddTagsToResource(r) => tags::add(c, r).await,
        Request::RemoveTagsFromResource(r) => tags::remove(c, r).await,
        Request::ListTagsForResource(r) => tags::list(c, r).await,
        Request::CreateAssociation(r) => associations::create(c, authority, r).await,
        Request::ListAssociations(r) => associations::list(c, r).await,
        Request::DescribeAssociation(r) => associations::describe(c, r).await,
        Request::UpdateAssociation(r) => associations::update(c, authority, r).await,
        Request::DeleteAssociation(r) => associations::delete(c, r).await,
        Request::DescribeInstanceAssociationsStatus(r) => {
            associations::instance_statuses(c, r).await
        }
        Request::ListInventoryEntries(r) => inventory::list_entries(c, r).await,
        Request::GetInventory(r) => inventory::get(c, r).await,
        Request::ListInventoryChanges(r) => inventory::list_changes(c, r).await,
        Request::PutParameter(r) => parameters::put(c, authority, r).await,
        Request::GetParameter(r) => parameters::get(c, authority, r).await,
        Request::GetParameters(r) => parameters::get_many(c, authority, r).await,
        Request::GetParametersByPath(r) => parameters::by_path(c, authority, r).await,
        Request::DescribeParameters(r) => parameters::describe(c, r).await,
        Request::GetParameterHistory(r) => parameters::history(c, authority, r).await,
        Request::LabelParameterVersion(r) => parameters::label(c, r).await,
        Request::UnlabelParameterVersion(r) => parameters::unlabel(c, r).await,
        Request::DeleteParameter(r) => parameters::delete(c, r).await,
        Request::DeleteParameters(r) => parameters::delete_many(c, r).await,
        Request::CreateParameterKey(r) => parameters::create_key(c, r).await,
        Request::ListParameterKeys(r) => parameters::list_keys(c, r).await,
        Request::RotateParameterKey(r) => parameters::rotate_key(c, r).await,
        Request::CreateOperatorConfig(r) => users::create_operator_config(c, r).await,
        Request::ListOperatorTokens(r) => users::list_operator_tokens(c, r).await,
        Request::DeleteOperatorToken(r) => users::delete_operator_token(c, r).await,
        Request::RotateRootToken(_) => users::rotate_root_token(c).await,
        Request::CreateUser(r) => users::create(c, r).await,
        Request::GetUser(r) => users::get(c, authority, r).await,
        Request::ListUsers(r) => users::list(c, r).await,
        Request::DeleteUser(r) => users::delete(c, r).await,
        Request::TagUser(r) => users::tag(c, r).await,
        Request::UntagUser(r) => users::untag(c, r).await,
        Request::ListUserTags(r) => users::list_tags(c, r).await,
        Request::PutUserPolicy(r) => users::put_policy(c, r).await,
        Request::GetUserPolicy(r) => users::get_policy(c, r).await,
        Request::ListUserPolicies(r) => users::list_policies(c, r).await,
        Request::DeleteUserPolicy(r) => users::delete_policy(c, r).await,
        Request::CreateAccessKey(r) => access_keys::create(c, authority, r).await,
        Request::UpdateAccessKey(r) => access_keys::update(c, authority, r).await,
        Request::ListAccessKeys(r) => access_keys::list(c, authority, r).await,
        Request::DeleteAccessKey(r) => access_keys::delete(c, authority, r).await,
        Request::GetAccessKeyLastUsed(r) => access_keys::last_used(c, r).await,
        Request::SimulatePrincipalPolicy(r) => users::simulate(c, caller, r).await,
        Request::LookupEvents(r) => trail::lookup_events(c, r).await,
        Request::DescribeTrustRotation(_) => trust_rotation::describe(c).await,
        Request::StartTrustRotation(_) => trust_rotation::start(c).await,
        Request::SwitchTrustRotation(_) => trust_rotation::switch(c).await,
        Request::FinishTrustRotation(_) => trust_rotation::finish(c).await,
        Request::VerifyAuditTrail(r) => trail::verify(c, r).await,
        Request::ConsoleLogin(_) => console::login(authority),
        Request::AddAgentRelease(r) => releases::add(c, authority, r).await,
        Request::ListAgentReleases(_) => releases::list(c).await,
        Request::SetAgentTargetVersion(r) => releases::set_target(c, authority, r).await,
        Request::DeleteAgentRelease(r) => releases::delete(c, r).await,
        Request::GetMetrics(_) => Ok(serde_json::json!({
            "Metrics": crate::core::stats::render(c).await,
        })),
    }
}
