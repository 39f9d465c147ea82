//! [`State`]: what the registry holds (schemas by id, each subject's versions, the
//! compatibility levels and modes), the [`Change`]s that move it — the records of its
//! log — and the decisions, as plain code: each operation reads the state and returns
//! the changes to write, or Confluent's refusal.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::RegistryError;
use crate::schema::{self, Parsed, Reference, SchemaType};

/// A compatibility level: which earlier versions a new one is checked against, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    /// No checks.
    None,
    /// The new schema reads data written with the latest one (the default).
    Backward,
    /// ... with every earlier one.
    BackwardTransitive,
    /// The latest schema reads data written with the new one.
    Forward,
    /// ... every earlier one does.
    ForwardTransitive,
    /// Both ways with the latest.
    Full,
    /// Both ways with every earlier one.
    FullTransitive,
}

impl Level {
    /// From a request (`backward`, `FULL_TRANSITIVE`, ...).
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        serde_json::from_value(serde_json::Value::String(text.to_ascii_uppercase()))
            .map_err(|_| RegistryError::InvalidLevel)
    }

    /// Its name as Confluent writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(self, Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive)
    }

    /// Why `new` may not follow `old` at this level (empty: it may).
    pub(crate) fn check(self, new: &Parsed, old: &Parsed) -> Vec<String> {
        let backward = || schema::can_read(new, old);
        let forward = || schema::can_read(old, new);
        match self {
            Self::None => Vec::new(),
            Self::Backward | Self::BackwardTransitive => backward(),
            Self::Forward | Self::ForwardTransitive => forward(),
            Self::Full | Self::FullTransitive => {
                let mut problems = backward();
                problems.extend(forward());
                problems
            }
        }
    }
}

/// Whether a subject (or the registry) takes writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// Registrations and deletes (the default).
    Readwrite,
    /// Reads only.
    Readonly,
    /// Reads only (kept for Confluent clients that set it).
    ReadonlyOverride,
    /// Registrations with given ids and versions, without compatibility checks.
    Import,
}

impl Mode {
    /// From a request.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        serde_json::from_value(serde_json::Value::String(text.to_ascii_uppercase()))
            .map_err(|_| RegistryError::InvalidMode)
    }

    /// Its name as Confluent writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Readwrite => "READWRITE",
            Self::Readonly => "READONLY",
            Self::ReadonlyOverride => "READONLY_OVERRIDE",
            Self::Import => "IMPORT",
        }
    }
}

/// One record of the registry's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Change {
    /// A schema got an id.
    Schema { id: u32, kind: SchemaType, schema: String, references: Vec<Reference> },
    /// A subject got a version.
    Version { subject: String, version: i32, id: u32 },
    /// A version was soft-deleted.
    SoftDelete { subject: String, version: i32 },
    /// A soft-deleted version was removed.
    HardDelete { subject: String, version: i32 },
    /// A compatibility level set (`None`: removed); the registry's when no subject.
    Level { subject: Option<String>, level: Option<Level> },
    /// A mode set (`None`: removed).
    Mode { subject: Option<String>, mode: Option<Mode> },
}

/// A schema under its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its type.
    pub kind: SchemaType,
    /// Its canonical text.
    pub schema: String,
    /// What it refers to.
    pub references: Vec<Reference>,
}

/// One version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) version: i32,
    pub(crate) id: u32,
    pub(crate) deleted: bool,
}

/// Which version a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The newest one not deleted (`latest` or `-1`).
    Latest,
    /// A number.
    Number(i32),
}

impl Which {
    /// `latest`, `-1` or 1 to 2^31-1.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        match text {
            "latest" | "-1" => Ok(Self::Latest),
            n => match n.parse::<i32>() {
                Ok(v) if v >= 1 => Ok(Self::Number(v)),
                _ => Err(RegistryError::InvalidVersion(text.to_string())),
            },
        }
    }
}

/// A schema to register, parsed.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub(crate) kind: SchemaType,
    pub(crate) canonical: String,
    pub(crate) references: Vec<Reference>,
    pub(crate) parsed: Parsed,
}

/// Everything the registry holds.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) schemas: BTreeMap<u32, Stored>,
    ids: HashMap<(SchemaType, String, Vec<Reference>), u32>,
    pub(crate) subjects: BTreeMap<String, Vec<Entry>>,
    level: Level,
    levels: BTreeMap<String, Level>,
    mode: Mode,
    modes: BTreeMap<String, Mode>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            schemas: BTreeMap::new(),
            ids: HashMap::new(),
            subjects: BTreeMap::new(),
            level: Level::Backward,
            levels: BTreeMap::new(),
            mode: Mode::Readwrite,
            modes: BTreeMap::new(),
        }
    }
}

