//! herald-common holds what the framework (`herald`), the `herald` CLI and the gateway
//! share without depending on each other: the dead-letter convention with the redrive's
//! decisions ([`dlq`]), the envelope around untyped JSON data ([`envelope`]), and RFC 3339
//! time ([`time`]). It does no IO and depends only on serde_json and uuid, so any of them
//! can link it.

pub mod dlq;
pub mod envelope;
pub mod time;
