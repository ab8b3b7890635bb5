//! `spool groups`: list, describe, reset offsets, delete consumer groups.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use spool_client::{Admin, OffsetSpec};

use super::common::Connect;

/// Flags of `spool groups`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List groups with their state.
    List,
    /// State, members and, per partition, committed offset, log end offset and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets (a dry run unless --execute). The group must have no
    /// active members.
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose partitions to reset, or `TOPIC:P,P...` for some of them, as in Kafka's
        /// tool (default: every topic the group has offsets for).
        #[arg(short, long)]
        topic: Option<String>,
        /// Reset to the log start.
        #[arg(long, group = "to")]
        to_earliest: bool,
        /// Reset to the log end.
        #[arg(long, group = "to")]
        to_latest: bool,
        /// Reset to this offset.
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
        /// Reset to the first offset at or after this timestamp (ms since the epoch).
        #[arg(long, group = "to")]
        to_timestamp: Option<i64>,
        /// Apply the plan (without it, only print it).
        #[arg(long)]
        execute: bool,
    },
    /// Delete groups that have no active members, with their offsets.
    Delete {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

/// Runs the action.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.connect.client().await?;
    let admin = client.admin();
    match args.action {
        Action::List => {
            for g in admin.list_groups().await? {
                outln!("{}\t{}", g.group_id, g.state)?;
            }
        }
        Action::Describe { group } => describe(&admin, &group).await?,
        Action::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_timestamp,
            execute,
        } => {
            let spec = match (to_earliest, to_latest, to_offset, to_timestamp) {
                (true, ..) => Target::Spec(OffsetSpec::Earliest),
                (_, true, ..) => Target::Spec(OffsetSpec::Latest),
                (_, _, Some(o), _) => Target::Offset(o),
                (_, _, _, Some(ts)) => Target::Spec(OffsetSpec::Timestamp(ts)),
                _ => anyhow::bail!(
                    "say where to: --to-earliest, --to-latest, --to-offset N or --to-timestamp MS"
                ),
            };
            reset(&admin, &group, topic.as_deref(), spec, execute).await?;
        }
        Action::Delete { groups } => {
            let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
            admin.delete_groups(&refs).await?;
            for g in groups {
                outln!("Deleted group {g}.")?;
            }
        }
    }
    Ok(())
}

async fn describe(admin: &Admin, group: &str) -> anyhow::Result<()> {
    let d = admin.describe_group(group).await?;
    let offsets = admin.group_offsets(group).await?;
    outln!(
        "Group: {}\tState: {}\tProtocol: {}\tMembers: {}",
        d.group_id,
        d.state,
        if d.protocol.is_empty() {
            "-"
        } else {
            &d.protocol
        },
        d.members.len()
    )?;
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &d.members {
        outln!(
            "\tMember: {}\tClient: {}\tHost: {}{}",
            m.member_id,
            m.client_id,
            m.client_host,
            m.group_instance_id
                .as_ref()
                .map(|i| format!("\tInstance: {i}"))
                .unwrap_or_default()
        )?;
        for tp in &m.assignment {
            owner.insert(tp.clone(), m.member_id.clone());
        }
    }
    let partitions: BTreeSet<(String, i32)> = offsets
        .keys()
        .cloned()
        .chain(owner.keys().cloned())
        .collect();
    if partitions.is_empty() {
        return Ok(());
    }
    let specs: Vec<(&str, i32, OffsetSpec)> = partitions
        .iter()
        .map(|(t, p)| (t.as_str(), *p, OffsetSpec::Latest))
        .collect();
    let ends = admin.list_offsets(&specs).await.unwrap_or_default();
    outln!("\nTOPIC\tPARTITION\tCURRENT-OFFSET\tLOG-END-OFFSET\tLAG\tCONSUMER-ID")?;
    for tp in &partitions {
        let current = offsets.get(tp).map(|c| c.offset);
        let end = ends.get(tp).map(|l| l.offset);
        let lag = match (current, end) {
            (Some(c), Some(e)) => (e - c).max(0).to_string(),
            _ => "-".into(),
        };
        outln!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            tp.0,
            tp.1,
            current.map_or("-".into(), |c| c.to_string()),
            end.map_or("-".into(), |e| e.to_string()),
            lag,
            owner.get(tp).map_or("-", String::as_str)
        )?;
    }
    Ok(())
}

