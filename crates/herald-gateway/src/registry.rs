//! The Confluent Schema Registry REST API (v1) over `herald_registry::Registry`, on a
//! listener of its own (the seeds' 8081), with the gateway's tokens and limits. Bodies are
//! read whatever their content type (`application/vnd.schemaregistry.v1+json`,
//! `application/json`, none); answers are `application/vnd.schemaregistry.v1+json`, and
//! every refusal is Confluent's `{"error_code", "message"}` with its status.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use herald_registry::{Level, Mode, NewSchema, Reference, Registry, RegistryError, SchemaType, Stored, Version, Which};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::auth::{Scope, Tokens, authorize};
use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::server::Listening;

/// Confluent's content type.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What the registry's handlers share.
#[derive(Debug)]
struct RegistryApp {
    registry: Arc<Registry>,
    tokens: Option<Tokens>,
    body_bytes_max: usize,
    /// `GET /schemas/ids/{id}` answers, rendered once: an id's schema never changes, and
    /// a delete (which may hide an id) clears them.
    by_id: std::sync::RwLock<std::collections::HashMap<u32, axum::body::Bytes>>,
}

impl RegistryApp {
    fn forget_answers(&self) {
        self.by_id.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

/// A refusal as Confluent writes it.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: u32,
    message: String,
}

impl From<RegistryError> for Refusal {
    fn from(error: RegistryError) -> Self {
        let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, code: error.code(), message: error.to_string() }
    }
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, code: u32::from(status.as_u16()), message: message.into() }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        answer(self.status, &json!({ "error_code": self.code, "message": self.message }))
    }
}

/// A JSON answer with Confluent's content type.
fn answer(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

fn ok(body: &Value) -> Result<Response, Refusal> {
    Ok(answer(StatusCode::OK, body))
}

/// A token of at least the scope `SCOPE` (0 read, 1 write, 2 admin), refused as Confluent
/// refuses.
#[derive(Debug)]
struct Allowed<const SCOPE: u8>;

impl<const SCOPE: u8> FromRequestParts<Arc<RegistryApp>> for Allowed<SCOPE> {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<RegistryApp>) -> Result<Self, Refusal> {
        let need = [Scope::Read, Scope::Write, Scope::Admin][usize::from(SCOPE.min(2))];
        authorize(app.tokens.as_ref(), None, &parts.headers, None, need)
            .map(|()| Self)
            .map_err(|problem| Refusal::new(problem.status, problem.detail))
    }
}

/// A JSON body of any content type, bounded by the gateway's body limit.
#[derive(Debug)]
struct Body<T>(T);

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<RegistryApp>> for Body<T> {
    type Rejection = Refusal;

    async fn from_request(request: Request, app: &Arc<RegistryApp>) -> Result<Self, Refusal> {
        let max = app.body_bytes_max;
        let bytes = axum::body::to_bytes(request.into_body(), max).await.map_err(|_| Refusal {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 42201,
            message: format!("Invalid schema: the request is larger than {max} bytes"),
        })?;
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, format!("Unrecognized request: {e}")))
    }
}

/// Runs registry work on a blocking thread (it fsyncs).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, Refusal> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Refusal::from),
        Err(e) => Err(Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, format!("a task failed: {e}"))),
    }
}

/// A schema in a request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    schema: String,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
    /// IMPORT mode only.
    id: Option<u32>,
    version: Option<i32>,
}

impl SchemaBody {
    fn new_schema(self) -> Result<(NewSchema, Option<(u32, i32)>), Refusal> {
        let kind = SchemaType::parse(self.schema_type.as_deref())?;
        let forced = match (self.id, self.version) {
            (Some(id), Some(version)) => Some((id, version)),
            (None, None) => None,
            _ => {
                return Err(Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "give both id and version (IMPORT mode), or neither",
                ));
            }
        };
        Ok((NewSchema { schema: self.schema, kind, references: self.references }, forced))
    }
}

