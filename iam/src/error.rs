//! A refusal of a policy document: IAM's `MalformedPolicyDocument`.

/// Why a document is not a policy: the message names the statement (its
/// number from 1 and its `Sid`) and the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub message: String,
}

/// A refusal at `at` (`Statement 2 (Sid X): `, or empty for the document).
pub(crate) fn refuse(at: &str, message: impl std::fmt::Display) -> PolicyError {
    PolicyError {
        message: format!("{at}{message}"),
    }
}
