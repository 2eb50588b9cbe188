//! What the agent does with a verified envelope, reachable for the fuzz
//! targets in `fuzz/`: the plan of a command's or association's document
//! and when an association is next due. Not an API — nothing in Tether
//! calls it and it adds no behaviour; the functions stay private to `run`.

pub use crate::run::associations::{RunState, next_due};
pub use crate::run::plan;
