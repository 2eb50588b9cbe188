//! The gRPC edge: translates the three services of `tether.proto` into calls
//! on [`Coordinator`] and the SSM action layer. No logic of its own beyond
//! authentication: agents by client certificate, operators by token.

use std::sync::Arc;

use tether_proto as pb;
use tonic::{Request, Response, Status};

use crate::api;
use crate::core::{AgentError, Coordinator, RegisterError};
use crate::pki;
use tether_store::InstanceRow;

/// Hex SHA-256 of an operator token, as stored.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Clone, Debug)]
pub struct Services {
    core: Arc<Coordinator>,
}

impl Services {
    pub fn new(core: Arc<Coordinator>) -> Self {
        Services { core }
    }

    /// The instance behind the caller's client certificate.
    async fn agent<T>(&self, req: &Request<T>) -> Result<InstanceRow, Status> {
        let certs = req.peer_certs().ok_or_else(|| {
            Status::unauthenticated("a client certificate is required: register the agent first")
        })?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("empty client certificate chain"))?;
        let id = pki::subject_common_name(leaf.as_ref())
            .ok_or_else(|| Status::unauthenticated("client certificate has no instance ID"))?;
        self.core.authorize_agent(&id).await.map_err(agent_status)
    }
}

fn agent_status(e: AgentError) -> Status {
    match e {
        AgentError::UnknownInstance(_) | AgentError::Deregistered(_) => {
            Status::permission_denied(e.to_string())
        }
        AgentError::Internal(_) => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl pb::registration_server::Registration for Services {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let ip = req.remote_addr().map(|a| a.ip());
        match self.core.register(ip, req.into_inner()).await {
            Ok(r) => Ok(Response::new(r)),
            Err(e) => Err(match e {
                RegisterError::UnknownActivation(_) => Status::not_found(e.to_string()),
                RegisterError::WrongCode(_) => Status::permission_denied(e.to_string()),
                RegisterError::Expired { .. }
                | RegisterError::Deleted(_)
                | RegisterError::LimitReached { .. } => Status::failed_precondition(e.to_string()),
                RegisterError::RateLimited { .. } => Status::resource_exhausted(e.to_string()),
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
            server_time_ms: tether_util::now_ms(),
        }))
    }
}

#[tonic::async_trait]
impl pb::agent_server::Agent for Services {
    async fn poll(
        &self,
        req: Request<pb::PollRequest>,
    ) -> Result<Response<pb::PollResponse>, Status> {
        let inst = self.agent(&req).await?;
        let r = self
            .core
            .poll(&inst, req.into_inner())
            .await
            .map_err(agent_status)?;
        Ok(Response::new(r))
    }

    async fn report(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let inst = self.agent(&req).await?;
        let r = self
            .core
            .report(&inst, req.into_inner())
            .await
            .map_err(agent_status)?;
        Ok(Response::new(r))
    }

    async fn renew_certificate(
        &self,
        req: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::RenewCertificateResponse>, Status> {
        let inst = self.agent(&req).await?;
        let r = self
            .core
            .renew_certificate(&inst, req.into_inner())
            .await
            .map_err(agent_status)?;
        Ok(Response::new(r))
    }

    async fn put_inventory(
        &self,
        req: Request<pb::PutInventoryRequest>,
    ) -> Result<Response<pb::PutInventoryResponse>, Status> {
        let inst = self.agent(&req).await?;
        let r = crate::associations::put_inventory(&self.core, &inst, req.into_inner())
            .await
            .map_err(agent_status)?;
        Ok(Response::new(r))
    }

    async fn ping(
        &self,
        req: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        let inst = self.agent(&req).await?;
        Ok(Response::new(pb::PingResponse {
            server_time_ms: tether_util::now_ms(),
            instance_id: inst.instance_id,
        }))
    }
}

#[tonic::async_trait]
impl pb::operator_server::Operator for Services {
    async fn invoke(
        &self,
        req: Request<pb::OperatorCall>,
    ) -> Result<Response<pb::OperatorReply>, Status> {
        let token = req
            .metadata()
            .get(pb::OPERATOR_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("missing operator token (authorization: Bearer ...)")
            })?;
        let presented = token_hash(token);
        let known = self
            .core
            .store
            .operator_token_hashes()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let ok = known.iter().fold(false, |acc, h| {
            let eq: bool = subtle::ConstantTimeEq::ct_eq(h.as_bytes(), presented.as_bytes()).into();
            acc | eq
        });
        if !ok {
            return Err(Status::unauthenticated(
                "the operator token is not valid for this coordinator",
            ));
        }
        let call = req.into_inner();
        let body: serde_json::Value = if call.request_json.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&call.request_json).map_err(|e| {
                error_status(&tether_ssm::ApiError::new(
                    "SerializationException",
                    format!("{}: request is not valid JSON: {e}", call.operation),
                ))
            })?
        };
        match api::invoke(&self.core, &call.operation, &body).await {
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
