//! The topic registry: which topics exist, their partition counts and config overrides,
//! durable in one file of the data directory.
//!
//! The file (`topics.meta`) is replaced atomically on every change: written to
//! `topics.meta.tmp`, fsynced, renamed over the old one, and the directory fsynced, so after
//! a crash it holds the old or the new registry, never a mix; a CRC-32C trailer rejects a
//! damaged file instead of guessing. The registry is the source of truth: partition
//! directories of topics it does not list are leftovers of an interrupted delete.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use herald_log::Storage;
use uuid::Uuid;

const FILE: &str = "topics.meta";
const TMP_FILE: &str = "topics.meta.tmp";
const HEADER: &str = "herald-topics v2";
/// The format before topics had ids: read, then rewritten as v2 with fresh ids.
const HEADER_V1: &str = "herald-topics v1";

/// Kafka's limit on topic name length.
pub(crate) const TOPIC_NAME_BYTES_MAX: usize = 249;

/// One topic's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// The topic's id: random at creation, so a topic deleted and created again under the
    /// same name has another (Kafka's topic ids; clients fetch by it from Fetch v13).
    pub id: Uuid,
    /// Number of partitions (0..partitions).
    pub partitions: u32,
    /// Topic-level config overrides (`retention.ms`, `segment.bytes`, ...).
    pub configs: BTreeMap<String, String>,
}

/// Why a registry operation failed; nothing changed when it did.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Kafka's rules: 1..=249 bytes of `[a-zA-Z0-9._-]`, not `.` or `..`.
    #[error("invalid topic name {0:?}: use 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-'")]
    InvalidName(String),
    /// The topic exists already.
    #[error("topic {0:?} already exists")]
    Exists(String),
    /// No such topic.
    #[error("unknown topic {0:?}")]
    Unknown(String),
    /// A partition count out of range, or one that would shrink the topic.
    #[error("invalid partition count {count} for topic {topic:?}: {reason}")]
    InvalidPartitions {
        /// The topic.
        topic: String,
        /// The count asked for.
        count: u32,
        /// Why not.
        reason: &'static str,
    },
    /// A config name or value that cannot be stored.
    #[error("invalid config {0:?}: names and values may not contain tabs, newlines or '='")]
    InvalidConfig(String),
    /// The registry file fails its checks.
    #[error("topic registry {path} is damaged: {detail}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Reading or writing the registry failed.
    #[error("{op} {path}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The registry, in memory and on disk.
#[derive(Debug)]
pub(crate) struct TopicRegistry {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    contents: Contents,
    partitions_max: u32,
}

/// Everything the file holds: topics and a few broker properties (cluster id, producer
/// id blocks) that must be durable with the same care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Contents {
    topics: BTreeMap<String, TopicMeta>,
    properties: BTreeMap<String, String>,
}

impl TopicRegistry {
    /// Loads the registry of `dir` (empty if there is none yet). `partitions_max` bounds
    /// every partition count.
    pub(crate) fn open(
        storage: Arc<dyn Storage>,
        dir: impl Into<PathBuf>,
        partitions_max: u32,
    ) -> Result<Self, TopicError> {
        let dir = dir.into();
        storage.create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let contents = read(&*storage, &dir)?;
        let mut registry = Self { storage, dir, contents, partitions_max };
        // A registry from before topic ids: each topic gets one now, kept from then on.
        if registry.contents.topics.values().any(|meta| meta.id.is_nil()) {
            registry.commit(|c| {
                for meta in c.topics.values_mut().filter(|meta| meta.id.is_nil()) {
                    meta.id = new_topic_id();
                }
            })?;
        }
        Ok(registry)
    }

    /// The name of the topic with `id`.
    pub(crate) fn name_of(&self, id: Uuid) -> Option<&str> {
        self.contents.topics.iter().find(|(_, meta)| meta.id == id).map(|(name, _)| name.as_str())
    }

    /// All topics, by name.
    pub(crate) fn topics(&self) -> &BTreeMap<String, TopicMeta> {
        &self.contents.topics
    }

    /// One topic.
    pub(crate) fn get(&self, name: &str) -> Option<&TopicMeta> {
        self.contents.topics.get(name)
    }

