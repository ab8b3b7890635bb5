//! The data directory: topics (names, ids, partition counts, explicit configs) and their
//! partition logs.
//!
//! ```text
//! <data-dir>/topics.json            every topic's metadata, replaced atomically on each change
//! <data-dir>/<topic>-<partition>/   one partition log (segments, indexes, recovery files)
//! <data-dir>/<topic>-<p>.<id>-delete/  a deleted partition on its way out (removed on open)
//! ```
//! Admin operations are serialised by one mutex and persist the metadata before they touch
//! partition directories, so a crash leaves the metadata authoritative: missing partition
//! directories are recreated empty, and directories of unknown topics are removed when a topic
//! of that name is created. Lookups (`topic`, `partition`) only take a read lock.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use crate::config::LogConfig;
use crate::error::{io_err, LogError};
use crate::fsutil::{sync_dir, write_atomic};
use crate::partition::PartitionLog;
use crate::topic_config::{log_config_over, validate_all, validate_name};

/// File holding every topic's metadata.
const TOPICS_FILE: &str = "topics.json";
/// Suffix of partition directories being deleted (Kafka's convention).
const DELETE_SUFFIX: &str = "-delete";

/// A topic's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Topic id: random UUID v4 bytes, fixed at creation.
    pub id: [u8; 16],
    /// Number of partitions, numbered from 0.
    pub partitions: i32,
    /// Explicitly set topic configs (defaults are not listed).
    pub configs: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct StoredTopics {
    version: u32,
    topics: Vec<StoredTopic>,
}

#[derive(Serialize, Deserialize)]
struct StoredTopic {
    name: String,
    /// Hyphenated UUID, readable in the file.
    id: String,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

struct Topic {
    meta: TopicMeta,
    logs: Vec<Arc<PartitionLog>>,
}

#[derive(Default)]
struct Topics {
    by_name: BTreeMap<String, Topic>,
    by_id: HashMap<[u8; 16], String>,
}

/// The broker's data directory: topics and their partition logs.
pub struct LogManager {
    data_dir: PathBuf,
    defaults: LogConfig,
    /// Serialises admin operations (create, delete, alter); held across their file work.
    admin: Mutex<()>,
    topics: RwLock<Topics>,
}

impl std::fmt::Debug for LogManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogManager")
            .field("data_dir", &self.data_dir)
            .field("topics", &self.read().by_name.len())
            .finish()
    }
}

impl LogManager {
    /// Opens the data directory with Kafka's default topic settings; see
    /// [`open_with_defaults`](Self::open_with_defaults).
    pub fn open(data_dir: &Path) -> Result<Self, LogError> {
        Self::open_with_defaults(data_dir, LogConfig::default())
    }

