//! The errors of the SSM API: an error type (`__type`) and a message naming
//! what was wrong, as every transport returns them.

/// An SSM error: `__type` and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }
    /// Whether the fault is the service's (HTTP 500) rather than the caller's.
    pub fn is_server_fault(&self) -> bool {
        self.kind == "InternalServerError"
    }
}
