//! Reads a topic from the earliest offset until it is idle and prints a summary.
//!
//! ```text
//! cargo run -p spool-client --example read -- 127.0.0.1:9092 my-topic
//! ```

use std::time::Duration;

use spool_client::{AutoOffsetReset, Client, ClientConfig, ConsumerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().ok_or("usage: read BOOTSTRAP TOPIC")?;
    let client = Client::connect(ClientConfig::new(&bootstrap)).await?;
    let partitions = client.topic(&topic).await?.partition_count();
    let mut consumer = client.consumer(ConsumerConfig {
        auto_offset_reset: AutoOffsetReset::Earliest,
        ..Default::default()
    });
    consumer.assign((0..partitions).map(|p| (topic.clone(), p)).collect());
    let mut count = 0usize;
    let mut last = None;
    loop {
        let records = consumer.poll(Duration::from_secs(2)).await?;
        if records.is_empty() {
            break;
        }
        count += records.len();
        last = records.last().cloned();
    }
    println!("{count} records in {partitions} partitions");
    if let Some(r) = last {
        println!(
            "last: {}-{}@{} key={:?} value={:?} headers={:?}",
            r.topic,
            r.partition,
            r.offset,
            r.key.as_deref().map(String::from_utf8_lossy),
            r.value.as_deref().map(String::from_utf8_lossy),
            r.headers
        );
    }
    Ok(())
}
