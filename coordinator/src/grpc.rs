//! The gRPC edge: translates the three services of `tether.proto` into calls
//! on [`Coordinator`] and the action layer. It authenticates — agents by
//! client certificate, operators by token — and converts protobuf to the
//! coordinator's domain values and back; nothing else. Beside `signing`,
//! which builds the bytes that get signed, it is the only module that knows
//! protobuf.

use std::sync::Arc;
use std::time::Duration;

use tether_proto as pb;
use tether_ssm::state::Detail;
use tether_store::{HostInfo, InstanceRow, InvocationResult, OutputChunk, PluginResult};
use tether_util::time::now_ms;
use tonic::codegen::{BoxFuture, Context, Poll as TaskPoll, Service, http};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Response, Status};

use crate::actions;
use crate::associations::{AssociationRun, InventoryItem, InventoryUpload, SignedSet};
use crate::core::{AgentError, Coordinator, Poll, RegisterError, Registration, Report};
use crate::credentials::{Caller, Transport};
use crate::pki;
use crate::signing::Signed;

#[derive(Clone, Debug)]
pub struct Services {
    core: Arc<Coordinator>,
}

impl Services {
    pub fn new(core: Arc<Coordinator>) -> Self {
        Services { core }
    }

    /// The instance ID in the caller's client certificate.
    fn certified<T>(req: &Request<T>) -> Result<String, Status> {
        let certs = req.peer_certs().ok_or_else(|| {
            Status::unauthenticated("a client certificate is required: register the agent first")
        })?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("empty client certificate chain"))?;
        pki::subject_common_name(leaf.as_ref())
            .ok_or_else(|| Status::unauthenticated("client certificate has no instance ID"))
    }

    /// The instance behind the caller's client certificate, with its row.
    async fn agent<T>(&self, req: &Request<T>) -> Result<InstanceRow, Status> {
        let id = Self::certified(req)?;
        self.core.authorize_agent(&id).await.map_err(agent_status)
    }

    /// The instance behind the caller's client certificate, admitted from
    /// memory once its registration was read (the hot path: polls,
    /// reports, pings).
    async fn admitted<T>(&self, req: &Request<T>) -> Result<String, Status> {
        let id = Self::certified(req)?;
        self.core.admit_agent(&id).await.map_err(agent_status)?;
        Ok(id)
    }
}

fn agent_status(e: AgentError) -> Status {
    match e {
        AgentError::UnknownInstance(_) | AgentError::Deregistered(_) => {
            Status::permission_denied(e.to_string())
        }
        AgentError::Internal(_) => Status::internal(e.to_string()),
        AgentError::Unavailable(_) => Status::unavailable(e.to_string()),
        AgentError::BadRequest(_) => Status::invalid_argument(e.to_string()),
        AgentError::NotFound(_) => Status::not_found(e.to_string()),
    }
}

/// Deliberately bad releases, for end-to-end tests of the agent's checks
/// (`TETHER_TEST_RELEASE_HOOK`): it can only make an update fail, never let
/// a bad binary through, because the agent verifies regardless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReleaseHook {
    /// Change the first byte of the binary as it is served.
    Tamper,
    /// Serve a manifest whose signature does not verify.
    BadSignature,
    /// End every download at half the release's size.
    Truncate,
}

fn release_hook() -> Option<ReleaseHook> {
    let v = std::env::var("TETHER_TEST_RELEASE_HOOK").ok()?;
    let hook = match v.as_str() {
        "tamper" => ReleaseHook::Tamper,
        "bad-signature" => ReleaseHook::BadSignature,
        "truncate" => ReleaseHook::Truncate,
        _ => return None,
    };
    tracing::warn!(hook = %v, "TEST HOOK ACTIVE: releases are deliberately corrupted");
    Some(hook)
}

fn host_info(i: pb::AgentInfo) -> HostInfo {
    HostInfo {
        platform_type: i.platform_type,
        platform_name: i.platform_name,
        platform_version: i.platform_version,
        computer_name: i.computer_name,
        ip_address: i.ip_address,
        agent_version: i.agent_version,
    }
}

fn envelope(s: Signed) -> pb::CommandEnvelope {
    pb::CommandEnvelope {
        payload: s.payload,
        signature: s.signature,
    }
}

