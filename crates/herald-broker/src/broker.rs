//! [`Broker`]: the topics, their partitions and broker-wide state, shared by all
//! connections. Every method is blocking (it may fsync); the server calls them off the
//! async threads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use herald_log::{LogConfig, LogError, Storage};
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::error::ApiError;
use crate::group::GroupManager;
use crate::partition::Partition;
use crate::topic_config;
use crate::topics::{TopicError, TopicMeta, TopicRegistry};

/// Producer ids are reserved durably in blocks of this many, so a restart never hands
/// out an id twice.
const PRODUCER_ID_BLOCK: i64 = 1000;
const PRODUCER_ID_PROPERTY: &str = "producer_id_block_end";
const CLUSTER_ID_PROPERTY: &str = "cluster_id";

/// Why the broker could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The topic registry could not be read or written.
    #[error(transparent)]
    Topics(#[from] TopicError),
    /// A partition log could not be opened or closed.
    #[error("partition {topic}-{partition}: {source}")]
    Partition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// What the log said.
        #[source]
        source: LogError,
    },
    /// A topic's stored configs are no longer valid.
    #[error("topic {topic:?} has an invalid config: {detail}")]
    TopicConfig {
        /// The topic.
        topic: String,
        /// What is wrong.
        detail: String,
    },
    /// Listing or removing partition directories failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The milliseconds since the Unix epoch: the one clock read of the broker, at its edge.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug)]
struct Topics {
    registry: TopicRegistry,
    /// Open partitions, by topic, indexed by partition number.
    partitions: HashMap<String, Vec<Arc<Partition>>>,
    /// Each topic's effective log settings (broker defaults plus its overrides).
    log_configs: HashMap<String, LogConfig>,
}

#[derive(Debug)]
struct ProducerIds {
    next: i64,
    block_end: i64,
}

/// How far a group is behind on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The committed offset (the next one to consume), if any.
    pub committed: Option<i64>,
    /// The partition's high watermark.
    pub log_end: i64,
    /// `log_end - committed`, or everything from the log start when nothing is committed.
    pub lag: i64,
}

/// A single-node Kafka broker's state.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    storage: Arc<dyn Storage>,
    cluster_id: String,
    topics: RwLock<Topics>,
    producer_ids: Mutex<ProducerIds>,
    /// Bumped whenever readers may see new records, to wake long-polling fetches.
    data_changed: watch::Sender<u64>,
    groups: GroupManager,
    /// Set by [`Broker::begin_shutdown`]: waits end at once instead of at their deadline.
    stopping: AtomicBool,
}

impl Broker {
    /// Opens the data directory: the topic registry, then every partition log (running
    /// crash recovery where a log was not closed cleanly). Partition directories the
    /// registry does not list (an interrupted delete) are removed.
    pub fn open(config: BrokerConfig, storage: Arc<dyn Storage>) -> Result<Self, BrokerError> {
        let mut registry = TopicRegistry::open(Arc::clone(&storage), &config.data_dir, config.partitions_max)?;
        let cluster_id = match registry.property(CLUSTER_ID_PROPERTY) {
            Some(id) => id.to_string(),
            None => {
                let id = new_cluster_id(&config.data_dir);
                registry.set_property(CLUSTER_ID_PROPERTY, &id)?;
                id
            }
        };
        let block_end = registry.property(PRODUCER_ID_PROPERTY).and_then(|v| v.parse().ok()).unwrap_or(0);
        remove_leftover_partitions(&*storage, &config.data_dir, registry.topics())?;
        let now = now_ms();
        let mut partitions = HashMap::new();
        let mut log_configs = HashMap::new();
        for (name, meta) in registry.topics() {
            let log_config = effective_log_config(&config, name, meta)?;
            let open = (0..meta.partitions)
                .map(|p| open_partition(&config, &storage, name, p, log_config, now))
                .collect::<Result<Vec<_>, _>>()?;
            partitions.insert(name.clone(), open);
            log_configs.insert(name.clone(), log_config);
        }
        let topics = RwLock::new(Topics { registry, partitions, log_configs });
        let groups = GroupManager::open(
            Arc::clone(&storage),
            &config.data_dir,
            config.log_defaults(),
            config.groups,
            config.offsets_compact_bytes,
        )
        .map_err(|source| BrokerError::Partition { topic: "@group-offsets".into(), partition: 0, source })?;
        Ok(Self {
            groups,
            config,
            storage,
            cluster_id,
            topics,
            producer_ids: Mutex::new(ProducerIds { next: block_end, block_end }),
            data_changed: watch::channel(0).0,
            stopping: AtomicBool::new(false),
        })
    }