/// `?deleted=`, `?permanent=`, `?defaultToGlobal=`, `?verbose=`, `?subjectPrefix=`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Flags {
    #[serde(default, deserialize_with = "flag")]
    deleted: bool,
    #[serde(default, deserialize_with = "flag")]
    permanent: bool,
    #[serde(default, deserialize_with = "flag")]
    default_to_global: bool,
    #[serde(default, deserialize_with = "flag")]
    verbose: bool,
    subject_prefix: Option<String>,
}

/// `true`/`false` in any case (Python clients send `True`).
fn flag<'de, D: serde::Deserializer<'de>>(from: D) -> Result<bool, D::Error> {
    let text = String::deserialize(from)?;
    match text.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(serde::de::Error::custom(format!("{text:?} is not true or false"))),
    }
}

fn flags(query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>) -> Result<Flags, Refusal> {
    query.map(|Query(f)| f).map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// A stored schema's fields as Confluent answers them (`schemaType` only when not AVRO).
fn schema_fields(stored: &Stored, into: &mut serde_json::Map<String, Value>) {
    into.insert("schema".into(), stored.schema.clone().into());
    if stored.kind != SchemaType::Avro {
        into.insert("schemaType".into(), stored.kind.to_string().into());
    }
    if !stored.references.is_empty() {
        into.insert("references".into(), serde_json::to_value(&stored.references).unwrap_or_default());
    }
}

fn version_json(v: &Version) -> Value {
    let mut fields = serde_json::Map::new();
    fields.insert("subject".into(), v.subject.clone().into());
    fields.insert("version".into(), v.version.into());
    fields.insert("id".into(), v.id.into());
    schema_fields(&v.schema, &mut fields);
    Value::Object(fields)
}

fn id_of(text: &str) -> Result<u32, Refusal> {
    text.parse().map_err(|_| RegistryError::SchemaNotFound(text.to_string()).into())
}

// ----- handlers -----

async fn root(_: Allowed<0>) -> Result<Response, Refusal> {
    ok(&json!({}))
}

async fn types(_: Allowed<0>) -> Result<Response, Refusal> {
    ok(&json!(["JSON", "AVRO"]))
}

async fn schema_by_id(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let id = id_of(&id)?;
    let cached = app.by_id.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id).cloned();
    let body = match cached {
        Some(body) => body,
        None => {
            let stored = app.registry.schema(id)?;
            let mut fields = serde_json::Map::new();
            schema_fields(&stored, &mut fields);
            let body = axum::body::Bytes::from(Value::Object(fields).to_string());
            app.by_id.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, body.clone());
            body
        }
    };
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

async fn raw_schema_by_id(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let stored = app.registry.schema(id_of(&id)?)?;
    Ok(answer(StatusCode::OK, &serde_json::from_str(&stored.schema).unwrap_or(Value::String(stored.schema))))
}

async fn subjects_of_id(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    Path(id): Path<String>,
    query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let mut subjects: Vec<String> =
        app.registry.uses(id_of(&id)?, flags(query)?.deleted)?.into_iter().map(|(s, _)| s).collect();
    subjects.dedup();
    ok(&json!(subjects))
}

async fn versions_of_id(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    Path(id): Path<String>,
    query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let uses = app.registry.uses(id_of(&id)?, flags(query)?.deleted)?;
    ok(&Value::Array(
        uses.into_iter().map(|(subject, version)| json!({ "subject": subject, "version": version })).collect(),
    ))
}

async fn subjects(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let flags = flags(query)?;
    let mut subjects = app.registry.subjects(flags.deleted);
    if let Some(prefix) = flags.subject_prefix.filter(|p| p != ":*:") {
        subjects.retain(|s| s.starts_with(&prefix));
    }
    ok(&json!(subjects))
}

async fn versions(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    Path(subject): Path<String>,
    query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    ok(&json!(app.registry.versions(&subject, flags(query)?.deleted)?))
}

async fn register(
    _: Allowed<1>,
    State(app): State<Arc<RegistryApp>>,
    Path(subject): Path<String>,
    Body(body): Body<SchemaBody>,
) -> Result<Response, Refusal> {
    let (schema, forced) = body.new_schema()?;
    let registry = Arc::clone(&app.registry);
    let id = blocking(move || registry.register(&subject, &schema, forced)).await?;
    ok(&json!({ "id": id }))
}