impl State {
    /// Applies one change (replay and writes alike).
    pub(crate) fn apply(&mut self, change: Change) {
        match change {
            Change::Schema { id, kind, schema, references } => {
                self.ids.insert((kind, schema.clone(), references.clone()), id);
                self.schemas.insert(id, Stored { kind, schema, references });
            }
            Change::Version { subject, version, id } => {
                let entries = self.subjects.entry(subject).or_default();
                entries.retain(|e| e.version != version);
                entries.push(Entry { version, id, deleted: false });
                entries.sort_by_key(|e| e.version);
            }
            Change::SoftDelete { subject, version } => {
                if let Some(entry) =
                    self.subjects.get_mut(&subject).and_then(|es| es.iter_mut().find(|e| e.version == version))
                {
                    entry.deleted = true;
                }
            }
            Change::HardDelete { subject, version } => {
                if let Some(entries) = self.subjects.get_mut(&subject) {
                    entries.retain(|e| e.version != version);
                    if entries.is_empty() {
                        self.subjects.remove(&subject);
                    }
                }
            }
            Change::Level { subject: None, level } => self.level = level.unwrap_or(Level::Backward),
            Change::Level { subject: Some(s), level: Some(level) } => {
                self.levels.insert(s, level);
            }
            Change::Level { subject: Some(s), level: None } => {
                self.levels.remove(&s);
            }
            Change::Mode { subject: None, mode } => self.mode = mode.unwrap_or(Mode::Readwrite),
            Change::Mode { subject: Some(s), mode: Some(mode) } => {
                self.modes.insert(s, mode);
            }
            Change::Mode { subject: Some(s), mode: None } => {
                self.modes.remove(&s);
            }
        }
    }

    // ----- reads -----

