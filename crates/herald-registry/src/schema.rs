//! Schemas as the registry keeps them: their type, the text in one canonical form (so the
//! same schema written twice gets one id), references, and the compatibility of two
//! schemas of one type.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::RegistryError;

/// A schema's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    /// Apache Avro (the default when a request names none).
    #[default]
    Avro,
    /// JSON Schema.
    Json,
    /// Protocol Buffers: named by clients, refused for now.
    Protobuf,
}

impl SchemaType {
    /// From a request's `schemaType` (`AVRO`, `JSON`, `PROTOBUF`; absent means AVRO).
    pub fn parse(text: Option<&str>) -> Result<Self, RegistryError> {
        match text.map(str::to_ascii_uppercase).as_deref() {
            None | Some("AVRO") => Ok(Self::Avro),
            Some("JSON") => Ok(Self::Json),
            Some("PROTOBUF") => Ok(Self::Protobuf),
            Some(other) => Err(RegistryError::InvalidSchema(format!("unknown schema type {other}"))),
        }
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Avro => "AVRO",
            Self::Json => "JSON",
            Self::Protobuf => "PROTOBUF",
        })
    }
}

/// A reference from a schema to another subject's version (an Avro named type, a JSON
/// Schema `$ref`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reference {
    /// The name the schema uses for it.
    pub name: String,
    /// The subject it lives under.
    pub subject: String,
    /// Its version there.
    pub version: i32,
}

/// A parsed schema.
#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    Avro(Box<apache_avro::Schema>),
    Json(serde_json::Value),
}

/// Parses `text` as `kind`, with the texts of its references (in order); returns the
/// parsed schema and its canonical text.
pub(crate) fn parse(kind: SchemaType, text: &str, references: &[String]) -> Result<(Parsed, String), RegistryError> {
    let invalid = RegistryError::InvalidSchema;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    // Compact JSON with object keys in order: whitespace and key order never make two ids.
    let canonical = value.to_string();
    let parsed = match kind {
        SchemaType::Avro => Parsed::Avro(Box::new(crate::avro::parse(&canonical, references).map_err(invalid)?)),
        SchemaType::Json => Parsed::Json(crate::json_schema::parse(&canonical).map_err(invalid)?),
        SchemaType::Protobuf => return Err(invalid("PROTOBUF schemas are not supported yet".into())),
    };
    Ok((parsed, canonical))
}

/// Why data written with `writer` may not read with `reader` (empty: it reads).
pub(crate) fn can_read(reader: &Parsed, writer: &Parsed) -> Vec<String> {
    match (reader, writer) {
        (Parsed::Avro(r), Parsed::Avro(w)) => crate::avro::can_read(r, w),
        (Parsed::Json(r), Parsed::Json(w)) => crate::json_schema::can_read(r, w),
        _ => vec!["the schema type changed".into()],
    }
}
