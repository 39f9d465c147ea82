//! herald-registry is the schema registry `herald serve` runs: subjects with numbered
//! versions of schemas under global ids (the same schema under two subjects has one id),
//! the seven Confluent compatibility levels for Avro (through apache-avro) and JSON
//! Schema (through jsonschema, with structural rules for compatibility), modes, soft and
//! hard deletes — durable in an internal log of the data directory, replayed at open.
//!
//! It speaks no HTTP: the gateway serves the Confluent REST API over it. It refuses
//! PROTOBUF schemas for now, and every refusal carries Confluent's error code. Decisions
//! are plain code over the state (`model.rs`); the log is written before any answer.

mod avro;
mod error;
mod json_schema;
mod model;
mod registry;
mod schema;

pub use error::RegistryError;
pub use model::{Level, Mode, Stored, Which};
pub use registry::{NewSchema, Registry, RegistryConfig, SCHEMAS_DIR, Version};
pub use schema::{Reference, SchemaType};

#[cfg(test)]
mod tests;
