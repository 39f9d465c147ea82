//! Consumer groups: the coordinator state machine ([`coordinator`], plain code driven by
//! `now`), the new protocol's (KIP-848, [`consumer`]), their async edge ([`manager`]),
//! and committed offsets ([`offsets`]).

pub(crate) mod consumer;
pub(crate) mod coordinator;
pub(crate) mod manager;
pub(crate) mod offsets;

pub use coordinator::{Group, GroupConfig, GroupError, GroupState};
pub use manager::{GroupListing, GroupManager, Pending};
pub use offsets::{Committed, OffsetStore};

#[cfg(test)]
mod tests;
