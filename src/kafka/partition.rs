//! The partitioner cassa shares with Kafka's clients (`domain::partition`), and the check
//! that librdkafka's `murmur2_random` agrees with it.

pub use crate::domain::partition::{murmur2, partition_for};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::distributions::Alphanumeric;
    use rand::Rng;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::ClientConfig;

    use super::partition_for;
    use crate::kafka::embedded::EmbeddedKafka;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn librdkafka_murmur2_random_agrees_with_partition_for() {
        const TOPIC: &str = "partitioner-check";
        const PARTITIONS: i32 = 6;
        let kafka = EmbeddedKafka::start(None, &[(TOPIC, PARTITIONS)])
            .await
            .unwrap();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "5000")
            .set("linger.ms", "0")
            .create()
            .unwrap();

        let mut rng = rand::thread_rng();
        let keys: Vec<String> = (0..50)
            .map(|_| {
                let len = rng.gen_range(1..40);
                (&mut rng)
                    .sample_iter(&Alphanumeric)
                    .take(len)
                    .map(char::from)
                    .collect()
            })
            .collect();

        for key in &keys {
            let record = FutureRecord::to(TOPIC).key(key.as_str()).payload("p");
            let (partition, _offset) = producer
                .send(record, Duration::from_secs(5))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
            assert_eq!(
                partition,
                partition_for(key.as_bytes(), PARTITIONS),
                "key {key:?}"
            );
        }
    }
}
