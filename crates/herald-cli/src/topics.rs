//! `herald topics list|create|describe|delete|alter`: topic administration for Herald or
//! any Kafka cluster, through the Kafka admin API (rdkafka's `AdminClient`).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::RDKafkaErrorCode;
use serde_json::json;

use crate::cluster::{ClusterArgs, parse_setting, print_table};

/// `herald topics ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct TopicsArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TopicsCommand {
    /// Topics and their partition counts.
    List {
        /// Include internal topics (such as __consumer_offsets).
        #[arg(long)]
        all: bool,
    },
    /// Create a topic.
    Create {
        /// The topic.
        name: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Replication factor (-1: the cluster's default).
        #[arg(long, default_value_t = -1)]
        replication_factor: i32,
        /// A topic setting, e.g. `retention.ms=86400000` (repeatable).
        #[arg(long = "config", value_parser = parse_setting)]
        configs: Vec<(String, String)>,
    },
    /// Partitions (leader, offsets, messages) and the settings that differ from defaults.
    Describe {
        /// The topic.
        name: String,
    },
    /// Delete a topic and its data.
    Delete {
        /// The topic.
        name: String,
    },
    /// Add partitions or change settings.
    Alter {
        /// The topic.
        name: String,
        /// New partition count (only growing is possible).
        #[arg(long)]
        partitions: Option<usize>,
        /// A topic setting to set, e.g. `retention.ms=3600000` (repeatable).
        #[arg(long = "config", value_parser = parse_setting)]
        configs: Vec<(String, String)>,
    },
}

pub(crate) fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    let cluster = args.cluster;
    match args.command {
        TopicsCommand::List { all } => list(&cluster, all),
        TopicsCommand::Create { name, partitions, replication_factor, configs } => {
            runtime.block_on(create(&cluster, &name, partitions, replication_factor, &configs))
        }
        TopicsCommand::Describe { name } => runtime.block_on(describe(&cluster, &name)),
        TopicsCommand::Delete { name } => runtime.block_on(delete(&cluster, &name)),
        TopicsCommand::Alter { name, partitions, configs } => {
            runtime.block_on(alter(&cluster, &name, partitions, &configs))
        }
    }
}

fn options(cluster: &ClusterArgs) -> AdminOptions {
    AdminOptions::new().request_timeout(Some(cluster.timeout())).operation_timeout(Some(cluster.timeout()))
}

fn list(cluster: &ClusterArgs, all: bool) -> anyhow::Result<()> {
    let consumer = cluster.consumer()?;
    let metadata = cluster.metadata(&consumer, None)?;
    let mut topics: Vec<(String, usize)> = metadata
        .topics()
        .iter()
        .filter(|t| all || !t.name().starts_with("__"))
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect();
    topics.sort();
    if cluster.json {
        let list: Vec<_> =
            topics.iter().map(|(name, partitions)| json!({"name": name, "partitions": partitions})).collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        let rows: Vec<Vec<String>> = topics.iter().map(|(n, p)| vec![n.clone(), p.to_string()]).collect();
        print_table(&["TOPIC", "PARTITIONS"], &rows);
    }
    Ok(())
}

/// Fails unless `name` exists (the metadata of an unknown topic comes back with an error).
fn require_topic(cluster: &ClusterArgs, name: &str) -> anyhow::Result<rdkafka::consumer::BaseConsumer> {
    let consumer = cluster.consumer()?;
    let metadata = cluster.metadata(&consumer, Some(name))?;
    match metadata.topics().iter().find(|t| t.name() == name) {
        Some(topic) if topic.error().is_none() && !topic.partitions().is_empty() => Ok(consumer),
        _ => bail!("topic {name} does not exist"),
    }
}

async fn create(
    cluster: &ClusterArgs,
    name: &str,
    partitions: i32,
    replication: i32,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    let admin = cluster.admin()?;
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = admin.create_topics([&topic], &options(cluster)).await.context("creating the topic")?;
    refused(results, &format!("cannot create topic {name}"))?;
    report(
        cluster,
        json!({"created": name, "partitions": partitions}),
        &format!("created topic {name} ({partitions} partitions)"),
    );
    Ok(())
}

