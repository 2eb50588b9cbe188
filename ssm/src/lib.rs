//! The SSM API as Tether speaks it, on every transport: botocore's model of
//! the service (embedded), validation of a request against it, the errors,
//! the invocation and command statuses, and the contract's limits.
//!
//! - [`model`]: botocore's `ssm/2014-11-06` model and paginators, embedded.
//! - [`validate`]: a request checked against the model, as AWS's front end does.
//! - [`error`]: [`ApiError`], an SSM error type and a message.
//! - [`state`]: the invocation and command state machines.
//! - [`limits`]: every limit and default of the outside contract.
//!
//! Pure: no IO but decompressing the embedded model once, no async runtime.
//! The coordinator, the store and the CLI all build on it; it builds on none
//! of them.

pub mod error;
pub mod limits;
pub mod model;
pub mod state;
pub mod validate;

pub use error::ApiError;

/// Every SSM operation this coordinator implements, as named in the SSM model.
/// The operator CLI offers exactly these as `aws ssm` verbs, and the HTTPS
/// API serves exactly these.
pub const OPERATIONS: &[&str] = &[
    "CreateActivation",
    "DescribeActivations",
    "DeleteActivation",
    "DescribeInstanceInformation",
    "DeregisterManagedInstance",
    "SendCommand",
    "ListCommands",
    "ListCommandInvocations",
    "GetCommandInvocation",
    "CreateDocument",
    "UpdateDocument",
    "DeleteDocument",
    "GetDocument",
    "DescribeDocument",
    "ListDocuments",
    "ListDocumentVersions",
    "UpdateDocumentDefaultVersion",
    "AddTagsToResource",
    "RemoveTagsFromResource",
    "ListTagsForResource",
    "CancelCommand",
    "CreateAssociation",
    "ListAssociations",
    "DescribeAssociation",
    "UpdateAssociation",
    "DeleteAssociation",
    "DescribeInstanceAssociationsStatus",
    "ListInventoryEntries",
    "GetInventory",
];
