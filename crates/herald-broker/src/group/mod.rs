//! Consumer groups: the coordinator state machine ([`coordinator`], plain code driven by
//! `now`), its async edge ([`manager`]), and committed offsets ([`offsets`]).

// The new protocol's decisions, model-tested; not served on the wire yet.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod consumer;
pub(crate) mod coordinator;
pub(crate) mod manager;
pub(crate) mod offsets;

pub use coordinator::{Group, GroupConfig, GroupError, GroupState};
pub use manager::{GroupListing, GroupManager, Pending};
pub use offsets::{Committed, OffsetStore};

#[cfg(test)]
mod tests;