    /// A broker property (e.g. the cluster id).
    pub(crate) fn property(&self, key: &str) -> Option<&str> {
        self.contents.properties.get(key).map(String::as_str)
    }

    /// Sets a broker property durably. Keys and values may not contain tabs or newlines.
    pub(crate) fn set_property(&mut self, key: &str, value: &str) -> Result<(), TopicError> {
        if key.is_empty() || key.contains(['\t', '\n']) || value.contains(['\t', '\n']) {
            return Err(TopicError::InvalidConfig(key.to_string()));
        }
        self.commit(|c| {
            c.properties.insert(key.to_string(), value.to_string());
        })
    }

    /// Creates a topic with `id` (from [`new_topic_id`]).
    pub(crate) fn create(
        &mut self,
        name: &str,
        partitions: u32,
        configs: BTreeMap<String, String>,
        id: Uuid,
    ) -> Result<(), TopicError> {
        validate_name(name)?;
        if self.contents.topics.contains_key(name) {
            return Err(TopicError::Exists(name.to_string()));
        }
        self.check_partitions(name, partitions)?;
        validate_configs(&configs)?;
        self.commit(|c| {
            c.topics.insert(name.to_string(), TopicMeta { id, partitions, configs });
        })
    }

    /// Deletes a topic from the registry (its partition directories go afterwards).
    pub(crate) fn delete(&mut self, name: &str) -> Result<TopicMeta, TopicError> {
        let meta = self.contents.topics.get(name).cloned().ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        self.commit(|c| {
            c.topics.remove(name);
        })?;
        Ok(meta)
    }

    /// Raises a topic's partition count (Kafka never lowers it).
    pub(crate) fn set_partitions(&mut self, name: &str, count: u32) -> Result<(), TopicError> {
        let current = self.contents.topics.get(name).ok_or_else(|| TopicError::Unknown(name.to_string()))?.partitions;
        if count <= current {
            let reason = "partitions can only be added";
            return Err(TopicError::InvalidPartitions { topic: name.to_string(), count, reason });
        }
        self.check_partitions(name, count)?;
        self.commit(|c| c.topics.get_mut(name).expect("checked").partitions = count)
    }

    /// Replaces a topic's config overrides.
    pub(crate) fn set_configs(&mut self, name: &str, configs: BTreeMap<String, String>) -> Result<(), TopicError> {
        if !self.contents.topics.contains_key(name) {
            return Err(TopicError::Unknown(name.to_string()));
        }
        validate_configs(&configs)?;
        self.commit(|c| c.topics.get_mut(name).expect("checked").configs = configs)
    }

    fn check_partitions(&self, name: &str, count: u32) -> Result<(), TopicError> {
        if count == 0 || count > self.partitions_max {
            let reason = "must be between 1 and the broker's partition limit";
            return Err(TopicError::InvalidPartitions { topic: name.to_string(), count, reason });
        }
        Ok(())
    }

    /// Applies `change` to a copy, makes the copy durable, then adopts it.
    fn commit(&mut self, change: impl FnOnce(&mut Contents)) -> Result<(), TopicError> {
        let mut next = self.contents.clone();
        change(&mut next);
        write(&*self.storage, &self.dir, &next)?;
        self.contents = next;
        Ok(())
    }
}

/// A fresh topic id: random, never nil, and (as Kafka's) never one whose base64 form
/// starts with `-`, which command-line tools would read as a flag.
pub(crate) fn new_topic_id() -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if id.as_bytes()[0] >> 2 != 62 {
            return id;
        }
    }
}

/// Kafka's topic name rules.
pub(crate) fn validate_name(name: &str) -> Result<(), TopicError> {
    let legal = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    let ok = !name.is_empty()
        && name.len() <= TOPIC_NAME_BYTES_MAX
        && name != "."
        && name != ".."
        && name.bytes().all(legal);
    if ok { Ok(()) } else { Err(TopicError::InvalidName(name.to_string())) }
}

fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    let bad = |s: &str| s.is_empty() || s.contains(['\t', '\n', '=']);
    match configs.iter().find(|(k, v)| bad(k) || v.contains(['\t', '\n'])) {
        Some((k, _)) => Err(TopicError::InvalidConfig(k.clone())),
        None => Ok(()),
    }
}

