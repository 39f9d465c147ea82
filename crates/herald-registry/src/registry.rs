//! [`Registry`]: the state behind a lock and its log (`<data dir>/@schemas`). Every write
//! decides on the state, appends its changes as one batch, waits for the fsync, and only
//! then applies them and answers: an acknowledged registration survives any crash, and a
//! registration that was not acknowledged either survives whole or not at all (a batch is
//! appended whole or truncated away at recovery). Opening replays the log.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use herald_broker::internals::{NewRecord, encode_batch, now_ms, replay};
use herald_log::{Log, LogConfig, LogError, Storage};

use crate::RegistryError;
use crate::model::{Candidate, Change, Level, Mode, State, Stored, Which};
use crate::schema::{self, Reference, SchemaType};

/// Directory of the registry's log inside the data directory (`@` is never in a topic
/// name).
pub const SCHEMAS_DIR: &str = "@schemas";

/// Limits, with defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Longest schema text accepted (default 1 MiB, Kafka's default record size).
    pub schema_bytes_max: usize,
    /// Most references one schema may have (default 100).
    pub references_max: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self { schema_bytes_max: 1 << 20, references_max: 100 }
    }
}

/// A schema as a request gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSchema {
    /// The text.
    pub schema: String,
    /// Its type.
    pub kind: SchemaType,
    /// What it refers to.
    pub references: Vec<Reference>,
}

/// A subject's version as answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The subject.
    pub subject: String,
    /// The version.
    pub version: i32,
    /// The schema's id.
    pub id: u32,
    /// The schema.
    pub schema: Stored,
}

/// The schema registry.
#[derive(Debug)]
pub struct Registry {
    log: Log,
    state: Mutex<State>,
    config: RegistryConfig,
}

