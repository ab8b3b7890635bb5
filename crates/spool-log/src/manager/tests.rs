use std::collections::BTreeMap;

use super::*;
use crate::testutil::batch;

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn create_list_and_look_up_topics() {
    let dir = tempfile::tempdir().unwrap();
    let m = LogManager::open(dir.path()).unwrap();
    let b = m
        .create_topic("b", 2, configs(&[("retention.ms", "1000")]))
        .unwrap();
    let a = m.create_topic("a", 1, BTreeMap::new()).unwrap();
    assert_ne!(a.id, b.id);
    assert_ne!(a.id, [0; 16]);
    let names: Vec<_> = m.topics().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(m.topic("b"), Some(b.clone()));
    assert_eq!(m.topic_by_id(b.id), Some(b.clone()));
    assert_eq!(m.partition("b", 1).unwrap().config().retention_ms, 1000);
    assert!(m.partition("b", 2).is_none());
    assert!(m.partition("b", -1).is_none());
    assert!(dir.path().join("b-1").is_dir());
    assert!(matches!(
        m.create_topic("a", 1, BTreeMap::new()),
        Err(LogError::TopicAlreadyExists(_))
    ));
}

#[test]
fn rejects_invalid_names_partitions_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let m = LogManager::open(dir.path()).unwrap();
    for name in ["", ".", "..", "a/b", "a b", &"x".repeat(250)] {
        assert!(
            matches!(
                m.create_topic(name, 1, BTreeMap::new()),
                Err(LogError::InvalidTopicName { .. })
            ),
            "{name:?}"
        );
    }
    m.create_topic("a.b", 1, BTreeMap::new()).unwrap();
    match m.create_topic("a_b", 1, BTreeMap::new()) {
        Err(LogError::InvalidTopicName { reason, .. }) => {
            assert_eq!(reason, "Topic 'a_b' collides with existing topic: a.b")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        m.create_topic("t", 0, BTreeMap::new()),
        Err(LogError::InvalidPartitions { .. })
    ));
    match m.create_topic("t", 1, configs(&[("retention.ms", "abc")])) {
        Err(LogError::InvalidConfig { key, reason }) => {
            assert_eq!(key, "retention.ms");
            assert!(reason.contains("Not a number of type LONG"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        m.create_topic("t", 1, configs(&[("no.such", "1")])),
        Err(LogError::InvalidConfig { .. })
    ));
    assert!(m.topic("t").is_none());
    assert!(!dir.path().join("t-0").exists());
}

#[test]
fn reopen_keeps_topics_ids_configs_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let meta = {
        let m = LogManager::open(dir.path()).unwrap();
        let meta = m
            .create_topic("orders", 3, configs(&[("segment.bytes", "1048576")]))
            .unwrap();
        let log = m.partition("orders", 2).unwrap();
        log.append(batch(3, 0), 0).unwrap();
        m.shutdown().unwrap();
        meta
    };
    let m = LogManager::open(dir.path()).unwrap();
    assert_eq!(m.topic("orders"), Some(meta.clone()));
    assert_eq!(m.topic_by_id(meta.id).unwrap().name, "orders");
    let log = m.partition("orders", 2).unwrap();
    assert_eq!(log.offsets().log_end_offset, 3);
    assert_eq!(log.config().segment_bytes, 1_048_576);
    // Unclean this time.
    log.append(batch(1, 0), 0).unwrap();
    drop((log, m));
    let m = LogManager::open(dir.path()).unwrap();
    assert_eq!(
        m.partition("orders", 2).unwrap().offsets().log_end_offset,
        4
    );
}

#[test]
fn delete_topic_removes_data_and_name_can_be_reused() {
    let dir = tempfile::tempdir().unwrap();
    let m = LogManager::open(dir.path()).unwrap();
    let old = m.create_topic("t", 2, BTreeMap::new()).unwrap();
    let held = m.partition("t", 0).unwrap();
    held.append(batch(1, 0), 0).unwrap();
    m.delete_topic("t").unwrap();
    assert!(m.topic("t").is_none());
    assert!(m.topic_by_id(old.id).is_none());
    assert!(!dir.path().join("t-0").exists());
    assert!(matches!(
        held.append(batch(1, 0), 0),
        Err(LogError::Deleted { .. })
    ));
    assert!(matches!(
        m.delete_topic("t"),
        Err(LogError::UnknownTopic(_))
    ));

    let new = m.create_topic("t", 1, BTreeMap::new()).unwrap();
    assert_ne!(new.id, old.id);
    assert_eq!(m.partition("t", 0).unwrap().offsets().log_end_offset, 0);
    drop(m);
    let m = LogManager::open(dir.path()).unwrap();
    assert_eq!(m.topics().len(), 1);
}

