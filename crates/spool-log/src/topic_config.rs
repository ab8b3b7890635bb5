//! Kafka's topic configs: names, types, defaults, validation, and their mapping to a
//! [`LogConfig`]. Used by CreateTopics, AlterConfigs and DescribeConfigs.
//!
//! The catalogue lists the topic configs Kafka 4.0 documents, with Kafka's defaults. The tiered
//! storage ones are included, but `remote.storage.enable=true` is refused: Spool has no tiered
//! storage (Kafka refuses it too when its broker has it off). Validation
//! follows Kafka's `ConfigDef` (values are trimmed; numbers, booleans, enumerations and ranges
//! checked) and words its errors the same way, since clients show them to users.

use std::collections::BTreeMap;

use spool_protocol::compression::Compression;

use crate::config::LogConfig;

/// Kafka's config value types (`ConfigDef.Type`) that topic configs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// `true` / `false`.
    Boolean,
    /// Free or enumerated text.
    String,
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    Long,
    /// Floating point.
    Double,
    /// Comma-separated list.
    List,
    /// Java class name.
    Class,
    /// Secret text.
    Password,
}

impl ConfigKind {
    /// Kafka's name of the type, as used in its error messages.
    pub fn name(self) -> &'static str {
        match self {
            ConfigKind::Boolean => "BOOLEAN",
            ConfigKind::String => "STRING",
            ConfigKind::Int => "INT",
            ConfigKind::Long => "LONG",
            ConfigKind::Double => "DOUBLE",
            ConfigKind::List => "LIST",
            ConfigKind::Class => "CLASS",
            ConfigKind::Password => "PASSWORD",
        }
    }
}

/// What values a config accepts beyond its type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    Any,
    AtLeast(i64),
    Between(i64, i64),
    /// Double in [min, max].
    BetweenF(f64, f64),
    OneOf(&'static [&'static str]),
    /// A list whose items are each one of these.
    ListOf(&'static [&'static str]),
    /// Kafka's gzip level: 1..=9 or -1 (the codec's default).
    GzipLevel,
    /// `*` or `partition:broker` pairs.
    ThrottledReplicas,
}

/// One topic config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfigEntry {
    /// Kafka's name.
    pub name: &'static str,
    /// Kafka's default, as DescribeConfigs shows it.
    pub default: &'static str,
    /// One-line description.
    pub doc: &'static str,
    /// Value type.
    pub kind: ConfigKind,
    /// Accepted values, in Kafka's documentation notation (empty when any value of the type).
    pub valid_values: &'static str,
    rule: Rule,
}

const LONG_MAX: &str = "9223372036854775807";
const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];

const fn entry(
    name: &'static str,
    kind: ConfigKind,
    default: &'static str,
    rule: Rule,
    valid_values: &'static str,
    doc: &'static str,
) -> ConfigEntry {
    ConfigEntry {
        name,
        default,
        doc,
        kind,
        valid_values,
        rule,
    }
}

use ConfigKind::{Boolean, Double, Int, List, Long, String as Str};