async fn describe(cluster: &ClusterArgs, name: &str) -> anyhow::Result<()> {
    let consumer = require_topic(cluster, name)?;
    let metadata = cluster.metadata(&consumer, Some(name))?;
    let topic = metadata.topics().iter().find(|t| t.name() == name).context("the topic vanished")?;
    let mut partitions = Vec::new();
    for p in topic.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(name, p.id(), cluster.timeout())
            .with_context(|| format!("reading the offsets of {name}/{}", p.id()))?;
        partitions.push((p.id(), p.leader(), low, high));
    }
    partitions.sort();
    let settings = settings(cluster, &cluster.admin()?, name, false).await?;
    if cluster.json {
        let parts: Vec<_> = partitions
            .iter()
            .map(|(id, leader, low, high)| {
                json!({"partition": id, "leader": leader, "start_offset": low, "end_offset": high, "messages": high - low})
            })
            .collect();
        println!("{}", json!({"name": name, "partitions": parts, "configs": settings}));
    } else {
        println!(
            "topic {name}: {} partitions, {} messages",
            partitions.len(),
            partitions.iter().map(|p| p.3 - p.2).sum::<i64>()
        );
        let rows: Vec<Vec<String>> = partitions
            .iter()
            .map(|(id, leader, low, high)| {
                vec![id.to_string(), leader.to_string(), low.to_string(), high.to_string(), (high - low).to_string()]
            })
            .collect();
        print_table(&["PARTITION", "LEADER", "START", "END", "MESSAGES"], &rows);
        if !settings.is_empty() {
            println!();
            let rows: Vec<Vec<String>> = settings.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect();
            print_table(&["SETTING", "VALUE"], &rows);
        }
    }
    Ok(())
}

async fn delete(cluster: &ClusterArgs, name: &str) -> anyhow::Result<()> {
    require_topic(cluster, name)?;
    let admin = cluster.admin()?;
    let results = admin.delete_topics(&[name], &options(cluster)).await.context("deleting the topic")?;
    refused(results, &format!("cannot delete topic {name}"))?;
    report(cluster, json!({"deleted": name}), &format!("deleted topic {name}"));
    Ok(())
}

async fn alter(
    cluster: &ClusterArgs,
    name: &str,
    partitions: Option<usize>,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    if partitions.is_none() && configs.is_empty() {
        bail!("nothing to change: give --partitions or --config");
    }
    require_topic(cluster, name)?;
    let admin = cluster.admin()?;
    if let Some(count) = partitions {
        let results = admin
            .create_partitions([&NewPartitions::new(name, count)], &options(cluster))
            .await
            .context("adding partitions")?;
        refused(results, &format!("cannot grow {name} to {count} partitions"))?;
    }
    if !configs.is_empty() {
        // AlterConfigs replaces a topic's whole set: start from the settings it has now.
        let mut settings = settings(cluster, &admin, name, true).await?;
        for (key, value) in configs {
            settings.insert(key.clone(), value.clone());
        }
        let mut change = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (key, value) in &settings {
            change = change.set(key, value);
        }
        let results = admin.alter_configs([&change], &options(cluster)).await.context("changing settings")?;
        refused(results, &format!("cannot change the settings of {name}"))?;
    }
    report(cluster, json!({"altered": name}), &format!("altered topic {name}"));
    Ok(())
}

/// The first failure among an admin call's per-resource results (one resource per call
/// here), as `what: <broker's error>`.
fn refused<T, N>(results: Vec<Result<T, (N, RDKafkaErrorCode)>>, what: &str) -> anyhow::Result<()> {
    match results.into_iter().find_map(Result::err) {
        Some((_, code)) => bail!("{what}: {code}"),
        None => Ok(()),
    }
}

/// The topic's settings that differ from the defaults (only the writable ones if asked).
async fn settings(
    cluster: &ClusterArgs,
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    writable_only: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    let configs = admin
        .describe_configs([&ResourceSpecifier::Topic(name)], &options(cluster))
        .await
        .context("reading the topic's settings")?;
    let mut settings = BTreeMap::new();
    for resource in configs {
        let resource = resource.map_err(|code| anyhow::anyhow!("reading the settings of {name}: {code}"))?;
        // For an alter, only the topic's own overrides: values from the broker's
        // configuration are not copied onto the topic, nor secrets (sent without a value).
        let keep = |e: &rdkafka::admin::ConfigEntry| {
            !e.is_default
                && (!writable_only || (e.source == ConfigSource::DynamicTopic && !e.is_read_only && !e.is_sensitive))
        };
        for entry in resource.entries.into_iter().filter(keep) {
            settings.insert(entry.name, entry.value.unwrap_or_default());
        }
    }
    Ok(settings)
}

fn report(cluster: &ClusterArgs, json: serde_json::Value, text: &str) {
    if cluster.json {
        println!("{json}");
    } else {
        println!("{text}");
    }
}
