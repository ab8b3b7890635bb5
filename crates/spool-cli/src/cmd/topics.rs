//! `spool topics`: create, list, describe, delete.

use anyhow::Context;
use spool_client::{ConfigResource, NewTopic};

use super::common::{key_value, Connect};

/// Flags of `spool topics`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions (-1: the broker's default).
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replication factor (-1: the broker's default).
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// Topic config, e.g. --config retention.ms=60000 (repeatable).
        #[arg(short, long = "config", value_parser = key_value, value_name = "KEY=VALUE")]
        configs: Vec<(String, String)>,
    },
    /// List topic names.
    List,
    /// Show partitions, leaders and non-default configs.
    Describe {
        /// Topics to describe (all when none).
        names: Vec<String>,
    },
    /// Delete topics.
    Delete {
        /// Topics to delete.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Grow a topic to a new total partition count.
    AddPartitions {
        /// Topic name.
        name: String,
        /// New total number of partitions.
        #[arg(short, long)]
        partitions: i32,
    },
}

/// Runs the action against the cluster.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.connect.client().await?;
    let admin = client.admin();
    match args.action {
        Action::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut topic = NewTopic::new(&name, partitions, replication_factor);
            for (k, v) in configs {
                topic = topic.config(k, v);
            }
            // The client's errors already name the operation and the topic.
            admin.create_topics(vec![topic]).await?;
            outln!("Created topic {name}.")?;
        }
        Action::List => {
            for t in admin.list_topics().await.context("cannot list topics")? {
                outln!("{}", t.name)?;
            }
        }
        Action::Describe { names } => {
            let names: Vec<String> = if names.is_empty() {
                let all = admin.list_topics().await.context("cannot list topics")?;
                all.into_iter().map(|t| t.name).collect()
            } else {
                names
            };
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let described = admin
                .describe_topics(&refs)
                .await
                .context("cannot describe topics")?;
            for t in described {
                let configs = admin
                    .describe_configs(ConfigResource::Topic(t.name.clone()))
                    .await
                    .unwrap_or_default();
                let set: Vec<String> = configs
                    .iter()
                    .filter(|c| !c.is_default())
                    .map(|c| format!("{}={}", c.name, c.value.as_deref().unwrap_or("")))
                    .collect();
                let rf = t.partitions.first().map_or(0, |p| p.replicas.len());
                outln!(
                    "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                    t.name,
                    t.id,
                    t.partitions.len(),
                    rf,
                    set.join(",")
                )?;
                for p in &t.partitions {
                    outln!(
                        "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                        t.name,
                        p.partition,
                        p.leader,
                        join(&p.replicas),
                        join(&p.isr)
                    )?;
                }
            }
        }
        Action::Delete { names } => {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            admin.delete_topics(&refs).await?;
            for n in names {
                outln!("Deleted topic {n}.")?;
            }
        }
        Action::AddPartitions { name, partitions } => {
            admin.create_partitions(&name, partitions).await?;
            outln!("Topic {name} now has {partitions} partitions.")?;
        }
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