    /// The settings.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The storage the data directory lives on (for other internal logs in it, such as
    /// the schema registry's).
    pub fn storage(&self) -> Arc<dyn Storage> {
        Arc::clone(&self.storage)
    }

    /// The cluster id, made once per data directory.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The consumer groups and their committed offsets.
    pub fn groups(&self) -> &GroupManager {
        &self.groups
    }

    /// Lag of `group` on every partition it has committed offsets for (what the CLI and
    /// the gateway show).
    pub fn group_lag(&self, group: &str) -> Vec<PartitionLag> {
        self.groups
            .offsets()
            .group(group)
            .into_iter()
            .filter_map(|((topic, partition), committed)| {
                let log = self.partition(&topic, partition)?;
                let log_end = log.log().high_watermark() as i64;
                let start = log.log().log_start_offset() as i64;
                let from = committed.offset.max(start);
                Some(PartitionLag {
                    topic,
                    partition,
                    committed: Some(committed.offset),
                    log_end,
                    lag: (log_end - from).max(0),
                })
            })
            .collect()
    }

    /// Every topic and its metadata.
    pub fn topics(&self) -> BTreeMap<String, TopicMeta> {
        self.read_topics().registry.topics().clone()
    }

    /// One topic's metadata.
    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.read_topics().registry.get(name).cloned()
    }

    /// The name of the topic with `id`.
    pub fn topic_name(&self, id: uuid::Uuid) -> Option<String> {
        self.read_topics().registry.name_of(id).map(str::to_string)
    }

    /// A partition of the topic with `id` (UNKNOWN_TOPIC_ID, or UNKNOWN_TOPIC_OR_PARTITION
    /// for a partition it lacks): found under one lock with the id, so a topic deleted and
    /// created again under the same name is never served for the old id.
    pub fn partition_by_id(&self, id: uuid::Uuid, partition: i32) -> Result<Arc<Partition>, ApiError> {
        let topics = self.read_topics();
        let name = topics
            .registry
            .name_of(id)
            .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicId, format!("no topic with id {id}")))?;
        let index = usize::try_from(partition).ok();
        let found = index.and_then(|i| topics.partitions.get(name)?.get(i).cloned());
        found.ok_or_else(|| ApiError::unknown_partition(name, partition))
    }

    /// One topic's effective log settings.
    pub fn topic_log_config(&self, name: &str) -> Option<LogConfig> {
        self.read_topics().log_configs.get(name).copied()
    }

    /// A partition, if the topic and partition exist.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let index = usize::try_from(partition).ok()?;
        self.read_topics().partitions.get(topic)?.get(index).cloned()
    }

    /// A partition with the topic's `max.message.bytes`, or UNKNOWN_TOPIC_OR_PARTITION.
    pub fn partition_for_produce(&self, topic: &str, partition: i32) -> Result<(Arc<Partition>, u32), ApiError> {
        let topics = self.read_topics();
        let found = usize::try_from(partition).ok().and_then(|i| topics.partitions.get(topic)?.get(i).cloned());
        let max = topics.log_configs.get(topic).map(|c| c.batch_bytes_max);
        match (found, max) {
            (Some(p), Some(max)) => Ok((p, max)),
            _ => Err(ApiError::unknown_partition(topic, partition)),
        }
    }

    /// [`partition_for_produce`](Self::partition_for_produce) for the topic with `id`
    /// (UNKNOWN_TOPIC_ID when none has it), looked up under one lock.
    pub fn partition_for_produce_by_id(
        &self,
        id: uuid::Uuid,
        partition: i32,
    ) -> Result<(Arc<Partition>, u32), ApiError> {
        let topics = self.read_topics();
        let name = topics
            .registry
            .name_of(id)
            .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicId, format!("no topic with id {id}")))?;
        let found = usize::try_from(partition).ok().and_then(|i| topics.partitions.get(name)?.get(i).cloned());
        match (found, topics.log_configs.get(name)) {
            (Some(p), Some(config)) => Ok((p, config.batch_bytes_max)),
            _ => Err(ApiError::unknown_partition(name, partition)),
        }
    }

    /// Creates a topic (or, with `validate_only`, checks that it could be created).
    /// `partitions` of `None` takes the broker default.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: Option<u32>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMeta, ApiError> {
        let partitions = partitions.unwrap_or(self.config.default_partitions);
        let id = if validate_only { uuid::Uuid::nil() } else { crate::topics::new_topic_id() };
        let meta = TopicMeta { id, partitions, configs };
        let log_config = topic_config::log_config(&self.config.log_defaults(), &meta.configs)
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        let mut topics = self.write_topics();
        crate::topics::validate_name(name)?;
        if topics.registry.get(name).is_some() {
            return Err(TopicError::Exists(name.to_string()).into());
        }
        if partitions == 0 || partitions > self.config.partitions_max {
            let message = format!("{partitions} partitions: must be between 1 and {}", self.config.partitions_max);
            return Err(ApiError::new(ResponseError::InvalidPartitions, message));
        }
        if validate_only {
            return Ok(meta);
        }
        // Partition directories exist before the registry names the topic, so a crash in
        // between leaves only leftovers that the next start removes.
        let now = now_ms();
        let opened = (0..partitions)
            .map(|p| open_partition(&self.config, &self.storage, name, p, log_config, now))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        topics.registry.create(name, partitions, meta.configs.clone(), id)?;
        topics.partitions.insert(name.to_string(), opened);
        topics.log_configs.insert(name.to_string(), log_config);
        drop(topics);
        tracing::info!(topic = name, partitions, "created topic");
        Ok(meta)
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<(), ApiError> {
        self.delete(name, None)
    }

    /// Deletes the topic with `id` and its data; returns its name.
    pub fn delete_topic_by_id(&self, id: uuid::Uuid) -> Result<String, ApiError> {
        let unknown = || ApiError::new(ResponseError::UnknownTopicId, format!("no topic with id {id}"));
        let name = self.topic_name(id).ok_or_else(unknown)?;
        self.delete(&name, Some(id)).map(|()| name)
    }

    /// Deletes topic `name`, if it still has `id` when one is given (checked under the
    /// same lock as the delete).
    fn delete(&self, name: &str, id: Option<uuid::Uuid>) -> Result<(), ApiError> {
        let mut topics = self.write_topics();
        if let Some(id) = id
            && topics.registry.get(name).map(|meta| meta.id) != Some(id)
        {
            return Err(ApiError::new(ResponseError::UnknownTopicId, format!("no topic with id {id}")));
        }
        topics.registry.delete(name)?;
        let partitions = topics.partitions.remove(name).unwrap_or_default();
        topics.log_configs.remove(name);
        // Still under the lock: a topic created again under this name must not open the
        // old directories before they are gone.
        for (index, partition) in partitions.iter().enumerate() {
            // A cleaner pass still holding the partition must not swap files into a
            // directory that a topic created again under this name will own.
            partition.log().retire("its topic was deleted");
            let dir = partition_dir(&self.config.data_dir, name, index as u32);
            if let Err(error) = self.storage.remove_dir_all(&dir) {
                tracing::warn!(path = %dir.display(), %error, "could not remove a deleted topic's partition; the next start retries");
            }
        }
        drop(topics);
        if let Err(error) = self.storage.sync_dir(&self.config.data_dir) {
            tracing::warn!(%error, "fsync of the data directory failed after a topic delete");
        }
        tracing::info!(topic = name, "deleted topic");
        self.notify_data();
        Ok(())
    }

    /// Raises a topic's partition count.
    pub fn create_partitions(&self, name: &str, count: u32, validate_only: bool) -> Result<(), ApiError> {
        let mut topics = self.write_topics();
        let current = topics.registry.get(name).ok_or_else(|| TopicError::Unknown(name.to_string()))?.partitions;
        if count <= current || count > self.config.partitions_max {
            let message = format!(
                "topic {name:?} has {current} partitions; the new count must be larger and at most {}",
                self.config.partitions_max
            );
            return Err(ApiError::new(ResponseError::InvalidPartitions, message));
        }
        if validate_only {
            return Ok(());
        }
        let log_config = topics.log_configs.get(name).copied().unwrap_or_else(|| self.config.log_defaults());
        let now = now_ms();
        let added = (current..count)
            .map(|p| open_partition(&self.config, &self.storage, name, p, log_config, now))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        topics.registry.set_partitions(name, count)?;
        topics.partitions.entry(name.to_string()).or_default().extend(added);
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides and applies them to its live partitions.
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let log_config = topic_config::log_config(&self.config.log_defaults(), &configs)
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        let mut topics = self.write_topics();
        if topics.registry.get(name).is_none() {
            return Err(TopicError::Unknown(name.to_string()).into());
        }
        if validate_only {
            return Ok(());
        }
        topics.registry.set_configs(name, configs)?;
        for partition in topics.partitions.get(name).into_iter().flatten() {
            partition.log().set_config(log_config)?;
        }
        topics.log_configs.insert(name.to_string(), log_config);
        Ok(())
    }

    /// A producer id for InitProducerId: a new one, or with `current` an epoch bump of
    /// an existing one (KIP-360). Ids are reserved durably in blocks.
    pub fn init_producer_id(&self, current: Option<(i64, i16)>) -> Result<(i64, i16), ApiError> {
        if let Some((id, epoch)) = current
            && id >= 0
            && (0..i16::MAX - 1).contains(&epoch)
        {
            return Ok((id, epoch + 1));
        }
        let mut ids = herald_log::sync::lock(&self.producer_ids);
        if ids.next >= ids.block_end {
            let end = ids.next + PRODUCER_ID_BLOCK;
            self.write_topics().registry.set_property(PRODUCER_ID_PROPERTY, &end.to_string())?;
            ids.block_end = end;
        }
        let id = ids.next;
        ids.next += 1;
        Ok((id, 0))
    }

    /// The first step of a shutdown: parked JoinGroup and SyncGroup requests are answered
    /// NOT_COORDINATOR and long-polling fetches answer with what they have, so nothing
    /// waits for a rebalance or a fetch deadline.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.groups.give_up();
        self.notify_data();
    }

    /// Whether [`Broker::begin_shutdown`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Wakes long-polling fetches: new records may be visible.
    pub fn notify_data(&self) {
        self.data_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever [`Broker::notify_data`] is called.
    pub fn subscribe_data(&self) -> watch::Receiver<u64> {
        self.data_changed.subscribe()
    }

    /// The partitions of every topic whose `cleanup.policy` includes `compact`, with the
    /// topic's id and name, the partition's index and the topic's compaction settings.
    pub(crate) fn compacted_partitions(
        &self,
    ) -> Vec<(uuid::Uuid, String, u32, Arc<Partition>, crate::compaction::CompactionPolicy)> {
        let topics = self.read_topics();
        let mut found = Vec::new();
        for (name, meta) in topics.registry.topics() {
            let Some(policy) = topic_config::compaction(&meta.configs) else { continue };
            for (index, partition) in topics.partitions.get(name).into_iter().flatten().enumerate() {
                found.push((meta.id, name.clone(), index as u32, Arc::clone(partition), policy));
            }
        }
        found
    }

    /// Periodic work: fsyncs due under the interval policy, retention, producer expiry.
    pub fn maintain(&self, now_ms: i64, retention: bool) {
        let partitions: Vec<(String, usize, Arc<Partition>)> = {
            let topics = self.read_topics();
            topics
                .partitions
                .iter()
                .flat_map(|(t, ps)| ps.iter().enumerate().map(move |(i, p)| (t.clone(), i, Arc::clone(p))))
                .collect()
        };
        let mut synced = false;
        for (topic, index, partition) in partitions {
            let log = partition.log();
            if log.sync_due(now_ms) {
                match log.sync() {
                    Ok(_) => synced = true,
                    Err(error) => tracing::error!(topic, partition = index, %error, "fsync failed"),
                }
            }
            if retention {
                match log.enforce_retention(now_ms) {
                    Ok(outcome) if outcome.segments_deleted > 0 => tracing::info!(
                        topic,
                        partition = index,
                        segments = outcome.segments_deleted,
                        bytes = outcome.bytes_deleted,
                        log_start_offset = outcome.log_start_offset,
                        "retention deleted segments"
                    ),
                    Ok(_) => {}
                    Err(error) => tracing::error!(topic, partition = index, %error, "retention failed"),
                }
                partition.expire_producers(now_ms);
            }
        }
        if synced {
            self.notify_data();
        }
        self.groups.tick(now_ms);
        let offsets = self.groups.offsets().log();
        if offsets.sync_due(now_ms)
            && let Err(error) = offsets.sync()
        {
            tracing::error!(%error, "fsync of the group offsets log failed");
        }
        if retention && let Err(error) = self.groups.offsets().compact_if_needed(now_ms) {
            tracing::error!(%error, "compacting the group offsets log failed");
        }
    }

    /// Flushes and fsyncs every partition and marks each log cleanly closed. Partitions
    /// still referenced elsewhere are fsynced but not marked.
    pub fn close(self) -> Result<(), BrokerError> {
        let topics = self.topics.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut first_error = None;
        if let Err(source) = self.groups.into_offsets().into_log().close() {
            tracing::error!(error = %source, "closing the group offsets log failed");
            first_error = Some(BrokerError::Partition { topic: "@group-offsets".into(), partition: 0, source });
        }
        for (topic, partitions) in topics.partitions {
            for (index, partition) in partitions.into_iter().enumerate() {
                let result = match unwrap_when_released(partition) {
                    Ok(partition) => partition.into_log().close(),
                    Err(shared) => {
                        tracing::warn!(
                            topic,
                            partition = index,
                            "still in use at close; fsynced without the clean mark"
                        );
                        shared.log().sync().map(|_| ())
                    }
                };
                if let Err(source) = result {
                    tracing::error!(topic, partition = index, error = %source, "close failed");
                    first_error.get_or_insert(BrokerError::Partition {
                        topic: topic.clone(),
                        partition: index as u32,
                        source,
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Fsyncs every partition (without closing anything).
    pub fn sync_all(&self) -> Result<(), BrokerError> {
        self.groups.offsets().log().sync().map_err(|source| BrokerError::Partition {
            topic: "@group-offsets".into(),
            partition: 0,
            source,
        })?;
        let topics = self.read_topics();
        for (topic, partitions) in &topics.partitions {
            for (index, partition) in partitions.iter().enumerate() {
                partition.log().sync().map_err(|source| BrokerError::Partition {
                    topic: topic.clone(),
                    partition: index as u32,
                    source,
                })?;
            }
        }
        Ok(())
    }

    fn read_topics(&self) -> RwLockReadGuard<'_, Topics> {
        herald_log::sync::read(&self.topics)
    }

    fn write_topics(&self) -> RwLockWriteGuard<'_, Topics> {
        herald_log::sync::write(&self.topics)
    }
}

/// The partition itself once nothing else holds it: a request cancelled at shutdown may
/// still be finishing its fsync on a blocking thread, which takes moments, so this waits
/// up to a second for it.
fn unwrap_when_released(mut partition: Arc<Partition>) -> Result<Partition, Arc<Partition>> {
    for _ in 0..100 {
        match Arc::try_unwrap(partition) {
            Ok(partition) => return Ok(partition),
            Err(shared) => partition = shared,
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Arc::try_unwrap(partition)
}

impl BrokerConfig {
    /// The log settings every partition starts from, with this broker's fsync policy.
    pub fn log_defaults(&self) -> LogConfig {
        LogConfig { sync: self.durability.sync_policy(), ..self.log }
    }
}

fn effective_log_config(config: &BrokerConfig, name: &str, meta: &TopicMeta) -> Result<LogConfig, BrokerError> {
    topic_config::log_config(&config.log_defaults(), &meta.configs)
        .map_err(|detail| BrokerError::TopicConfig { topic: name.to_string(), detail })
}

/// `<data dir>/<topic>-<partition>`, as Kafka lays it out.
pub(crate) fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

fn open_partition(
    config: &BrokerConfig,
    storage: &Arc<dyn Storage>,
    topic: &str,
    partition: u32,
    log_config: LogConfig,
    now_ms: i64,
) -> Result<Arc<Partition>, BrokerError> {
    let dir = partition_dir(&config.data_dir, topic, partition);
    Partition::open(Arc::clone(storage), dir, log_config, config.producer_state, now_ms)
        .map(Arc::new)
        .map_err(|source| BrokerError::Partition { topic: topic.to_string(), partition, source })
}

/// Removes `<topic>-<n>` directories that the registry does not account for.
fn remove_leftover_partitions(
    storage: &dyn Storage,
    data_dir: &Path,
    topics: &BTreeMap<String, TopicMeta>,
) -> Result<(), BrokerError> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| BrokerError::Io { op, path, source }
    };
    let mut removed = false;
    for name in storage.list_subdirs(data_dir).map_err(io("list", data_dir))? {
        let Some((topic, index)) = name.rsplit_once('-') else { continue };
        let Ok(index) = index.parse::<u32>() else { continue };
        if topics.get(topic).is_some_and(|meta| index < meta.partitions) {
            continue;
        }
        let dir = data_dir.join(&name);
        tracing::warn!(path = %dir.display(), "removing a partition directory no topic owns (an interrupted delete or create)");
        storage.remove_dir_all(&dir).map_err(io("remove", &dir))?;
        removed = true;
    }
    if removed {
        storage.sync_dir(data_dir).map_err(io("fsync", data_dir))?;
    }
    Ok(())
}

/// A 22-character id in Kafka's style (URL-safe base64 of 16 bytes), unique enough
/// for telling data directories apart.
fn new_cluster_id(data_dir: &Path) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let seed = format!("{nanos}:{}:{}", std::process::id(), data_dir.display());
    let a = crc32c::crc32c(seed.as_bytes());
    let b = crc32c::crc32c_append(a, &nanos.to_le_bytes());
    let bytes: Vec<u8> =
        [a, b, a.rotate_left(16) ^ 0x9e37_79b9, b.rotate_left(7)].iter().flat_map(|w| w.to_be_bytes()).collect();
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = u128::from_be_bytes(bytes.try_into().unwrap_or([0; 16]));
    (0..22)
        .map(|_| {
            let c = ALPHABET[(bits & 63) as usize] as char;
            bits >>= 6;
            c
        })
        .collect()
}
