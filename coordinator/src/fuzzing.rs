//! The agent- and operator-facing gRPC edge as the fuzz targets in `fuzz/`
//! reach it: bytes decoded as tonic decodes them (prost), then the edge's
//! own conversions to domain values and the pure checks behind them. Not an
//! API — nothing in Tether calls it and it adds no behaviour; it exists so
//! that the conversions can stay private to `grpc.rs` and `associations.rs`.

use prost::Message;
use tether_proto as pb;
use tether_ssm::{ApiError, Request};
use tether_store::InventoryPut;

use crate::core::{Poll, Registration, Report};
use crate::credentials::Transport;
use crate::{actions, associations, grpc};

/// A `Register` call's message, as registration receives it.
pub fn registration(bytes: &[u8]) -> Result<Registration, prost::DecodeError> {
    pb::RegisterRequest::decode(bytes).map(grpc::registration_of)
}

/// The CSR of a `RenewCertificate` call.
pub fn renewal(bytes: &[u8]) -> Result<String, prost::DecodeError> {
    pb::RenewCertificateRequest::decode(bytes).map(|r| r.csr_pem)
}

/// A `Poll` call's message, as delivery receives it.
pub fn poll(bytes: &[u8]) -> Result<Poll, prost::DecodeError> {
    pb::PollRequest::decode(bytes).map(grpc::poll_of)
}

/// A `Report` call's reports, as intake receives them.
pub fn reports(bytes: &[u8]) -> Result<Vec<Report>, prost::DecodeError> {
    pb::ReportRequest::decode(bytes).map(|r| r.reports.into_iter().map(grpc::report_of).collect())
}

/// What of a `PutInventory` upload from `instance_id` would be stored, and
/// how many association runs it carries.
pub fn inventory(
    instance_id: &str,
    bytes: &[u8],
) -> Result<(Vec<InventoryPut>, usize), prost::DecodeError> {
    let upload = grpc::inventory_upload(pb::PutInventoryRequest::decode(bytes)?);
    let runs = upload.runs.len();
    Ok((
        associations::inventory_puts(instance_id, upload.items),
        runs,
    ))
}

/// An operator call typed as the one door types it (the token checked
/// before is not the parser's business).
pub fn operator_call(bytes: &[u8]) -> Result<Result<Request, ApiError>, prost::DecodeError> {
    let call = pb::OperatorCall::decode(bytes)?;
    Ok(actions::typed(
        Transport::Grpc,
        &call.operation,
        call.request_json.as_bytes(),
    ))
}
