use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use herald_log::{CrashMode, FaultStorage, FsStorage, Storage};

use super::*;

/// One change to the registry in the power-loss sequence.
type Step = dyn Fn(&mut TopicRegistry) -> Result<(), TopicError>;

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn topics_survive_reopen_with_partitions_and_configs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage: Arc<dyn Storage> = Arc::new(FsStorage);
    let mut registry = TopicRegistry::open(Arc::clone(&storage), tmp.path(), 1000).expect("open");
    registry.create_named("user.created", 3, configs(&[("retention.ms", "86400000")])).expect("create");
    registry.create_named("orders.order.placed", 6, BTreeMap::new()).expect("create");
    registry.set_partitions("user.created", 5).expect("grow");
    registry.set_configs("orders.order.placed", configs(&[("cleanup.policy", "delete")])).expect("configs");
    registry.create_named("gone", 1, BTreeMap::new()).expect("create");
    assert_eq!(registry.delete("gone").expect("delete").partitions, 1);
    let expected = registry.topics().clone();
    drop(registry);
    let registry = TopicRegistry::open(storage, tmp.path(), 1000).expect("reopen");
    assert_eq!(registry.topics(), &expected);
    assert_eq!(registry.get("user.created").map(|t| t.partitions), Some(5));
}

#[test]
fn invalid_requests_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut registry = TopicRegistry::open(Arc::new(FsStorage), tmp.path(), 100).expect("open");
    registry.create_named("a", 2, BTreeMap::new()).expect("create");
    for name in ["", ".", "..", "has space", "slash/x", &"x".repeat(250)] {
        assert!(matches!(registry.create_named(name, 1, BTreeMap::new()), Err(TopicError::InvalidName(_))), "{name:?}");
    }
    assert!(validate_name(&"x".repeat(249)).is_ok());
    assert!(matches!(registry.create_named("a", 1, BTreeMap::new()), Err(TopicError::Exists(_))));
    assert!(matches!(registry.create_named("b", 0, BTreeMap::new()), Err(TopicError::InvalidPartitions { .. })));
    assert!(matches!(registry.create_named("b", 101, BTreeMap::new()), Err(TopicError::InvalidPartitions { .. })));
    assert!(matches!(registry.set_partitions("a", 1), Err(TopicError::InvalidPartitions { .. })));
    assert!(matches!(registry.set_partitions("zzz", 4), Err(TopicError::Unknown(_))));
    assert!(matches!(registry.create_named("c", 1, configs(&[("bad\tkey", "1")])), Err(TopicError::InvalidConfig(_))));
    assert!(matches!(registry.delete("zzz"), Err(TopicError::Unknown(_))));
    assert_eq!(registry.topics().len(), 1);
}

#[test]
fn a_damaged_registry_file_is_an_error_not_a_guess() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut registry = TopicRegistry::open(Arc::new(FsStorage), tmp.path(), 100).expect("open");
    registry.create_named("a", 2, BTreeMap::new()).expect("create");
    let path = tmp.path().join("topics.meta");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[20] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    assert!(matches!(TopicRegistry::open(Arc::new(FsStorage), tmp.path(), 100), Err(TopicError::Damaged { .. })));
}