async fn version(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    Path((subject, which)): Path<(String, String)>,
    query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let found = app.registry.version(&subject, Which::parse(&which)?, flags(query)?.deleted)?;
    ok(&version_json(&found))
}

async fn raw_version(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    Path((subject, which)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    let found = app.registry.version(&subject, Which::parse(&which)?, false)?;
    Ok(answer(
        StatusCode::OK,
        &serde_json::from_str(&found.schema.schema).unwrap_or(Value::String(found.schema.schema)),
    ))
}

async fn referenced_by(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    Path((subject, which)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    ok(&json!(app.registry.referenced_by(&subject, Which::parse(&which)?)?))
}

async fn delete_version(
    _: Allowed<2>,
    State(app): State<Arc<RegistryApp>>,
    Path((subject, which)): Path<(String, String)>,
    query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let (which, permanent) = (Which::parse(&which)?, flags(query)?.permanent);
    let registry = Arc::clone(&app.registry);
    let version = blocking(move || registry.delete_version(&subject, which, permanent)).await?;
    app.forget_answers();
    ok(&json!(version))
}

async fn lookup(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    Path(subject): Path<String>,
    query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>,
    Body(body): Body<SchemaBody>,
) -> Result<Response, Refusal> {
    let deleted = flags(query)?.deleted;
    let (schema, _) = body.new_schema()?;
    let registry = Arc::clone(&app.registry);
    let found = blocking(move || registry.lookup(&subject, &schema, deleted)).await?;
    ok(&version_json(&found))
}

async fn delete_subject(
    _: Allowed<2>,
    State(app): State<Arc<RegistryApp>>,
    Path(subject): Path<String>,
    query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let permanent = flags(query)?.permanent;
    let registry = Arc::clone(&app.registry);
    let versions = blocking(move || registry.delete_subject(&subject, permanent)).await?;
    app.forget_answers();
    ok(&json!(versions))
}

async fn compatible(
    app: Arc<RegistryApp>,
    subject: String,
    which: Option<Which>,
    verbose: bool,
    body: SchemaBody,
) -> Result<Response, Refusal> {
    let (schema, _) = body.new_schema()?;
    let registry = Arc::clone(&app.registry);
    let problems = blocking(move || registry.check(&subject, which, &schema)).await?;
    let mut out = json!({ "is_compatible": problems.is_empty() });
    if verbose {
        out["messages"] = json!(problems);
    }
    ok(&out)
}

async fn compatible_with_version(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    Path((subject, which)): Path<(String, String)>,
    query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>,
    Body(body): Body<SchemaBody>,
) -> Result<Response, Refusal> {
    let which = Which::parse(&which)?;
    compatible(app, subject, Some(which), flags(query)?.verbose, body).await
}

async fn compatible_with_all(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    Path(subject): Path<String>,
    query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>,
    Body(body): Body<SchemaBody>,
) -> Result<Response, Refusal> {
    compatible(app, subject, None, flags(query)?.verbose, body).await
}

#[derive(Debug, Deserialize)]
struct LevelBody {
    compatibility: String,
}

#[derive(Debug, Deserialize)]
struct ModeBody {
    mode: String,
}

async fn get_level(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    subject: Option<Path<String>>,
    query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let level = app.registry.level(subject.as_deref().map(String::as_str), flags(query)?.default_to_global)?;
    ok(&json!({ "compatibilityLevel": level.name() }))
}

async fn set_level(
    _: Allowed<2>,
    State(app): State<Arc<RegistryApp>>,
    subject: Option<Path<String>>,
    Body(body): Body<LevelBody>,
) -> Result<Response, Refusal> {
    let level = Level::parse(&body.compatibility)?;
    let registry = Arc::clone(&app.registry);
    blocking(move || registry.set_level(subject.as_deref().map(String::as_str), Some(level))).await?;
    ok(&json!({ "compatibility": level.name() }))
}

async fn delete_level(
    _: Allowed<2>,
    State(app): State<Arc<RegistryApp>>,
    subject: Option<Path<String>>,
) -> Result<Response, Refusal> {
    let registry = Arc::clone(&app.registry);
    let before = blocking(move || registry.set_level(subject.as_deref().map(String::as_str), None)).await?;
    ok(&json!({ "compatibilityLevel": before.unwrap_or(Level::Backward).name() }))
}

async fn get_mode(
    _: Allowed<0>,
    State(app): State<Arc<RegistryApp>>,
    subject: Option<Path<String>>,
    query: Result<Query<Flags>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let mode = app.registry.mode(subject.as_deref().map(String::as_str), flags(query)?.default_to_global)?;
    ok(&json!({ "mode": mode.name() }))
}

async fn set_mode(
    _: Allowed<2>,
    State(app): State<Arc<RegistryApp>>,
    subject: Option<Path<String>>,
    Body(body): Body<ModeBody>,
) -> Result<Response, Refusal> {
    let mode = Mode::parse(&body.mode)?;
    let registry = Arc::clone(&app.registry);
    blocking(move || registry.set_mode(subject.as_deref().map(String::as_str), Some(mode))).await?;
    ok(&json!({ "mode": mode.name() }))
}

async fn delete_mode(
    _: Allowed<2>,
    State(app): State<Arc<RegistryApp>>,
    subject: Option<Path<String>>,
) -> Result<Response, Refusal> {
    let registry = Arc::clone(&app.registry);
    let before = blocking(move || registry.set_mode(subject.as_deref().map(String::as_str), None)).await?;
    ok(&json!({ "mode": before.unwrap_or(Mode::Readwrite).name() }))
}

/// Middleware: one counter of the registry's requests (per-route labels cost more than the
/// cached lookups they would measure).
async fn count(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    metrics::counter!("herald_schema_registry_requests_total").increment(1);
    next.run(request).await
}

fn router(app: Arc<RegistryApp>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/schemas/types", get(types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version).delete(delete_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(raw_version))
        .route("/subjects/{subject}/versions/{version}/referencedby", get(referenced_by))
        .route("/compatibility/subjects/{subject}/versions", post(compatible_with_all))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(compatible_with_version))
        .route("/config", get(get_level).put(set_level).delete(delete_level))
        .route("/config/{subject}", get(get_level).put(set_level).delete(delete_level))
        .route("/mode", get(get_mode).put(set_mode).delete(delete_mode))
        .route("/mode/{subject}", get(get_mode).put(set_mode).delete(delete_mode))
        .fallback(|| async { Refusal::new(StatusCode::NOT_FOUND, "HTTP 404 Not Found") })
        .method_not_allowed_fallback(|| async {
            Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "HTTP 405 Method Not Allowed")
        })
        .layer(axum::middleware::from_fn(count))
        .with_state(app)
}

/// The schema registry's HTTP listener.
#[derive(Debug)]
pub struct RunningRegistry(Listening);

impl RunningRegistry {
    /// Serves `registry` on `listen` with `config`'s tokens and body limit; refuses a
    /// non-loopback address without tokens unless `config.insecure`.
    pub async fn start(
        listen: SocketAddr,
        config: &GatewayConfig,
        registry: Arc<Registry>,
    ) -> Result<Self, GatewayError> {
        let (listener, addr) = Listening::bind(listen, config).await?;
        // Room for a schema at the registry's limit, JSON-escaped.
        let body_bytes_max = config.body_bytes_max.max(2 << 20);
        let app = Arc::new(RegistryApp {
            registry,
            tokens: config.tokens.clone(),
            body_bytes_max,
            by_id: Default::default(),
        });
        let serving = Listening::serve(listener, addr, router(app), watch::channel(false).0, "schema registry");
        tracing::info!(schema_registry = %addr, "herald schema registry ready");
        Ok(Self(serving))
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// Stops accepting and waits a little for requests in flight.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}
