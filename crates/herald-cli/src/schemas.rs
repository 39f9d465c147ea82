//! `herald schemas list | get | register | check | config`: a schema registry over its
//! Confluent REST API (Herald's on 127.0.0.1:8081, or any Confluent-compatible one),
//! through `herald::registry::request`.

use std::io::Read as _;
use std::time::Duration;

use anyhow::{Context, bail};
use herald::registry::{path_segment, request};
use serde_json::{Value, json};

use crate::cluster::print_table;

/// `herald schemas ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct SchemasArgs {
    /// The registry's URL.
    #[arg(long, env = "SCHEMA_REGISTRY_URL", default_value = "http://127.0.0.1:8081", global = true)]
    registry: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: SchemasCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SchemasCommand {
    /// Subjects with their versions and latest schema id and type.
    List {
        /// Include soft-deleted subjects.
        #[arg(long)]
        deleted: bool,
    },
    /// A subject's schema (latest, or --version), or a schema by --id.
    Get {
        /// The subject (omit with --id).
        subject: Option<String>,
        /// A version number or `latest`.
        #[arg(long, default_value = "latest")]
        version: String,
        /// A schema id instead of a subject.
        #[arg(long)]
        id: Option<u32>,
    },
    /// Registers the schema in FILE (`-`: standard input) under a subject; prints its id.
    Register {
        /// The subject, e.g. `orders-value`.
        subject: String,
        /// The schema file.
        file: String,
        /// AVRO, JSON or PROTOBUF.
        #[arg(long = "type", default_value = "AVRO")]
        kind: String,
    },
    /// Whether the schema in FILE may follow the subject's versions at its level; exits 1
    /// when it may not.
    Check {
        /// The subject.
        subject: String,
        /// The schema file (`-`: standard input).
        file: String,
        /// AVRO, JSON or PROTOBUF.
        #[arg(long = "type", default_value = "AVRO")]
        kind: String,
        /// Against this version only (default: the versions the level checks).
        #[arg(long)]
        version: Option<String>,
    },
    /// The compatibility level (the registry's, or a subject's); `--set` changes it.
    Config {
        /// The subject (default: the registry-wide level).
        subject: Option<String>,
        /// BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE.
        #[arg(long)]
        set: Option<String>,
    },
}

/// How long one registry request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Longest schema file read.
const SCHEMA_BYTES_MAX: u64 = 16 << 20;

pub(crate) fn run(args: SchemasArgs) -> anyhow::Result<()> {
    let base = args.registry.trim_end_matches('/').to_string();
    let call = |method: &str, path: &str, body: Option<Value>| -> anyhow::Result<Value> {
        request(method, &format!("{base}{path}"), body.as_ref(), TIMEOUT).map_err(|e| anyhow::anyhow!("{e}"))
    };
    match args.command {
        SchemasCommand::List { deleted } => list(&call, deleted, args.json),
        SchemasCommand::Get { subject, version, id } => {
            let answer = match (id, subject) {
                (Some(id), _) => call("GET", &format!("/schemas/ids/{id}"), None)?,
                (None, Some(subject)) => call(
                    "GET",
                    &format!("/subjects/{}/versions/{}", path_segment(&subject), path_segment(&version)),
                    None,
                )?,
                (None, None) => bail!("give a subject or --id"),
            };
            if args.json {
                println!("{answer}");
            } else {
                for field in ["subject", "version", "id", "schemaType"] {
                    if let Some(value) = answer.get(field) {
                        eprintln!("{field}: {}", value.as_str().map_or_else(|| value.to_string(), str::to_string));
                    }
                }
                let schema = answer["schema"].as_str().unwrap_or_default();
                let pretty =
                    serde_json::from_str::<Value>(schema).map(|v| format!("{v:#}")).unwrap_or(schema.to_string());
                println!("{pretty}");
            }
            Ok(())
        }
        SchemasCommand::Register { subject, file, kind } => {
            let body = json!({ "schema": read_schema(&file)?, "schemaType": kind.to_ascii_uppercase() });
            let answer = call("POST", &format!("/subjects/{}/versions", path_segment(&subject)), Some(body))?;
            if args.json {
                println!("{answer}")
            } else {
                println!("{}", answer["id"])
            }
            Ok(())
        }
        SchemasCommand::Check { subject, file, kind, version } => {
            let body = json!({ "schema": read_schema(&file)?, "schemaType": kind.to_ascii_uppercase() });
            let versions = version.map(|v| format!("/{}", path_segment(&v))).unwrap_or_default();
            let path = format!("/compatibility/subjects/{}/versions{versions}?verbose=true", path_segment(&subject));
            let answer = call("POST", &path, Some(body))?;
            let compatible = answer["is_compatible"].as_bool().unwrap_or(false);
            if args.json {
                println!("{answer}");
            } else {
                println!("{}", if compatible { "compatible" } else { "incompatible" });
                for message in answer["messages"].as_array().into_iter().flatten() {
                    println!("  {}", message.as_str().unwrap_or_default());
                }
            }
            if !compatible {
                std::process::exit(1);
            }
            Ok(())
        }
        SchemasCommand::Config { subject, set } => {
            let path = subject
                .map(|s| format!("/config/{}?defaultToGlobal=true", path_segment(&s)))
                .unwrap_or("/config".into());
            let answer = match set {
                Some(level) => call(
                    "PUT",
                    path.split('?').next().unwrap_or(&path),
                    Some(json!({ "compatibility": level.to_ascii_uppercase() })),
                )?,
                None => call("GET", &path, None)?,
            };
            let level =
                answer.get("compatibilityLevel").or(answer.get("compatibility")).cloned().unwrap_or(Value::Null);
            if args.json {
                println!("{answer}")
            } else {
                println!("{}", level.as_str().unwrap_or_default())
            }
            Ok(())
        }
    }
}

fn list(
    call: &impl Fn(&str, &str, Option<Value>) -> anyhow::Result<Value>,
    deleted: bool,
    json: bool,
) -> anyhow::Result<()> {
    let subjects = call("GET", &format!("/subjects?deleted={deleted}"), None)?;
    let mut rows = Vec::new();
    for subject in subjects.as_array().into_iter().flatten().filter_map(Value::as_str) {
        let segment = path_segment(subject);
        let versions = call("GET", &format!("/subjects/{segment}/versions?deleted={deleted}"), None)?;
        let latest = call("GET", &format!("/subjects/{segment}/versions/latest"), None).unwrap_or(Value::Null);
        rows.push(json!({
            "subject": subject,
            "versions": versions,
            "latest_id": latest["id"],
            "type": latest.get("schemaType").cloned().unwrap_or(json!("AVRO")),
        }));
    }
    if json {
        println!("{}", Value::Array(rows));
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let versions: Vec<String> = r["versions"].as_array().into_iter().flatten().map(Value::to_string).collect();
            vec![
                r["subject"].as_str().unwrap_or_default().to_string(),
                versions.join(","),
                r["latest_id"].to_string(),
                r["type"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    print_table(&["SUBJECT", "VERSIONS", "LATEST ID", "TYPE"], &table);
    Ok(())
}

/// A schema from a file or standard input, bounded.
fn read_schema(file: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    let read = if file == "-" {
        std::io::stdin().take(SCHEMA_BYTES_MAX).read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(SCHEMA_BYTES_MAX).read_to_string(&mut text))
    };
    read.with_context(|| format!("reading the schema from {file}"))?;
    Ok(text)
}