static CATALOGUE: &[ConfigEntry] = &[
    entry(
        "cleanup.policy",
        List,
        "delete",
        Rule::ListOf(CLEANUP_POLICIES),
        "[compact, delete]",
        "How old data is removed: 'delete' by retention, 'compact' keeps the last value per key.",
    ),
    entry(
        "compression.gzip.level",
        Int,
        "-1",
        Rule::GzipLevel,
        "[1,...,9] or -1",
        "Compression level when compression.type is gzip.",
    ),
    entry(
        "compression.lz4.level",
        Int,
        "9",
        Rule::Between(1, 17),
        "[1,...,17]",
        "Compression level when compression.type is lz4.",
    ),
    entry(
        "compression.type",
        Str,
        "producer",
        Rule::OneOf(COMPRESSION_TYPES),
        "[uncompressed, zstd, lz4, snappy, gzip, producer]",
        "Final compression of the topic's data; 'producer' keeps what the producer sent.",
    ),
    entry(
        "compression.zstd.level",
        Int,
        "3",
        Rule::Between(-131072, 22),
        "[-131072,...,22]",
        "Compression level when compression.type is zstd.",
    ),
    entry(
        "delete.retention.ms",
        Long,
        "86400000",
        Rule::AtLeast(0),
        "[0,...]",
        "How long delete tombstones are kept on compacted topics.",
    ),
    entry(
        "file.delete.delay.ms",
        Long,
        "60000",
        Rule::AtLeast(0),
        "[0,...]",
        "Delay before a deleted segment's files are removed from disk.",
    ),
    entry(
        "flush.messages",
        Long,
        LONG_MAX,
        Rule::AtLeast(1),
        "[1,...]",
        "Messages written between two forced fsyncs; the default leaves flushing to the OS.",
    ),
    entry(
        "flush.ms",
        Long,
        LONG_MAX,
        Rule::AtLeast(0),
        "[0,...]",
        "Longest time data stays unflushed; the default leaves flushing to the OS.",
    ),
    entry(
        "follower.replication.throttled.replicas",
        List,
        "",
        Rule::ThrottledReplicas,
        "[partitionId]:[brokerId],[partitionId]:[brokerId],...",
        "Replicas whose replication is throttled on the follower side, or '*' for all.",
    ),
    entry(
        "index.interval.bytes",
        Int,
        "4096",
        Rule::AtLeast(0),
        "[0,...]",
        "Bytes of log between two offset index entries.",
    ),
    entry(
        "leader.replication.throttled.replicas",
        List,
        "",
        Rule::ThrottledReplicas,
        "[partitionId]:[brokerId],[partitionId]:[brokerId],...",
        "Replicas whose replication is throttled on the leader side, or '*' for all.",
    ),
    entry(
        "local.retention.bytes",
        Long,
        "-2",
        Rule::AtLeast(-2),
        "[-2,...]",
        "Local size limit when tiered storage is on; -2 uses retention.bytes.",
    ),
    entry(
        "local.retention.ms",
        Long,
        "-2",
        Rule::AtLeast(-2),
        "[-2,...]",
        "Local age limit when tiered storage is on; -2 uses retention.ms.",
    ),
    entry(
        "max.compaction.lag.ms",
        Long,
        LONG_MAX,
        Rule::AtLeast(1),
        "[1,...]",
        "Longest time a message stays ineligible for compaction.",
    ),
    entry(
        "max.message.bytes",
        Int,
        "1048588",
        Rule::AtLeast(0),
        "[0,...]",
        "Largest record batch the topic accepts.",
    ),
    // A no-op since Kafka 4.0 (no down-conversion), still accepted so older tools work.
    entry(
        "message.downconversion.enable",
        Boolean,
        "true",
        Rule::Any,
        "",
        "Down-conversion for old consumers; no effect since Kafka 4.0.",
    ),
    entry(
        "message.timestamp.after.max.ms",
        Long,
        "3600000",
        Rule::AtLeast(0),
        "[0,...]",
        "How far in the future a message timestamp may be, relative to the broker's clock.",
    ),
    entry(
        "message.timestamp.before.max.ms",
        Long,
        LONG_MAX,
        Rule::AtLeast(0),
        "[0,...]",
        "How far in the past a message timestamp may be, relative to the broker's clock.",
    ),
    entry(
        "message.timestamp.type",
        Str,
        "CreateTime",
        Rule::OneOf(TIMESTAMP_TYPES),
        "[CreateTime, LogAppendTime]",
        "Whether message timestamps are the producer's create time or the broker's append time.",
    ),
    entry(
        "min.cleanable.dirty.ratio",
        Double,
        "0.5",
        Rule::BetweenF(0.0, 1.0),
        "[0,...,1]",
        "Share of uncompacted log that triggers compaction.",
    ),
    entry(
        "min.compaction.lag.ms",
        Long,
        "0",
        Rule::AtLeast(0),
        "[0,...]",
        "Shortest time a message stays uncompacted.",
    ),
    entry(
        "min.insync.replicas",
        Int,
        "1",
        Rule::AtLeast(1),
        "[1,...]",
        "Replicas that must acknowledge a write with acks=all.",
    ),
    entry(
        "preallocate",
        Boolean,
        "false",
        Rule::Any,
        "",
        "Preallocate segment files when rolling.",
    ),
    entry(
        "remote.log.copy.disable",
        Boolean,
        "false",
        Rule::Any,
        "",
        "Stop copying segments to tiered storage while keeping what is there.",
    ),
    entry(
        "remote.log.delete.on.disable",
        Boolean,
        "false",
        Rule::Any,
        "",
        "Delete tiered data when tiered storage is turned off for the topic.",
    ),
    entry(
        "remote.storage.enable",
        Boolean,
        "false",
        Rule::Any,
        "",
        "Tiered storage for the topic (not supported by Spool).",
    ),
    entry(
        "retention.bytes",
        Long,
        "-1",
        Rule::Any,
        "",
        "Largest size of a partition before old segments are deleted; -1 means no limit.",
    ),
    entry(
        "retention.ms",
        Long,
        "604800000",
        Rule::AtLeast(-1),
        "[-1,...]",
        "Age after which old segments are deleted; -1 means no limit.",
    ),
    entry(
        "segment.bytes",
        Int,
        "1073741824",
        Rule::AtLeast(1_048_576),
        "[1048576,...]",
        "Size at which a new segment is started.",
    ),
    entry(
        "segment.index.bytes",
        Int,
        "10485760",
        Rule::AtLeast(4),
        "[4,...]",
        "Largest size of an offset index file.",
    ),
    entry(
        "segment.jitter.ms",
        Long,
        "0",
        Rule::AtLeast(0),
        "[0,...]",
        "Random jitter subtracted from segment.ms to spread rolls.",
    ),
    entry(
        "segment.ms",
        Long,
        "604800000",
        Rule::AtLeast(1),
        "[1,...]",
        "Age at which a new segment is started even if the current one is not full.",
    ),
    entry(
        "unclean.leader.election.enable",
        Boolean,
        "false",
        Rule::Any,
        "",
        "Let an out-of-sync replica become leader, at the cost of data loss.",
    ),
];