fn association_set(set: SignedSet) -> pb::AssociationSet {
    pb::AssociationSet {
        digest: set.digest,
        associations: set
            .associations
            .into_iter()
            .map(|s| pb::AssociationEnvelope {
                payload: s.payload,
                signature: s.signature,
            })
            .collect(),
    }
}

fn detail_of(state: pb::InvocationState) -> Detail {
    match state {
        pb::InvocationState::Success => Detail::Success,
        pb::InvocationState::TimedOut => Detail::ExecutionTimedOut,
        pb::InvocationState::Cancelled => Detail::Cancelled,
        pb::InvocationState::InProgress => Detail::InProgress,
        _ => Detail::Failed,
    }
}

/// A time on the wire, where 0 means "not given".
fn when(ms: i64) -> Option<i64> {
    (ms > 0).then_some(ms)
}

pub(crate) fn report_of(r: pb::InvocationReport) -> Report {
    let state = pb::InvocationState::try_from(r.state).unwrap_or(pb::InvocationState::Unspecified);
    let command_id = r.command_id;
    match state {
        pb::InvocationState::InProgress => Report::Started {
            command_id,
            started_ms: when(r.started_at_ms),
            // Live output of the running step, if the report carries any.
            output: r
                .plugins
                .into_iter()
                .map(|p| OutputChunk {
                    step_index: i64::from(p.step_index),
                    name: p.name,
                    start_ms: when(p.started_at_ms),
                    stdout_offset: p.stdout_offset,
                    stdout: p.stdout,
                    stderr_offset: p.stderr_offset,
                    stderr: p.stderr,
                })
                .collect(),
        },
        pb::InvocationState::Refused => Report::Refused {
            command_id,
            why: r.detail,
        },
        pb::InvocationState::Unspecified => Report::Unknown { command_id },
        terminal => Report::Finished {
            command_id,
            result: InvocationResult {
                detail: detail_of(terminal),
                response_code: i64::from(r.response_code),
                start_ms: when(r.started_at_ms),
                end_ms: when(r.ended_at_ms),
                plugins: r
                    .plugins
                    .into_iter()
                    .map(|p| PluginResult {
                        name: p.name,
                        detail: detail_of(
                            pb::InvocationState::try_from(p.state)
                                .unwrap_or(pb::InvocationState::Failed),
                        ),
                        response_code: i64::from(p.response_code),
                        start_ms: when(p.started_at_ms),
                        end_ms: when(p.ended_at_ms),
                        stdout: p.stdout,
                        stderr: p.stderr,
                        stdout_truncated: p.stdout_truncated,
                        stderr_truncated: p.stderr_truncated,
                    })
                    .collect(),
            },
        },
    }
}

pub(crate) fn registration_of(r: pb::RegisterRequest) -> Registration {
    Registration {
        activation_id: r.activation_id,
        activation_code: r.activation_code,
        csr_pem: r.csr_pem,
        name: r.name,
        host: host_info(r.info.unwrap_or_default()),
    }
}

pub(crate) fn poll_of(r: pb::PollRequest) -> Poll {
    Poll {
        wait: (r.wait_ms > 0).then(|| Duration::from_millis(u64::from(r.wait_ms))),
        associations_digest: r.associations_digest,
        host: r.info.map(host_info),
        sealing_public_key: r.sealing_public_key,
        trust_digest: r.trust_digest,
    }
}