#[test]
fn create_topic_ignores_leftover_directories_and_open_finishes_deletions() {
    let dir = tempfile::tempdir().unwrap();
    // A partition directory nobody owns (e.g. metadata lost in a crash) with data in it.
    {
        let stray = PartitionLog::open(&dir.path().join("t-0"), LogConfig::default()).unwrap();
        stray.append(batch(5, 0), 0).unwrap();
        stray.close().unwrap();
    }
    fs::create_dir_all(dir.path().join("x-0.0123-delete")).unwrap();
    fs::write(dir.path().join("cluster-id"), "abc").unwrap();
    let m = LogManager::open(dir.path()).unwrap();
    assert!(!dir.path().join("x-0.0123-delete").exists());
    assert!(
        dir.path().join("cluster-id").exists(),
        "other files left alone"
    );
    m.create_topic("t", 1, BTreeMap::new()).unwrap();
    assert_eq!(m.partition("t", 0).unwrap().offsets().log_end_offset, 0);
}

#[test]
fn create_partitions_only_grows() {
    let dir = tempfile::tempdir().unwrap();
    let m = LogManager::open(dir.path()).unwrap();
    m.create_topic("t", 2, BTreeMap::new()).unwrap();
    m.partition("t", 0).unwrap().append(batch(1, 0), 0).unwrap();
    match m.create_partitions("t", 1) {
        Err(LogError::InvalidPartitions { reason, .. }) => assert_eq!(
            reason,
            "Topic currently has 2 partitions, which is higher than the requested 1."
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        m.create_partitions("t", 2),
        Err(LogError::InvalidPartitions { .. })
    ));
    assert!(matches!(
        m.create_partitions("nope", 3),
        Err(LogError::UnknownTopic(_))
    ));
    m.create_partitions("t", 4).unwrap();
    assert_eq!(m.topic("t").unwrap().partitions, 4);
    assert!(m.partition("t", 3).is_some());
    assert_eq!(m.partition("t", 0).unwrap().offsets().log_end_offset, 1);
    drop(m);
    let m = LogManager::open(dir.path()).unwrap();
    assert_eq!(m.topic("t").unwrap().partitions, 4);
    assert_eq!(m.partition("t", 0).unwrap().offsets().log_end_offset, 1);
}

#[test]
fn alter_configs_applies_to_open_partitions_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let m = LogManager::open(dir.path()).unwrap();
    m.create_topic("t", 1, configs(&[("retention.ms", "1000")]))
        .unwrap();
    let log = m.partition("t", 0).unwrap();
    m.alter_topic_configs("t", configs(&[("message.timestamp.type", "LogAppendTime")]))
        .unwrap();
    assert!(log.config().log_append_time);
    assert_eq!(log.config().retention_ms, LogConfig::default().retention_ms);
    assert!(matches!(
        m.alter_topic_configs("t", configs(&[("segment.bytes", "1")])),
        Err(LogError::InvalidConfig { .. })
    ));
    assert!(matches!(
        m.alter_topic_configs("nope", BTreeMap::new()),
        Err(LogError::UnknownTopic(_))
    ));
    drop((log, m));
    let m = LogManager::open(dir.path()).unwrap();
    assert_eq!(
        m.topic("t").unwrap().configs,
        configs(&[("message.timestamp.type", "LogAppendTime")])
    );
    assert!(m.partition("t", 0).unwrap().config().log_append_time);
}

#[test]
fn retention_runs_over_all_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let m = LogManager::open(dir.path()).unwrap();
    m.create_topic(
        "t",
        2,
        configs(&[("retention.bytes", "0"), ("segment.bytes", "1048576")]),
    )
    .unwrap();
    for p in 0..2 {
        let log = m.partition("t", p).unwrap();
        // Force several segments despite the 1 MiB minimum, then restore.
        let config = log.config();
        log.set_config(LogConfig {
            segment_bytes: batch(1, 0).len() as u64,
            ..config
        });
        for _ in 0..3 {
            log.append(batch(1, 0), 0).unwrap();
        }
        log.set_config(config);
    }
    m.enforce_retention(0);
    for p in 0..2 {
        assert_eq!(m.partition("t", p).unwrap().offsets().log_start_offset, 2);
    }
}

#[test]
fn corrupt_metadata_is_an_error_not_an_empty_broker() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(TOPICS_FILE), b"{not json").unwrap();
    assert!(matches!(
        LogManager::open(dir.path()),
        Err(LogError::Metadata { .. })
    ));
}

#[test]
fn delete_dir_names_fit_in_255_bytes() {
    let id = "0".repeat(32);
    let name = delete_dir_name(&"x".repeat(249), 12345, &id);
    assert_eq!(name.len(), 255);
    assert!(name.ends_with(&format!(".{id}-delete")));
    assert_eq!(delete_dir_name("t", 0, &id), format!("t-0.{id}-delete"));
}