    /// Subjects with a version not deleted (or any version, with `deleted`).
    pub(crate) fn subject_names(&self, deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, es)| es.iter().any(|e| deleted || !e.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    fn entries(&self, subject: &str, deleted: bool) -> Result<Vec<Entry>, RegistryError> {
        let entries: Vec<Entry> = self
            .subjects
            .get(subject)
            .map(|es| es.iter().filter(|e| deleted || !e.deleted).copied().collect())
            .unwrap_or_default();
        if entries.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(entries)
    }

    /// A subject's version numbers.
    pub(crate) fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<i32>, RegistryError> {
        Ok(self.entries(subject, deleted)?.iter().map(|e| e.version).collect())
    }

    /// One version of a subject: (version, id).
    pub(crate) fn version(&self, subject: &str, which: Which, deleted: bool) -> Result<(i32, u32), RegistryError> {
        let entries = self.entries(subject, deleted || matches!(which, Which::Number(_)))?;
        let entry = match which {
            Which::Latest => entries.iter().rev().find(|e| !e.deleted || deleted),
            Which::Number(v) => entries.iter().find(|e| e.version == v && (deleted || !e.deleted)),
        };
        let not_found = || {
            RegistryError::VersionNotFound(match which {
                Which::Latest => "latest".into(),
                Which::Number(v) => v.to_string(),
            })
        };
        match entry {
            Some(e) => Ok((e.version, e.id)),
            None if !deleted && self.entries(subject, false).is_err() => {
                Err(RegistryError::SubjectNotFound(subject.to_string()))
            }
            None => Err(not_found()),
        }
    }

    /// The schema with `id`, if a version (even soft-deleted) still names it.
    pub(crate) fn schema(&self, id: u32) -> Result<&Stored, RegistryError> {
        let named = self.subjects.values().flatten().any(|e| e.id == id);
        self.schemas.get(&id).filter(|_| named).ok_or_else(|| RegistryError::SchemaNotFound(id.to_string()))
    }

    /// Every (subject, version) naming `id`.
    pub(crate) fn uses(&self, id: u32, deleted: bool) -> Vec<(String, i32)> {
        let mut uses = Vec::new();
        for (subject, entries) in &self.subjects {
            uses.extend(
                entries.iter().filter(|e| e.id == id && (deleted || !e.deleted)).map(|e| (subject.clone(), e.version)),
            );
        }
        uses
    }

    /// The version of `subject` whose schema is `candidate`.
    pub(crate) fn lookup(
        &self,
        subject: &str,
        candidate: &Candidate,
        deleted: bool,
    ) -> Result<(i32, u32), RegistryError> {
        let entries = self.entries(subject, deleted)?;
        let id = self.id_of(candidate).ok_or_else(|| RegistryError::SchemaNotFound(String::new()))?;
        let entry =
            entries.iter().rev().find(|e| e.id == id).ok_or_else(|| RegistryError::SchemaNotFound(String::new()))?;
        Ok((entry.version, entry.id))
    }

    fn id_of(&self, candidate: &Candidate) -> Option<u32> {
        self.ids.get(&(candidate.kind, candidate.canonical.clone(), candidate.references.clone())).copied()
    }

    /// The level that applies to `subject` (its own, else the registry's).
    pub(crate) fn level(&self, subject: Option<&str>) -> Level {
        subject.and_then(|s| self.levels.get(s)).copied().unwrap_or(self.level)
    }

    /// `subject`'s own level.
    pub(crate) fn own_level(&self, subject: &str) -> Option<Level> {
        self.levels.get(subject).copied()
    }

    /// The mode that applies to `subject`.
    pub(crate) fn mode(&self, subject: Option<&str>) -> Mode {
        subject.and_then(|s| self.modes.get(s)).copied().unwrap_or(self.mode)
    }

    /// `subject`'s own mode.
    pub(crate) fn own_mode(&self, subject: &str) -> Option<Mode> {
        self.modes.get(subject).copied()
    }

    /// A stored schema's references' texts, in order (for parsing it).
    pub(crate) fn reference_texts(&self, references: &[Reference]) -> Result<Vec<String>, RegistryError> {
        references
            .iter()
            .map(|r| {
                let (_, id) = self.version(&r.subject, Which::Number(r.version), true).map_err(|_| {
                    RegistryError::InvalidSchema(format!(
                        "reference {} (subject {} version {}) not found",
                        r.name, r.subject, r.version
                    ))
                })?;
                Ok(self.schemas[&id].schema.clone())
            })
            .collect()
    }

    /// Parses a stored schema.
    pub(crate) fn parsed(&self, id: u32) -> Result<Parsed, RegistryError> {
        let stored = self.schemas.get(&id).ok_or_else(|| RegistryError::SchemaNotFound(id.to_string()))?;
        let references = self.reference_texts(&stored.references)?;
        Ok(schema::parse(stored.kind, &stored.schema, &references)?.0)
    }

    // ----- decisions -----

    /// Why `candidate` may not be the next version of `subject` at its level (against
    /// the latest version, or every one when transitive; deleted versions never count).
    pub(crate) fn problems(&self, subject: &str, candidate: &Candidate) -> Result<Vec<String>, RegistryError> {
        let level = self.level(Some(subject));
        let Ok(entries) = self.entries(subject, false) else { return Ok(Vec::new()) };
        let against: Vec<&Entry> =
            if level.transitive() { entries.iter().collect() } else { entries.last().into_iter().collect() };
        let mut problems = Vec::new();
        for entry in against {
            let old = self.parsed(entry.id)?;
            let found = level.check(&candidate.parsed, &old);
            problems.extend(found.into_iter().map(|p| format!("version {}: {p}", entry.version)));
        }
        Ok(problems)
    }

    /// Registers `candidate` under `subject`: its id (an existing version's when the
    /// schema is there already) and the changes to write. `forced` (id, version) is an
    /// IMPORT-mode registration.
    pub(crate) fn register(
        &self,
        subject: &str,
        candidate: &Candidate,
        forced: Option<(u32, i32)>,
    ) -> Result<(u32, Vec<Change>), RegistryError> {
        let mode = self.mode(Some(subject));
        if matches!(mode, Mode::Readonly | Mode::ReadonlyOverride) {
            return Err(RegistryError::NotPermitted(format!("Subject {subject} is in read-only mode")));
        }
        if forced.is_some() && mode != Mode::Import {
            return Err(RegistryError::NotPermitted(format!("Subject {subject} is not in import mode")));
        }
        let known = self.id_of(candidate);
        if let (Some(id), None) = (known, forced) {
            let live = self.subjects.get(subject).into_iter().flatten().find(|e| e.id == id && !e.deleted);
            if live.is_some() {
                return Ok((id, Vec::new()));
            }
        }
        if mode != Mode::Import {
            let problems = self.problems(subject, candidate)?;
            if !problems.is_empty() {
                return Err(RegistryError::Incompatible { subject: subject.to_string(), details: problems });
            }
        }
        let next_version = self.subjects.get(subject).and_then(|es| es.last()).map_or(1, |e| e.version + 1);
        let (id, version) = match forced {
            Some((id, version)) => {
                if self.schemas.get(&id).is_some_and(|s| {
                    (s.kind, &s.schema, &s.references) != (candidate.kind, &candidate.canonical, &candidate.references)
                }) {
                    return Err(RegistryError::NotPermitted(format!(
                        "Overwrite new schema with id {id} is not permitted."
                    )));
                }
                (id, version)
            }
            None => (known.unwrap_or_else(|| self.schemas.keys().next_back().map_or(1, |id| id + 1)), next_version),
        };
        let mut changes = Vec::new();
        if !self.schemas.contains_key(&id) {
            changes.push(Change::Schema {
                id,
                kind: candidate.kind,
                schema: candidate.canonical.clone(),
                references: candidate.references.clone(),
            });
        }
        changes.push(Change::Version { subject: subject.to_string(), version, id });
        Ok((id, changes))
    }

    fn writable(&self, subject: &str) -> Result<(), RegistryError> {
        match self.mode(Some(subject)) {
            Mode::Readonly | Mode::ReadonlyOverride => {
                Err(RegistryError::NotPermitted(format!("Subject {subject} is in read-only mode")))
            }
            _ => Ok(()),
        }
    }

    /// Ids of live schemas that refer to `subject`'s `version`.
    pub(crate) fn referrers(&self, subject: &str, version: i32) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .subjects
            .values()
            .flatten()
            .filter(|e| !e.deleted)
            .map(|e| e.id)
            .filter(|id| self.schemas[id].references.iter().any(|r| r.subject == subject && r.version == version))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn referenced(&self, subject: &str, version: i32) -> bool {
        self.subjects
            .values()
            .flatten()
            .filter(|e| !e.deleted)
            .any(|e| self.schemas[&e.id].references.iter().any(|r| r.subject == subject && r.version == version))
    }

    /// Deletes one version: soft first, then `permanent`ly. Returns the version.
    pub(crate) fn delete_version(
        &self,
        subject: &str,
        which: Which,
        permanent: bool,
    ) -> Result<(i32, Vec<Change>), RegistryError> {
        self.writable(subject)?;
        // A number names a version even when soft-deleted (so the answer can say so);
        // `latest` of a soft delete is the newest live one.
        let include_deleted = permanent || matches!(which, Which::Number(_));
        let (version, _) = self.version(subject, which, include_deleted)?;
        let deleted = self.subjects[subject].iter().any(|e| e.version == version && e.deleted);
        if self.referenced(subject, version) {
            return Err(RegistryError::Referenced { subject: subject.to_string(), version });
        }
        let subject_owned = subject.to_string();
        match (permanent, deleted) {
            (false, true) => Err(RegistryError::VersionSoftDeleted { subject: subject_owned, version }),
            (false, false) => Ok((version, vec![Change::SoftDelete { subject: subject_owned, version }])),
            (true, false) => Err(RegistryError::VersionNotSoftDeleted { subject: subject_owned, version }),
            (true, true) => Ok((version, vec![Change::HardDelete { subject: subject_owned, version }])),
        }
    }

    /// Deletes a subject: soft first, then `permanent`ly. Returns its versions.
    pub(crate) fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<(Vec<i32>, Vec<Change>), RegistryError> {
        self.writable(subject)?;
        let all = self.entries(subject, true)?;
        let live: Vec<&Entry> = all.iter().filter(|e| !e.deleted).collect();
        if let Some(e) = all.iter().find(|e| self.referenced(subject, e.version)) {
            return Err(RegistryError::Referenced { subject: subject.to_string(), version: e.version });
        }
        let s = || subject.to_string();
        if permanent {
            if !live.is_empty() {
                return Err(RegistryError::SubjectNotSoftDeleted(s()));
            }
            let changes = all.iter().map(|e| Change::HardDelete { subject: s(), version: e.version }).collect();
            return Ok((all.iter().map(|e| e.version).collect(), changes));
        }
        if live.is_empty() {
            return Err(RegistryError::SubjectSoftDeleted(s()));
        }
        let changes = live.iter().map(|e| Change::SoftDelete { subject: s(), version: e.version }).collect();
        Ok((live.iter().map(|e| e.version).collect(), changes))
    }
}