enum Target {
    Spec(OffsetSpec),
    Offset(i64),
}

/// `TOPIC` or `TOPIC:P,P...` (Kafka's `--topic` syntax for reset-offsets). Topic names cannot
/// contain `:`, so the last one splits.
fn parse_topic_partitions(arg: &str) -> anyhow::Result<(&str, Option<Vec<i32>>)> {
    let Some((topic, list)) = arg.rsplit_once(':') else {
        return Ok((arg, None));
    };
    let partitions = list
        .split(',')
        .map(|p| p.trim().parse::<i32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| anyhow::anyhow!("{arg:?} is not TOPIC or TOPIC:PARTITION[,PARTITION...]"))?;
    Ok((topic, Some(partitions)))
}

async fn reset(
    admin: &Admin,
    group: &str,
    topic: Option<&str>,
    target: Target,
    execute: bool,
) -> anyhow::Result<()> {
    let d = admin.describe_group(group).await.ok();
    if let Some(d) = &d {
        anyhow::ensure!(
            d.members.is_empty(),
            "group {group} has {} active member(s); stop them before resetting offsets",
            d.members.len()
        );
    }
    // Partitions: the named topic's, or those the group has offsets for.
    let partitions: Vec<(String, i32)> = match topic {
        Some(arg) => {
            let (t, chosen) = parse_topic_partitions(arg)?;
            let info = admin
                .client()
                .topic(t)
                .await
                .with_context(|| format!("topic {t:?} is not available"))?;
            let count = info.partition_count();
            match chosen {
                Some(ps) => {
                    if let Some(p) = ps.iter().find(|p| !(0..count).contains(*p)) {
                        anyhow::bail!("topic {t:?} has no partition {p} (it has {count})");
                    }
                    ps.into_iter().map(|p| (t.to_string(), p)).collect()
                }
                None => (0..count).map(|p| (t.to_string(), p)).collect(),
            }
        }
        None => admin.group_offsets(group).await?.into_keys().collect(),
    };
    anyhow::ensure!(
        !partitions.is_empty(),
        "group {group} has no committed offsets; name a topic with --topic"
    );
    let plan: Vec<((String, i32), i64)> = match target {
        Target::Offset(o) => partitions.into_iter().map(|tp| (tp, o)).collect(),
        Target::Spec(spec) => {
            let specs: Vec<(&str, i32, OffsetSpec)> = partitions
                .iter()
                .map(|(t, p)| (t.as_str(), *p, spec))
                .collect();
            let found = admin.list_offsets(&specs).await?;
            let mut plan = Vec::new();
            for tp in partitions {
                let offset = match found.get(&tp).map(|l| l.offset) {
                    Some(o) if o >= 0 => o,
                    // No record at or after the timestamp: the log end, as Kafka's tool does.
                    _ => {
                        let end = admin
                            .list_offsets(&[(tp.0.as_str(), tp.1, OffsetSpec::Latest)])
                            .await?;
                        end.get(&tp).map_or(0, |l| l.offset)
                    }
                };
                plan.push((tp, offset));
            }
            plan
        }
    };
    outln!("TOPIC\tPARTITION\tNEW-OFFSET")?;
    for ((t, p), o) in &plan {
        outln!("{t}\t{p}\t{o}")?;
    }
    if execute {
        admin.alter_group_offsets(group, &plan).await?;
        outln!("Reset {} partition(s) of group {group}.", plan.len())?;
    } else {
        outln!("Dry run: nothing changed. Add --execute to apply.")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_argument_may_name_partitions() {
        assert_eq!(parse_topic_partitions("t").unwrap(), ("t", None));
        assert_eq!(
            parse_topic_partitions("t:0,2").unwrap(),
            ("t", Some(vec![0, 2]))
        );
        assert!(parse_topic_partitions("t:x").is_err());
        assert!(parse_topic_partitions("t:").is_err());
    }
}