pub(crate) fn inventory_upload(req: pb::PutInventoryRequest) -> InventoryUpload {
    InventoryUpload {
        items: req
            .items
            .into_iter()
            .map(|i| InventoryItem {
                type_name: i.type_name,
                schema_version: i.schema_version,
                capture_ms: i.capture_time_ms,
                content_hash: i.content_hash,
                content_json: i.content_json,
                unchanged: i.unchanged,
            })
            .collect(),
        runs: req
            .runs
            .into_iter()
            .map(|r| AssociationRun {
                association_id: r.association_id,
                association_version: r.association_version,
                status: r.status,
                detail: r.detail,
                ended_ms: r.ended_at_ms,
                output: r.output,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl pb::registration_server::Registration for Services {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let ip = req.remote_addr().map(|a| a.ip());
        let registration = registration_of(req.into_inner());
        match self.core.register(ip, registration).await {
            Ok(r) => Ok(Response::new(pb::RegisterResponse {
                instance_id: r.instance_id,
                client_certificate_pem: r.client_certificate_pem,
                ca_certificate_pem: r.ca_certificate_pem,
                command_signing_public_key: r.command_signing_public_key,
                server_time_ms: now_ms(),
                release_public_key: r.release_public_key,
            })),
            Err(e) => Err(match e {
                RegisterError::WrongIdOrCode => Status::permission_denied(e.to_string()),
                RegisterError::Expired { .. }
                | RegisterError::Deleted(_)
                | RegisterError::LimitReached { .. } => Status::failed_precondition(e.to_string()),
                RegisterError::RateLimited { .. } | RegisterError::ActivationRateLimited { .. } => {
                    Status::resource_exhausted(e.to_string())
                }
                RegisterError::BadRequest(_) => Status::invalid_argument(e.to_string()),
                RegisterError::Internal(_) => Status::internal(e.to_string()),
            }),
        }
    }

    async fn server_time(
        &self,
        _req: Request<pb::ServerTimeRequest>,
    ) -> Result<Response<pb::ServerTimeResponse>, Status> {
        Ok(Response::new(pb::ServerTimeResponse {
            server_time_ms: now_ms(),
        }))
    }
}

#[tonic::async_trait]
impl pb::agent_server::Agent for Services {
    async fn poll(
        &self,
        req: Request<pb::PollRequest>,
    ) -> Result<Response<pb::PollResponse>, Status> {
        let id = self.admitted(&req).await?;
        let poll = poll_of(req.into_inner());
        let d = self.core.poll(&id, poll).await.map_err(agent_status)?;
        Ok(Response::new(pb::PollResponse {
            envelopes: d.envelopes.into_iter().map(envelope).collect(),
            server_time_ms: now_ms(),
            cancels: d.cancels.into_iter().map(envelope).collect(),
            associations: d.associations.map(association_set),
            trust: d.trust.map(|t| pb::TrustEnvelope {
                payload: t.payload,
                signature: t.signature,
            }),
        }))
    }

    async fn report(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let id = self.admitted(&req).await?;
        let reports = req
            .into_inner()
            .reports
            .into_iter()
            .map(report_of)
            .collect();
        self.core.report(&id, reports).await.map_err(agent_status)?;
        Ok(Response::new(pb::ReportResponse {
            server_time_ms: now_ms(),
        }))
    }

    async fn renew_certificate(
        &self,
        req: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::RenewCertificateResponse>, Status> {
        let inst = self.agent(&req).await?;
        let pem = self
            .core
            .renew_certificate(&inst, &req.into_inner().csr_pem)
            .await
            .map_err(agent_status)?;
        Ok(Response::new(pb::RenewCertificateResponse {
            client_certificate_pem: pem,
            server_time_ms: now_ms(),
        }))
    }

    async fn put_inventory(
        &self,
        req: Request<pb::PutInventoryRequest>,
    ) -> Result<Response<pb::PutInventoryResponse>, Status> {
        let inst = self.agent(&req).await?;
        let resend = self
            .core
            .put_inventory(&inst, inventory_upload(req.into_inner()))
            .await
            .map_err(agent_status)?;
        Ok(Response::new(pb::PutInventoryResponse {
            resend_type_names: resend,
            server_time_ms: now_ms(),
        }))
    }

    type DownloadReleaseStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::ReleaseChunk, Status>> + Send + 'static>,
    >;

    async fn get_release(
        &self,
        req: Request<pb::GetReleaseRequest>,
    ) -> Result<Response<pb::GetReleaseResponse>, Status> {
        self.agent(&req).await?;
        let r = req.into_inner();
        let (manifest, signature) = self
            .core
            .release_manifest(&r.version, &r.platform)
            .await
            .map_err(agent_status)?;
        let mut signature = signature;
        if release_hook() == Some(ReleaseHook::BadSignature)
            && let Some(b) = signature.first_mut()
        {
            *b ^= 0xff;
        }
        Ok(Response::new(pb::GetReleaseResponse {
            manifest,
            signature,
            server_time_ms: now_ms(),
        }))
    }

    /// Streams the release one stored part at a time: a slow reader holds
    /// at most one part in memory, and a broken download resumes from the
    /// offset the agent holds.
    async fn download_release(
        &self,
        req: Request<pb::DownloadReleaseRequest>,
    ) -> Result<Response<Self::DownloadReleaseStream>, Status> {
        self.agent(&req).await?;
        let r = req.into_inner();
        let size = self
            .core
            .release_download(&r.version, &r.platform, r.offset)
            .await
            .map_err(agent_status)?;
        let core = self.core.clone();
        let hook = release_hook();
        // One chunk in flight: the reader waits for the agent to take it.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut offset = r.offset;
            let end = match hook {
                Some(ReleaseHook::Truncate) => size / 2,
                _ => size,
            };
            while offset < end {
                let item = match core.release_chunk(&r.version, &r.platform, offset).await {
                    Ok(Some(mut chunk)) if !chunk.data.is_empty() => {
                        if hook == Some(ReleaseHook::Tamper) && offset == 0 {
                            chunk.data[0] ^= 0xff;
                        }
                        chunk.data.truncate((end - offset) as usize);
                        offset += chunk.data.len() as u64;
                        Ok(chunk)
                    }
                    Ok(_) => Err(Status::not_found(format!(
                        "release {} for {} ends at {offset} of {size} bytes: deleted during the download?",
                        r.version, r.platform
                    ))),
                    Err(e) => Err(agent_status(e)),
                };
                let last = item.is_err();
                // The agent went away: stop reading.
                if tx.send(item).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn resolve_references(
        &self,
        req: Request<pb::ResolveReferencesRequest>,
    ) -> Result<Response<pb::ResolveReferencesResponse>, Status> {
        let inst = self.agent(&req).await?;
        let r = req.into_inner();
        let (plain, secrets) = actions::references::for_association_run(
            &self.core,
            &inst,
            &r.association_id,
            &r.association_version,
        )
        .await
        .map_err(|e| {
            let message = format!("{}: {}", e.kind, e.message);
            match e.kind {
                "InternalServerError" => Status::internal(message),
                "AccessDeniedException" | "AccessDenied" => Status::permission_denied(message),
                _ => Status::failed_precondition(message),
            }
        })?;
        Ok(Response::new(pb::ResolveReferencesResponse {
            values: plain
                .into_iter()
                .map(|(reference, value)| pb::PlainValue { reference, value })
                .collect(),
            secrets,
            server_time_ms: now_ms(),
        }))
    }

    async fn ping(
        &self,
        req: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        let instance_id = self.admitted(&req).await?;
        Ok(Response::new(pb::PingResponse {
            server_time_ms: now_ms(),
            instance_id,
        }))
    }
}

/// Checks an operator call's token (the `authorization: Bearer ...`
/// header) and answers the principal it stands for.
/// A refusal is an audit event (queued: an unauthenticated caller never
/// makes the coordinator wait on the database).
async fn check_operator_token(
    core: &Coordinator,
    headers: &http::HeaderMap,
    source: Option<std::net::IpAddr>,
) -> Result<crate::credentials::Principal, Status> {
    use crate::credentials::Refused;
    let refused = |credential: Option<&str>, why: &str| {
        core.audit.later(
            crate::audit::Draft::unauthenticated("grpc", source, credential, why),
            "refused",
        );
    };
    let Some(token) = headers
        .get(pb::OPERATOR_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        let why = "missing operator token (authorization: Bearer ...)";
        refused(None, why);
        return Err(Status::unauthenticated(why));
    };
    match crate::credentials::operator_principal(core, token).await {
        Ok(p) => Ok(p),
        Err(Refused::Store(e)) => Err(Status::internal(e.to_string())),
        Err(e) => {
            let credential = match &e {
                Refused::TokenExpired(id) => Some(id.as_str()),
                _ => None,
            };
            refused(credential, &e.to_string());
            Err(Status::unauthenticated(e.to_string()))
        }
    }
}

/// What a [`Gate`] lets through to the service behind it. Every gate
/// answers `Unavailable` while this replica cannot reach its database, so
/// that agents (which take Unavailable for a transport failure) move to
/// another replica at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Anyone (registration: the activation is the credential, and its
    /// message limit is what an unauthenticated call needs).
    Anyone,
    /// Calls with a client certificate (agents; the certificate chain was
    /// verified against the CA during the handshake).
    Agents,
    /// Calls with a valid operator token.
    Operators,
}

/// The credential check of a service, made on the call's headers before its
/// message is read and decoded: a caller without credentials is answered
/// `Unauthenticated` without the coordinator reading (up to the service's
/// message limit) what it sent. The services check again, fully, once
/// decoded (an agent's certificate must name a registered instance). The
/// gate also holds the replica's readiness: refused at once while it cannot
/// reach its database, and a call in flight when it loses it answered
/// `Unavailable` then.
#[derive(Clone, Debug)]
pub struct Gate<S> {
    inner: S,
    core: Arc<Coordinator>,
    admit: Admit,
}

impl<S> Gate<S> {
    pub fn new(inner: S, core: Arc<Coordinator>, admit: Admit) -> Self {
        Gate { inner, core, admit }
    }
}

type GrpcRequest = http::Request<tonic::body::Body>;
type GrpcResponse = http::Response<tonic::body::Body>;

impl<S> Service<GrpcRequest> for Gate<S>
where
    S: Service<GrpcRequest, Response = GrpcResponse, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = GrpcResponse;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<GrpcResponse, std::convert::Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> TaskPoll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: GrpcRequest) -> Self::Future {
        // The clone that was made ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (core, admit) = (self.core.clone(), self.admit);
        Box::pin(async move {
            let checked = match core.serving().map_err(agent_status) {
                Err(unavailable) => Err(unavailable),
                Ok(()) => match admit {
                    Admit::Anyone => Ok(()),
                    Admit::Agents => has_client_certificate(&req),
                    Admit::Operators => {
                        let source = req
                            .extensions()
                            .get::<TlsConnectInfo<TcpConnectInfo>>()
                            .and_then(|i| i.get_ref().remote_addr())
                            .map(|a| a.ip());
                        check_operator_token(&core, req.headers(), source)
                            .await
                            .map(drop)
                    }
                },
            };
            if let Err(status) = checked {
                return Ok(status.into_http());
            }
            // A call still waiting when the database goes (on a query, or a
            // held poll) is answered Unavailable at once.
            tokio::select! {
                answer = inner.call(req) => answer,
                () = core.until_unready() => Ok(agent_status(AgentError::Unavailable(
                    "it lost its database".into(),
                ))
                .into_http()),
            }
        })
    }
}

impl<S: NamedService> NamedService for Gate<S> {
    const NAME: &'static str = S::NAME;
}

fn has_client_certificate(req: &GrpcRequest) -> Result<(), Status> {
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs);
    match certs {
        Some(c) if !c.is_empty() => Ok(()),
        _ => Err(Status::unauthenticated(
            "a client certificate is required: register the agent first",
        )),
    }
}

#[tonic::async_trait]
impl pb::operator_server::Operator for Services {
    async fn invoke(
        &self,
        req: Request<pb::OperatorCall>,
    ) -> Result<Response<pb::OperatorReply>, Status> {
        let principal = check_operator_token(
            &self.core,
            &req.metadata().clone().into_headers(),
            req.remote_addr().map(|a| a.ip()),
        )
        .await?;
        let caller = Caller {
            principal,
            transport: Transport::Grpc,
            source: req.remote_addr().map(|a| a.ip()),
        };
        let call = req.into_inner();
        match actions::handle(
            &self.core,
            &caller,
            &call.operation,
            call.request_json.as_bytes(),
        )
        .await
        {
            Ok(v) => Ok(Response::new(pb::OperatorReply {
                response_json: v.to_string(),
            })),
            Err(e) => Err(error_status(&e)),
        }
    }
}

/// An SSM error as a gRPC status: the SSM type travels in metadata.
fn error_status(e: &tether_ssm::ApiError) -> Status {
    let mut status = if e.is_server_fault() {
        Status::internal(e.message.clone())
    } else {
        Status::invalid_argument(e.message.clone())
    };
    if let Ok(v) = e.kind.parse() {
        status.metadata_mut().insert(pb::ERROR_TYPE_HEADER, v);
    }
    status
}