/// Power loss at every operation of a sequence of changes: the registry afterwards is one
/// of the states the sequence passed through, and a change that returned Ok survives.
#[test]
fn power_loss_at_any_point_leaves_the_old_or_the_new_registry() {
    let dir = Path::new("/data");
    for crash_at in 1..60 {
        for mode in [CrashMode::DropUnsynced, CrashMode::TearUnsynced] {
            let storage = FaultStorage::new(crash_at);
            storage.create_dir_all(dir).expect("dir");
            storage.sync_dir(Path::new("/")).expect("sync root");
            storage.crash_at_op(storage.mutating_ops() + crash_at);
            let shared: Arc<dyn Storage> = Arc::new(storage.clone());
            let mut states = vec![BTreeMap::new()];
            let mut acknowledged = 0;
            if let Ok(mut registry) = TopicRegistry::open(Arc::clone(&shared), dir, 100) {
                let steps: Vec<Box<Step>> = vec![
                    Box::new(|r| r.create_named("t1", 3, BTreeMap::new())),
                    Box::new(|r| r.create_named("t2", 1, configs(&[("retention.ms", "1000")]))),
                    Box::new(|r| r.set_partitions("t1", 6)),
                    Box::new(|r| r.delete("t2").map(|_| ())),
                    Box::new(|r| r.create_named("t3", 2, BTreeMap::new())),
                ];
                for step in &steps {
                    let mut next = registry.topics().clone();
                    let result = step(&mut registry);
                    if result.is_ok() {
                        acknowledged = states.len();
                        next = registry.topics().clone();
                        states.push(next);
                    } else {
                        // The attempted state may or may not have reached the disk.
                        let mut attempt = clone_for_model(&registry);
                        attempt.contents.topics = next.clone();
                        let _ = step(&mut attempt);
                        states.push(attempt.contents.topics);
                        break;
                    }
                }
            }
            storage.crash(mode);
            let reopened = TopicRegistry::open(shared, dir, 100).expect("reopen after power loss");
            let at = states.iter().position(|s| s == reopened.topics());
            assert!(
                at.is_some(),
                "crash at op {crash_at} ({mode:?}): registry {:?} was never a state",
                reopened.topics()
            );
            assert!(
                at.unwrap_or(0) >= acknowledged,
                "crash at op {crash_at} ({mode:?}): an acknowledged change was lost"
            );
        }
    }
}

/// A registry over a throwaway in-memory disk, to compute what a failed step attempted.
fn clone_for_model(registry: &TopicRegistry) -> TopicRegistry {
    let storage = FaultStorage::new(0);
    storage.create_dir_all(Path::new("/m")).expect("dir");
    TopicRegistry {
        storage: Arc::new(storage),
        dir: Path::new("/m").to_path_buf(),
        contents: registry.contents.clone(),
        partitions_max: registry.partitions_max,
    }
}

#[test]
fn properties_survive_a_reopen_and_do_not_show_as_topics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage: Arc<dyn Storage> = Arc::new(herald_log::FsStorage);
    let mut registry = TopicRegistry::open(Arc::clone(&storage), dir.path(), 10).expect("open");
    registry.set_property("cluster_id", "abc").expect("property");
    registry.create_named("t", 1, BTreeMap::new()).expect("create");
    let reopened = TopicRegistry::open(storage, dir.path(), 10).expect("reopen");
    assert_eq!(reopened.property("cluster_id"), Some("abc"));
    assert_eq!(reopened.topics().keys().collect::<Vec<_>>(), ["t"]);
}

/// `create` with an id made from the name, so a test can compute what a step attempted.
trait CreateNamed {
    fn create_named(
        &mut self,
        name: &str,
        partitions: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), TopicError>;
}

impl CreateNamed for TopicRegistry {
    fn create_named(
        &mut self,
        name: &str,
        partitions: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), TopicError> {
        let id = uuid::Uuid::from_u128(u128::from(crc32c::crc32c(name.as_bytes())) + 1);
        self.create(name, partitions, configs, id)
    }
}

#[test]
fn a_registry_without_ids_gets_them_once_and_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = "herald-topics v1\n@cluster_id\tabc\norders\t3\tretention.ms=1000\n";
    let file = format!("{body}crc {:08x}\n", crc32c::crc32c(body.as_bytes()));
    std::fs::write(dir.path().join(FILE), file).expect("v1 file");
    let storage: Arc<dyn Storage> = Arc::new(herald_log::FsStorage);
    let registry = TopicRegistry::open(Arc::clone(&storage), dir.path(), 10).expect("open v1");
    let orders = registry.get("orders").expect("orders").clone();
    assert!(!orders.id.is_nil());
    assert_eq!((orders.partitions, orders.configs["retention.ms"].as_str()), (3, "1000"));
    assert_eq!(registry.name_of(orders.id), Some("orders"));
    let reopened = TopicRegistry::open(storage, dir.path(), 10).expect("reopen");
    assert_eq!(reopened.get("orders").map(|m| m.id), Some(orders.id), "the id was written, not made again");
    let text = std::fs::read_to_string(dir.path().join(FILE)).expect("read");
    assert!(text.starts_with("herald-topics v2\n"), "{text}");
}