/// Every topic config, sorted by name.
pub fn catalogue() -> &'static [ConfigEntry] {
    CATALOGUE
}

/// The catalogue entry of `name`.
pub fn entry_for(name: &str) -> Option<&'static ConfigEntry> {
    CATALOGUE.iter().find(|e| e.name == name)
}

/// Checks one config as Kafka does: the name must be a topic config and the value must parse
/// as its type and satisfy its range or enumeration. The error is Kafka's message.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let entry = entry_for(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    let v = value.trim();
    let invalid = |why: String| format!("Invalid value {value} for configuration {name}: {why}");
    let not_a = |kind: ConfigKind| invalid(format!("Not a number of type {}", kind.name()));
    match entry.kind {
        Long => {
            let n: i64 = v.parse().map_err(|_| not_a(Long))?;
            check_range(entry.rule, n).map_err(invalid)
        }
        Int => {
            let n: i32 = v.parse().map_err(|_| not_a(Int))?;
            check_range(entry.rule, i64::from(n)).map_err(invalid)
        }
        Double => {
            let n: f64 = v.parse().map_err(|_| not_a(Double))?;
            match entry.rule {
                Rule::BetweenF(min, _) if n.is_nan() || n < min => {
                    Err(invalid(format!("Value must be no less than {min}")))
                }
                Rule::BetweenF(_, max) if n > max => {
                    Err(invalid(format!("Value must be no more than {max}")))
                }
                _ => Ok(()),
            }
        }
        Boolean => {
            if !(v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false")) {
                return Err(invalid("Expected value to be either true or false".into()));
            }
            // Spool has no tiered storage; Kafka refuses the same when its broker lacks it.
            if name == "remote.storage.enable" && v.eq_ignore_ascii_case("true") {
                return Err("Tiered Storage functionality is disabled in the broker. \
                            Topic cannot be configured with remote log storage."
                    .into());
            }
            Ok(())
        }
        Str => match entry.rule {
            Rule::OneOf(allowed) if !allowed.contains(&v) => Err(invalid(format!(
                "String must be one of: {}",
                allowed.join(", ")
            ))),
            _ => Ok(()),
        },
        List => {
            let items: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            match entry.rule {
                Rule::ListOf(allowed) => {
                    if let Some(bad) = items.iter().find(|i| !allowed.contains(i)) {
                        // Kafka checks list items one by one and names the item.
                        return Err(format!(
                            "Invalid value {bad} for configuration {name}: String must be one of: {}",
                            allowed.join(", ")
                        ));
                    }
                    Ok(())
                }
                Rule::ThrottledReplicas => {
                    let pair = |s: &str| {
                        s.split_once(':').is_some_and(|(p, b)| {
                            p.trim().parse::<i32>().is_ok() && b.trim().parse::<i32>().is_ok()
                        })
                    };
                    let ok = items == ["*"] || items.iter().all(|i| pair(i));
                    if !ok {
                        return Err(invalid(format!(
                            "{name} must be the literal '*' or a list of replicas in the \
                             following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                        )));
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        }
        ConfigKind::Class | ConfigKind::Password => Ok(()),
    }
}

fn check_range(rule: Rule, n: i64) -> Result<(), String> {
    match rule {
        Rule::AtLeast(min) if n < min => Err(format!("Value must be at least {min}")),
        Rule::Between(min, _) if n < min => Err(format!("Value must be no less than {min}")),
        Rule::Between(_, max) if n > max => Err(format!("Value must be no more than {max}")),
        Rule::GzipLevel if n != -1 && !(1..=9).contains(&n) => {
            Err("Value must be between 1 and 9".into())
        }
        _ => Ok(()),
    }
}

/// Checks a whole set of topic configs: each one, then the constraints between them.
/// The error names the offending config and gives Kafka's message.
pub fn validate_all(configs: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    for (k, v) in configs {
        validate(k, v).map_err(|reason| (k.clone(), reason))?;
    }
    let long = |k: &str| configs.get(k).and_then(|v| v.trim().parse::<i64>().ok());
    let min_lag = long("min.compaction.lag.ms").unwrap_or(0);
    let max_lag = long("max.compaction.lag.ms").unwrap_or(i64::MAX);
    if min_lag > max_lag {
        return Err((
            "min.compaction.lag.ms".into(),
            format!(
                "conflict topic config setting min.compaction.lag.ms ({min_lag}) > \
                 max.compaction.lag.ms ({max_lag})"
            ),
        ));
    }
    Ok(())
}

/// Checks a topic name as Kafka does: 1 to 249 characters of ASCII letters, digits, `.`, `_`
/// and `-`, and not `.` or `..`. The error is Kafka's message.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII \
             alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The log settings for a topic with these explicitly set configs over Kafka's defaults.
pub fn log_config(configs: &BTreeMap<String, String>) -> LogConfig {
    log_config_over(&LogConfig::default(), configs)
}

/// The log settings for a topic with these explicitly set configs over `base` (e.g. broker-wide
/// defaults). Values are expected to be valid; invalid ones leave the base value.
pub fn log_config_over(base: &LogConfig, configs: &BTreeMap<String, String>) -> LogConfig {
    let mut c = *base;
    let get = |k: &str| configs.get(k).map(|v| v.trim());
    let long = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
    if let Some(v) = long("segment.bytes").filter(|&v| v > 0) {
        c.segment_bytes = v as u64;
    }
    if let Some(v) = long("segment.ms") {
        c.segment_ms = v;
    }
    if let Some(v) = long("retention.ms") {
        c.retention_ms = v;
    }
    if let Some(v) = long("retention.bytes") {
        c.retention_bytes = v;
    }
    if let Some(v) = long("index.interval.bytes").and_then(|v| u32::try_from(v).ok()) {
        c.index_interval_bytes = v;
    }
    if let Some(v) = long("max.message.bytes").and_then(|v| u32::try_from(v).ok()) {
        c.max_message_bytes = v;
    }
    if let Some(v) = get("message.timestamp.type") {
        c.log_append_time = v == "LogAppendTime";
    }
    // Long.MAX_VALUE is Kafka's way of saying "never".
    if let Some(v) = long("flush.messages") {
        c.flush_messages = (v != i64::MAX && v > 0).then_some(v as u64);
    }
    if let Some(v) = long("flush.ms") {
        c.flush_ms = (v != i64::MAX && v >= 0).then_some(v as u64);
    }
    // Without "delete" in the cleanup policy Kafka never deletes by retention.
    if let Some(policy) = get("cleanup.policy") {
        if !policy.split(',').any(|p| p.trim() == "delete") {
            c.retention_ms = -1;
            c.retention_bytes = -1;
        }
    }
    c
}

/// The codec the topic forces (`compression.type`); `None` for `producer` (keep as sent).
pub fn compression_type(configs: &BTreeMap<String, String>) -> Option<Compression> {
    match configs.get("compression.type").map(|v| v.trim()) {
        None | Some("producer") => None,
        Some("uncompressed") => Some(Compression::None),
        Some(name) => Compression::from_name(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_sorted_and_defaults_validate() {
        let names: Vec<_> = catalogue().iter().map(|e| e.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        for e in catalogue() {
            assert_eq!(validate(e.name, e.default), Ok(()), "{}", e.name);
        }
        assert_eq!(log_config(&BTreeMap::new()), LogConfig::default());
    }

    #[test]
    fn validation_table() {
        let ok = [
            ("retention.ms", "-1"),
            ("retention.ms", " 1000 "),
            ("retention.bytes", "-5"),
            ("segment.bytes", "1048576"),
            ("cleanup.policy", "compact,delete"),
            ("cleanup.policy", ""),
            ("compression.type", "zstd"),
            ("compression.gzip.level", "-1"),
            ("compression.gzip.level", "9"),
            ("compression.zstd.level", "-131072"),
            ("message.timestamp.type", "LogAppendTime"),
            ("min.cleanable.dirty.ratio", "1"),
            ("preallocate", "TRUE"),
            ("leader.replication.throttled.replicas", "*"),
            ("follower.replication.throttled.replicas", "0:1, 1:2"),
            ("flush.messages", "1"),
        ];
        for (k, v) in ok {
            assert_eq!(validate(k, v), Ok(()), "{k}={v}");
        }
        let bad = [
            ("retention.ms", "abc", "Invalid value abc for configuration retention.ms: Not a number of type LONG"),
            ("retention.ms", "-2", "Invalid value -2 for configuration retention.ms: Value must be at least -1"),
            ("segment.bytes", "1000", "Invalid value 1000 for configuration segment.bytes: Value must be at least 1048576"),
            ("segment.bytes", "4294967296", "Invalid value 4294967296 for configuration segment.bytes: Not a number of type INT"),
            ("cleanup.policy", "remove", "Invalid value remove for configuration cleanup.policy: String must be one of: compact, delete"),
            ("compression.type", "none", "Invalid value none for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"),
            ("compression.gzip.level", "0", "Invalid value 0 for configuration compression.gzip.level: Value must be between 1 and 9"),
            ("compression.lz4.level", "18", "Invalid value 18 for configuration compression.lz4.level: Value must be no more than 17"),
            ("message.timestamp.type", "createtime", "Invalid value createtime for configuration message.timestamp.type: String must be one of: CreateTime, LogAppendTime"),
            ("min.cleanable.dirty.ratio", "1.5", "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1"),
            ("preallocate", "yes", "Invalid value yes for configuration preallocate: Expected value to be either true or false"),
            ("flush.messages", "0", "Invalid value 0 for configuration flush.messages: Value must be at least 1"),
            ("nope.config", "1", "Unknown topic config name: nope.config"),
        ];
        for (k, v, msg) in bad {
            assert_eq!(validate(k, v), Err(msg.to_string()), "{k}={v}");
        }
        assert!(validate("leader.replication.throttled.replicas", "0-1").is_err());
        assert!(validate("remote.storage.enable", "true").is_err());
    }

    #[test]
    fn cross_config_constraints() {
        let mut c = BTreeMap::new();
        c.insert("min.compaction.lag.ms".to_string(), "10".to_string());
        c.insert("max.compaction.lag.ms".to_string(), "5".to_string());
        assert_eq!(validate_all(&c).unwrap_err().0, "min.compaction.lag.ms");
        c.insert("max.compaction.lag.ms".to_string(), "10".to_string());
        assert_eq!(validate_all(&c), Ok(()));
    }

    #[test]
    fn topic_names() {
        for ok in ["a", "orders.v1", "A_b-c", &"x".repeat(249)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn maps_configs_to_log_config() {
        let configs: BTreeMap<String, String> = [
            ("segment.bytes", "2097152"),
            ("segment.ms", "1000"),
            ("retention.ms", "-1"),
            ("retention.bytes", "5000000"),
            ("index.interval.bytes", "100"),
            ("max.message.bytes", "2000"),
            ("message.timestamp.type", "LogAppendTime"),
            ("flush.messages", "1"),
            ("flush.ms", "9223372036854775807"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = log_config(&configs);
        assert_eq!(c.segment_bytes, 2_097_152);
        assert_eq!(c.segment_ms, 1000);
        assert_eq!((c.retention_ms, c.retention_bytes), (-1, 5_000_000));
        assert_eq!((c.index_interval_bytes, c.max_message_bytes), (100, 2000));
        assert!(c.log_append_time);
        assert_eq!((c.flush_messages, c.flush_ms), (Some(1), None));
        let compact: BTreeMap<_, _> =
            [("cleanup.policy".to_string(), "compact".to_string())].into();
        assert_eq!(log_config(&compact).retention_ms, -1);
        let zstd: BTreeMap<_, _> = [("compression.type".to_string(), "zstd".to_string())].into();
        assert_eq!(compression_type(&zstd), Some(Compression::Zstd));
        assert_eq!(compression_type(&BTreeMap::new()), None);
    }
}