fn io_err(op: &'static str, path: &Path) -> impl Fn(io::Error) -> TopicError {
    let path = path.to_path_buf();
    move |source| TopicError::Io { op, path: path.clone(), source }
}

/// `herald-topics v2`, then `@key\tvalue` per property and
/// `name\tpartitions\tid\tk=v\tk=v...` per topic (topic names never start with `@`; v1
/// had no id), then `crc <hex>` over everything before that line.
fn encode(contents: &Contents) -> Vec<u8> {
    let mut text = format!("{HEADER}\n");
    for (key, value) in &contents.properties {
        text.push_str(&format!("@{key}\t{value}\n"));
    }
    for (name, meta) in &contents.topics {
        text.push_str(&format!("{name}\t{}\t{}", meta.partitions, meta.id));
        for (k, v) in &meta.configs {
            text.push_str(&format!("\t{k}={v}"));
        }
        text.push('\n');
    }
    let crc = crc32c::crc32c(text.as_bytes());
    text.push_str(&format!("crc {crc:08x}\n"));
    text.into_bytes()
}

fn decode(bytes: &[u8], path: &Path) -> Result<Contents, TopicError> {
    let damaged = |detail: &str| TopicError::Damaged { path: path.to_path_buf(), detail: detail.to_string() };
    let text = std::str::from_utf8(bytes).map_err(|_| damaged("not UTF-8"))?;
    let body_end = text.trim_end_matches('\n').rfind('\n').ok_or_else(|| damaged("no checksum line"))? + 1;
    let (body, trailer) = text.split_at(body_end);
    let stored = trailer.trim_end().strip_prefix("crc ").and_then(|h| u32::from_str_radix(h, 16).ok());
    if stored != Some(crc32c::crc32c(body.as_bytes())) {
        return Err(damaged("checksum mismatch"));
    }
    let mut lines = body.lines();
    let with_ids = match lines.next() {
        Some(HEADER) => true,
        Some(HEADER_V1) => false,
        _ => return Err(damaged("unknown format")),
    };
    let mut contents = Contents::default();
    for line in lines {
        if let Some(property) = line.strip_prefix('@') {
            let (key, value) = property.split_once('\t').ok_or_else(|| damaged("bad property"))?;
            contents.properties.insert(key.to_string(), value.to_string());
            continue;
        }
        let mut fields = line.split('\t');
        let name = fields.next().ok_or_else(|| damaged("empty line"))?;
        let partitions = fields.next().and_then(|p| p.parse().ok()).ok_or_else(|| damaged("bad partition count"))?;
        let id = match with_ids {
            true => fields.next().and_then(|id| Uuid::parse_str(id).ok()).ok_or_else(|| damaged("bad topic id"))?,
            false => Uuid::nil(),
        };
        let mut configs = BTreeMap::new();
        for field in fields {
            let (k, v) = field.split_once('=').ok_or_else(|| damaged("bad config"))?;
            configs.insert(k.to_string(), v.to_string());
        }
        contents.topics.insert(name.to_string(), TopicMeta { id, partitions, configs });
    }
    Ok(contents)
}

fn read(storage: &dyn Storage, dir: &Path) -> Result<Contents, TopicError> {
    let path = dir.join(FILE);
    let file = match storage.open(&path, false) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::default()),
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let len = file.len().map_err(io_err("stat", &path))?;
    if len > 64 << 20 {
        return Err(TopicError::Damaged { path, detail: format!("{len} bytes is too large for a registry") });
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(0, &mut bytes).map_err(io_err("read", &path))?;
    decode(&bytes, &path)
}

fn write(storage: &dyn Storage, dir: &Path, contents: &Contents) -> Result<(), TopicError> {
    let tmp = dir.join(TMP_FILE);
    let path = dir.join(FILE);
    let file = storage.open(&tmp, true).map_err(io_err("create", &tmp))?;
    file.set_len(0).map_err(io_err("truncate", &tmp))?;
    file.write_all_at(0, &encode(contents)).map_err(io_err("write", &tmp))?;
    file.sync_data().map_err(io_err("fsync", &tmp))?;
    storage.rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    storage.sync_dir(dir).map_err(io_err("fsync directory", dir))
}

#[cfg(test)]
mod tests;
