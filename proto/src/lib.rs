//! The wire contract between `tether-agent`, the `tether` coordinator and the operator CLI.
//!
//! This is the only crate that knows protobuf: everything else works with the
//! generated types re-exported here. The signed command envelope lives here too, as
//! bytes plus a signature, so that what the agent verifies is exactly what the
//! coordinator signed, independent of how any crate re-encodes a message.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("tether.v1");
}

pub use v1::*;

/// gRPC metadata key carrying the operator token.
pub const OPERATOR_TOKEN_HEADER: &str = "authorization";
/// gRPC metadata key on operator errors carrying the SSM error type (`InvalidInstanceId`, ...).
pub const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";
/// Largest message either side accepts: full step output (16 MiB per stream by default) plus headroom.
pub const MAX_MESSAGE_BYTES: usize = 40 * 1024 * 1024;

/// Prefix of the bytes signed for a `SignedCancel` (commands are signed over
/// their payload alone), keeping the two kinds of signature apart.
pub const CANCEL_SIGNING_CONTEXT: &[u8] = b"tether-cancel-v1\0";
/// Prefix of the bytes an association's signature covers (see `AssociationEnvelope`),
/// so an association's signature never passes for a command's or a cancellation's.
pub const ASSOCIATION_SIGNING_CONTEXT: &[u8] = b"tether-association-v1\0";
/// Prefix of the bytes a `TrustEnvelope`'s signature covers.
pub const TRUST_SIGNING_CONTEXT: &[u8] = b"tether-trust-v1\0";
/// Prefix of what a previous command-signing key signs to endorse its
/// successor (`TrustBundle.command_signing_key_endorsement`).
pub const KEY_ENDORSEMENT_CONTEXT: &[u8] = b"tether-key-endorsement-v1\0";
/// Prefix of what the release key signs: an encoded `ReleaseManifest`.
pub const RELEASE_SIGNING_CONTEXT: &[u8] = b"tether-release-v1\0";

pub mod seal;

/// PEM (LF line endings) of a DER certificate, as CA certificates travel
/// between the coordinator and agents.
pub fn certificate_pem(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der.to_vec()), config)
}