impl Registry {
    /// Opens (or creates) the registry's log in `dir` and replays it.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        log_config: LogConfig,
        config: RegistryConfig,
    ) -> Result<Self, LogError> {
        let log_config = LogConfig { retention_ms: None, retention_bytes: None, ..log_config };
        let log = Log::open(storage, dir, log_config)?;
        let mut state = State::default();
        replay(&log, SCHEMAS_DIR, |offset, value| {
            match value.and_then(|v| serde_json::from_slice::<Change>(v).ok()) {
                Some(change) => state.apply(change),
                None => tracing::warn!(offset, "unreadable schema log record skipped"),
            }
        })?;
        Ok(Self { log, state: Mutex::new(state), config })
    }

    /// Opens (or creates) a registry under `data_dir` on the file system with default
    /// settings (tests, tools, benchmarks; `herald serve` passes the broker's storage and
    /// log settings to [`Registry::open`]).
    pub fn open_in(data_dir: &std::path::Path) -> Result<Self, LogError> {
        let storage: Arc<dyn Storage> = Arc::new(herald_log::FsStorage);
        Self::open(storage, data_dir.join(SCHEMAS_DIR), LogConfig::default(), RegistryConfig::default())
    }

    /// Closes the log cleanly.
    pub fn close(self) -> Result<(), LogError> {
        self.log.close()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        herald_log::sync::lock(&self.state)
    }

    /// Appends `changes` as one batch, waits until durable, then applies them.
    fn write(&self, state: &mut State, changes: Vec<Change>) -> Result<(), RegistryError> {
        if changes.is_empty() {
            return Ok(());
        }
        let store = |e: LogError| RegistryError::Store(e.to_string());
        let records: Vec<NewRecord> = changes
            .iter()
            .map(|c| NewRecord {
                value: Some(Bytes::from(serde_json::to_vec(c).unwrap_or_default())),
                ..NewRecord::default()
            })
            .collect();
        let now = now_ms();
        let mut batch = encode_batch(&records, now).map_err(RegistryError::Store)?;
        self.log.append_unsynced(&mut batch, now).map_err(store)?;
        self.log.sync().map_err(store)?;
        for change in changes {
            state.apply(change);
        }
        Ok(())
    }

    /// Checks a schema's size, parses it and resolves its references.
    fn candidate(&self, state: &State, new: &NewSchema) -> Result<Candidate, RegistryError> {
        if new.schema.len() > self.config.schema_bytes_max {
            let max = self.config.schema_bytes_max;
            return Err(RegistryError::InvalidSchema(format!(
                "{} bytes, more than the {max} allowed",
                new.schema.len()
            )));
        }
        if new.references.len() > self.config.references_max {
            return Err(RegistryError::InvalidSchema(format!("more than {} references", self.config.references_max)));
        }
        let texts = state.reference_texts(&new.references)?;
        let (parsed, canonical) = schema::parse(new.kind, &new.schema, &texts)?;
        Ok(Candidate { kind: new.kind, canonical, references: new.references.clone(), parsed })
    }

    /// Registers `new` under `subject`; returns its id. `forced` (id, version) only in
    /// IMPORT mode.
    pub fn register(&self, subject: &str, new: &NewSchema, forced: Option<(u32, i32)>) -> Result<u32, RegistryError> {
        check_subject(subject)?;
        let mut state = self.state();
        let candidate = self.candidate(&state, new)?;
        let (id, changes) = state.register(subject, &candidate, forced)?;
        self.write(&mut state, changes)?;
        Ok(id)
    }

    /// The version of `subject` holding `new`.
    pub fn lookup(&self, subject: &str, new: &NewSchema, deleted: bool) -> Result<Version, RegistryError> {
        let state = self.state();
        state.versions(subject, deleted)?;
        let candidate = self.candidate(&state, new)?;
        let (version, id) = state.lookup(subject, &candidate, deleted)?;
        Ok(Version { subject: subject.to_string(), version, id, schema: state.schemas[&id].clone() })
    }

    /// Subjects (with only soft-deleted versions too, if `deleted`).
    pub fn subjects(&self, deleted: bool) -> Vec<String> {
        self.state().subject_names(deleted)
    }

    /// A subject's versions.
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<i32>, RegistryError> {
        self.state().versions(subject, deleted)
    }

    /// One version.
    pub fn version(&self, subject: &str, which: Which, deleted: bool) -> Result<Version, RegistryError> {
        let state = self.state();
        let (version, id) = state.version(subject, which, deleted)?;
        Ok(Version { subject: subject.to_string(), version, id, schema: state.schemas[&id].clone() })
    }

    /// The schema with `id`.
    pub fn schema(&self, id: u32) -> Result<Stored, RegistryError> {
        self.state().schema(id).cloned()
    }

    /// The (subject, version)s of schema `id`.
    pub fn uses(&self, id: u32, deleted: bool) -> Result<Vec<(String, i32)>, RegistryError> {
        let state = self.state();
        state.schema(id)?;
        Ok(state.uses(id, deleted))
    }

    /// Ids of the schemas that refer to `subject`'s version `which`.
    pub fn referenced_by(&self, subject: &str, which: Which) -> Result<Vec<u32>, RegistryError> {
        let state = self.state();
        let (version, _) = state.version(subject, which, false)?;
        Ok(state.referrers(subject, version))
    }

    /// Why `new` may not follow `subject`'s version `which` (or, with `None`, the versions
    /// its level checks) — empty when it may.
    pub fn check(&self, subject: &str, which: Option<Which>, new: &NewSchema) -> Result<Vec<String>, RegistryError> {
        let state = self.state();
        let candidate = self.candidate(&state, new)?;
        match which {
            None => match state.versions(subject, false) {
                Ok(_) => state.problems(subject, &candidate),
                Err(_) => Ok(Vec::new()),
            },
            Some(which) => {
                let (_, id) = state.version(subject, which, false)?;
                Ok(state.level(Some(subject)).check(&candidate.parsed, &state.parsed(id)?))
            }
        }
    }

    /// Deletes a version; returns its number.
    pub fn delete_version(&self, subject: &str, which: Which, permanent: bool) -> Result<i32, RegistryError> {
        let mut state = self.state();
        let (version, changes) = state.delete_version(subject, which, permanent)?;
        self.write(&mut state, changes)?;
        Ok(version)
    }

    /// Deletes a subject; returns its versions.
    pub fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<i32>, RegistryError> {
        let mut state = self.state();
        let (versions, changes) = state.delete_subject(subject, permanent)?;
        self.write(&mut state, changes)?;
        Ok(versions)
    }

    /// The level of `subject` (its own; with `fallback`, the registry's when it has none),
    /// or the registry's.
    pub fn level(&self, subject: Option<&str>, fallback: bool) -> Result<Level, RegistryError> {
        let state = self.state();
        match subject {
            None => Ok(state.level(None)),
            Some(s) => match (state.own_level(s), fallback) {
                (Some(level), _) => Ok(level),
                (None, true) => Ok(state.level(None)),
                (None, false) => Err(RegistryError::SubjectLevelNotConfigured(s.to_string())),
            },
        }
    }

    /// Sets (or with `None` removes) a level; returns the one removed, when removing.
    pub fn set_level(&self, subject: Option<&str>, level: Option<Level>) -> Result<Option<Level>, RegistryError> {
        let mut state = self.state();
        let before = match subject {
            Some(s) => state.own_level(s),
            None => Some(state.level(None)),
        };
        if level.is_none() && before.is_none() {
            return Err(RegistryError::SubjectLevelNotConfigured(subject.unwrap_or_default().to_string()));
        }
        self.write(&mut state, vec![Change::Level { subject: subject.map(str::to_string), level }])?;
        Ok(before)
    }

    /// The mode of `subject` (its own; with `fallback`, the registry's), or the registry's.
    pub fn mode(&self, subject: Option<&str>, fallback: bool) -> Result<Mode, RegistryError> {
        let state = self.state();
        match subject {
            None => Ok(state.mode(None)),
            Some(s) => match (state.own_mode(s), fallback) {
                (Some(mode), _) => Ok(mode),
                (None, true) => Ok(state.mode(None)),
                (None, false) => Err(RegistryError::SubjectModeNotConfigured(s.to_string())),
            },
        }
    }

    /// Sets (or removes) a mode; returns the one set before.
    pub fn set_mode(&self, subject: Option<&str>, mode: Option<Mode>) -> Result<Option<Mode>, RegistryError> {
        let mut state = self.state();
        let before = match subject {
            Some(s) => state.own_mode(s),
            None => Some(state.mode(None)),
        };
        self.write(&mut state, vec![Change::Mode { subject: subject.map(str::to_string), mode }])?;
        Ok(before)
    }
}

/// Longest subject name accepted.
const SUBJECT_CHARS_MAX: usize = 1024;

fn check_subject(subject: &str) -> Result<(), RegistryError> {
    if subject.is_empty() || subject.len() > SUBJECT_CHARS_MAX || subject.chars().any(char::is_control) {
        return Err(RegistryError::InvalidSchema(format!(
            "invalid subject name (1 to {SUBJECT_CHARS_MAX} characters, no control characters)"
        )));
    }
    Ok(())
}