    /// Opens (creating if needed) the data directory: loads the topic metadata and opens, and
    /// if needed recovers, every partition. `defaults` are the settings of topics that set
    /// nothing explicitly (the broker's `log.*` configs).
    pub fn open_with_defaults(data_dir: &Path, defaults: LogConfig) -> Result<Self, LogError> {
        fs::create_dir_all(data_dir).map_err(io_err("create directory", data_dir))?;
        remove_deleted_dirs(data_dir)?;
        let mut topics = Topics::default();
        for meta in read_topics(data_dir)? {
            let config = log_config_over(&defaults, &meta.configs);
            let logs = (0..meta.partitions)
                .map(|p| {
                    PartitionLog::open(&partition_dir(data_dir, &meta.name, p), config)
                        .map(Arc::new)
                })
                .collect::<Result<Vec<_>, _>>()?;
            topics.by_id.insert(meta.id, meta.name.clone());
            topics
                .by_name
                .insert(meta.name.clone(), Topic { meta, logs });
        }
        Ok(LogManager {
            data_dir: data_dir.to_path_buf(),
            defaults,
            admin: Mutex::new(()),
            topics: RwLock::new(topics),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Topics> {
        self.topics.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Topics> {
        self.topics.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn admin(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Persists the metadata as it will be after a change.
    fn persist(&self, metas: impl Iterator<Item = TopicMeta>) -> Result<(), LogError> {
        let stored = StoredTopics {
            version: 1,
            topics: metas
                .map(|m| StoredTopic {
                    name: m.name,
                    id: uuid::Uuid::from_bytes(m.id).hyphenated().to_string(),
                    partitions: m.partitions,
                    configs: m.configs,
                })
                .collect(),
        };
        let path = self.data_dir.join(TOPICS_FILE);
        let bytes = serde_json::to_vec_pretty(&stored).map_err(|e| LogError::Metadata {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &bytes).map_err(io_err("write", &path))
    }

    /// Current metadata with `change` applied, for [`persist`](Self::persist).
    fn metas_with(&self, change: impl Fn(&str) -> Option<Option<TopicMeta>>) -> Vec<TopicMeta> {
        let topics = self.read();
        topics
            .by_name
            .values()
            .filter_map(|t| match change(&t.meta.name) {
                Some(replacement) => replacement,
                None => Some(t.meta.clone()),
            })
            .collect()
    }

    /// Creates a topic with `partitions` partitions and these explicit configs.
    ///
    /// Errors: [`LogError::InvalidTopicName`] (Kafka's rules, or a name that collides with an
    /// existing one once `.` and `_` are confused), [`LogError::InvalidPartitions`],
    /// [`LogError::InvalidConfig`], [`LogError::TopicAlreadyExists`].
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta, LogError> {
        validate_name(name).map_err(|reason| LogError::InvalidTopicName {
            name: name.to_string(),
            reason,
        })?;
        if partitions < 1 {
            return Err(LogError::InvalidPartitions {
                topic: name.to_string(),
                reason: "Number of partitions must be larger than 0.".into(),
            });
        }
        validate_all(&configs).map_err(|(key, reason)| LogError::InvalidConfig { key, reason })?;
        let _admin = self.admin();
        {
            let topics = self.read();
            if topics.by_name.contains_key(name) {
                return Err(LogError::TopicAlreadyExists(name.to_string()));
            }
            let collision = |n: &str| n.replace('.', "_");
            if let Some(other) = topics
                .by_name
                .keys()
                .find(|other| collision(other) == collision(name))
            {
                return Err(LogError::InvalidTopicName {
                    name: name.to_string(),
                    reason: format!("Topic '{name}' collides with existing topic: {other}"),
                });
            }
        }
        let meta = TopicMeta {
            name: name.to_string(),
            id: new_topic_id(&self.read().by_id),
            partitions,
            configs,
        };
        let mut metas = self.metas_with(|_| None);
        metas.push(meta.clone());
        // Leftovers of an earlier topic of that name must not be taken as this one's data.
        for p in 0..partitions {
            remove_stale_dir(&partition_dir(&self.data_dir, name, p))?;
        }
        self.persist(metas.into_iter())?;
        let logs = match self.open_partitions(&meta, 0..partitions) {
            Ok(logs) => logs,
            Err(e) => {
                // Undo the metadata; the directories are removed by the next create.
                let _ = self.persist(self.metas_with(|_| None).into_iter());
                return Err(e);
            }
        };
        let mut topics = self.write();
        topics.by_id.insert(meta.id, meta.name.clone());
        topics.by_name.insert(
            meta.name.clone(),
            Topic {
                meta: meta.clone(),
                logs,
            },
        );
        Ok(meta)
    }

    fn open_partitions(
        &self,
        meta: &TopicMeta,
        range: std::ops::Range<i32>,
    ) -> Result<Vec<Arc<PartitionLog>>, LogError> {
        let config = log_config_over(&self.defaults, &meta.configs);
        range
            .map(|p| {
                PartitionLog::open(&partition_dir(&self.data_dir, &meta.name, p), config)
                    .map(Arc::new)
            })
            .collect()
    }

    /// Deletes a topic: its metadata, then its partition directories. Logs still held by
    /// callers fail further operations with [`LogError::Deleted`].
    pub fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        let _admin = self.admin();
        if !self.read().by_name.contains_key(name) {
            return Err(LogError::UnknownTopic(name.to_string()));
        }
        self.persist(self.metas_with(|n| (n == name).then_some(None)).into_iter())?;
        let topic = {
            let mut topics = self.write();
            let topic = topics.by_name.remove(name).expect("checked above");
            topics.by_id.remove(&topic.meta.id);
            topic
        };
        let id = uuid::Uuid::from_bytes(topic.meta.id).simple().to_string();
        for (p, log) in topic.logs.iter().enumerate() {
            log.mark_deleted();
            let dir = partition_dir(&self.data_dir, name, p as i32);
            // Renamed first so the name is free at once and an interrupted removal finishes
            // on the next open.
            let doomed = self.data_dir.join(delete_dir_name(name, p, &id));
            match fs::rename(&dir, &doomed) {
                Ok(()) => {
                    if let Err(e) = fs::remove_dir_all(&doomed) {
                        warn!(dir = %doomed.display(), "removing deleted partition failed: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => warn!(dir = %dir.display(), "renaming deleted partition failed: {e}"),
            }
        }
        sync_dir(&self.data_dir).map_err(io_err("sync directory", &self.data_dir))
    }

    /// Raises a topic's partition count to `new_total`. [`LogError::InvalidPartitions`] unless
    /// it grows.
    pub fn create_partitions(&self, name: &str, new_total: i32) -> Result<(), LogError> {
        let _admin = self.admin();
        let meta = self
            .topic(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        if new_total <= meta.partitions {
            let reason = if new_total == meta.partitions {
                format!("Topic already has {} partitions.", meta.partitions)
            } else {
                format!(
                    "Topic currently has {} partitions, which is higher than the requested {new_total}.",
                    meta.partitions
                )
            };
            return Err(LogError::InvalidPartitions {
                topic: name.to_string(),
                reason,
            });
        }
        for p in meta.partitions..new_total {
            remove_stale_dir(&partition_dir(&self.data_dir, name, p))?;
        }
        let grown = TopicMeta {
            partitions: new_total,
            ..meta.clone()
        };
        self.persist(
            self.metas_with(|n| (n == name).then(|| Some(grown.clone())))
                .into_iter(),
        )?;
        // On failure the metadata already says `new_total`; the next open creates the rest.
        let logs = self.open_partitions(&grown, meta.partitions..new_total)?;
        let mut topics = self.write();
        if let Some(t) = topics.by_name.get_mut(name) {
            t.meta.partitions = new_total;
            t.logs.extend(logs);
        }
        Ok(())
    }

    /// Replaces a topic's explicit configs with `configs` (AlterConfigs semantics; the broker
    /// merges for IncrementalAlterConfigs) and applies them to its partitions.
    pub fn alter_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), LogError> {
        validate_all(&configs).map_err(|(key, reason)| LogError::InvalidConfig { key, reason })?;
        let _admin = self.admin();
        let meta = self
            .topic(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        let altered = TopicMeta { configs, ..meta };
        self.persist(
            self.metas_with(|n| (n == name).then(|| Some(altered.clone())))
                .into_iter(),
        )?;
        let config = log_config_over(&self.defaults, &altered.configs);
        let mut topics = self.write();
        if let Some(t) = topics.by_name.get_mut(name) {
            for log in &t.logs {
                log.set_config(config);
            }
            t.meta.configs = altered.configs;
        }
        Ok(())
    }

    /// A topic's metadata.
    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.read().by_name.get(name).map(|t| t.meta.clone())
    }

    /// A topic's metadata by id.
    pub fn topic_by_id(&self, id: [u8; 16]) -> Option<TopicMeta> {
        let topics = self.read();
        let name = topics.by_id.get(&id)?;
        topics.by_name.get(name).map(|t| t.meta.clone())
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<TopicMeta> {
        self.read()
            .by_name
            .values()
            .map(|t| t.meta.clone())
            .collect()
    }

    /// One partition's log.
    pub fn partition(&self, name: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        let topics = self.read();
        let topic = topics.by_name.get(name)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| topic.logs.get(p))
            .cloned()
    }

    fn all_logs(&self) -> Vec<Arc<PartitionLog>> {
        self.read()
            .by_name
            .values()
            .flat_map(|t| t.logs.iter().cloned())
            .collect()
    }

    /// Applies retention to every partition; failures are logged, not returned, so one bad
    /// partition does not stop the others.
    pub fn enforce_retention(&self, now_ms: i64) {
        for log in self.all_logs() {
            if let Err(e) = log.enforce_retention(now_ms) {
                error!(dir = %log.dir().display(), "retention failed: {e}");
            }
        }
    }

    /// Runs the `flush.ms` policy on every partition (call periodically).
    pub fn flush_due(&self, now_ms: i64) {
        for log in self.all_logs() {
            if let Err(e) = log.flush_if_due(now_ms) {
                error!(dir = %log.dir().display(), "flush failed: {e}");
            }
        }
    }

    /// Closes every partition (fsync, indexes, producer snapshots, clean-shutdown markers) so
    /// the next open needs no full recovery. Returns the first error after trying all.
    pub fn shutdown(&self) -> Result<(), LogError> {
        let mut first = None;
        for log in self.all_logs() {
            if let Err(e) = log.close() {
                error!(dir = %log.dir().display(), "close failed: {e}");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// `<data-dir>/<topic>-<partition>`, Kafka's naming.
fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// `<topic>-<p>.<id>-delete`, with the topic part shortened (names are ASCII) so the whole
/// stays within the 255-byte file name limit, as Kafka does.
fn delete_dir_name(topic: &str, partition: usize, id: &str) -> String {
    let mut prefix = format!("{topic}-{partition}");
    prefix.truncate(255 - 1 - id.len() - DELETE_SUFFIX.len());
    format!("{prefix}.{id}{DELETE_SUFFIX}")
}

/// A random v4 id, never all zeros (Kafka reserves it) nor one already used.
fn new_topic_id(used: &HashMap<[u8; 16], String>) -> [u8; 16] {
    loop {
        let id = *uuid::Uuid::new_v4().as_bytes();
        if id != [0; 16] && !used.contains_key(&id) {
            return id;
        }
    }
}

fn read_topics(data_dir: &Path) -> Result<Vec<TopicMeta>, LogError> {
    let path = data_dir.join(TOPICS_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let bad = |reason: String| LogError::Metadata {
        path: path.clone(),
        reason,
    };
    let stored: StoredTopics = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    stored
        .topics
        .into_iter()
        .map(|t| {
            let id = uuid::Uuid::parse_str(&t.id)
                .map_err(|e| bad(format!("topic {}: bad id: {e}", t.name)))?;
            validate_name(&t.name).map_err(bad)?;
            Ok(TopicMeta {
                name: t.name,
                id: *id.as_bytes(),
                partitions: t.partitions,
                configs: t.configs,
            })
        })
        .collect()
}

/// Finishes deletions interrupted by a crash.
fn remove_deleted_dirs(data_dir: &Path) -> Result<(), LogError> {
    for entry in fs::read_dir(data_dir).map_err(io_err("list", data_dir))? {
        let entry = entry.map_err(io_err("list", data_dir))?;
        let path = entry.path();
        if path.is_dir()
            && entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(DELETE_SUFFIX))
        {
            fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
        }
    }
    Ok(())
}

/// Removes a partition directory that no topic owns.
fn remove_stale_dir(dir: &Path) -> Result<(), LogError> {
    if dir.exists() {
        warn!(dir = %dir.display(), "removing leftover partition directory of an unknown topic");
        fs::remove_dir_all(dir).map_err(io_err("remove", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
