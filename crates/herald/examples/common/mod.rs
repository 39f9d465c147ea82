//! Shared by the examples: create the topics up front, as the seeds' setup script does,
//! so consumers that subscribe before the first event find them.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// Creates `topics` (3 partitions, the cluster's replication default) unless they exist.
pub(crate) async fn ensure_topics(brokers: &str, topics: &[&str]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let new: Vec<NewTopic<'_>> = topics.iter().map(|t| NewTopic::new(t, 3, TopicReplication::Fixed(-1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic} on {brokers}: {code}"),
        }
    }
    Ok(())
}
