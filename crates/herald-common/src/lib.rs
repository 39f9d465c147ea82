//! herald-common holds what the framework (`herald`), the `herald` CLI and the gateway
//! share without depending on each other: the dead-letter convention with the redrive's
//! decisions ([`dlq`]), and RFC 3339 time ([`time`]). It does no IO and has no
//! dependencies, so any of them can link it.

pub mod dlq;
pub mod time;
