//! Kafka: the embedded broker, the idempotent producer and `OutboxRelay`, the
//! `ApplicationDispatcher` (dispatcher role) and the `payments` consumer (proxy role,
//! and ownership of payments by partition). `KafkaBridge::start` wires them for
//! `cassa serve`.

pub mod closing;
pub mod dispatcher;
pub mod embedded;
pub mod partition;
pub mod proxy;
pub mod relay;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, Producer as _};
use tokio::sync::watch;

use crate::actors::PaymentRegistry;
use crate::config::{GroupProtocol, KafkaClientArgs, KafkaSettings, Role};
use crate::intake::Intake;
use crate::store::Store;
use embedded::EmbeddedKafka;

/// Record header with the payment's row version, on events cassa's relay publishes
/// (not part of the event contract).
pub const VERSION_HEADER: &str = "cassa-version";

/// The context of every cassa Kafka client: it holds the embedded broker (if any), and
/// rdkafka drops a client's context only after closing the client, so the in-process
/// broker always outlives its clients (a consumer closing against a vanished broker
/// would block forever).
#[derive(Clone, Default)]
pub struct BrokerGuard(pub Option<Arc<EmbeddedKafka>>);

impl rdkafka::ClientContext for BrokerGuard {}
impl rdkafka::consumer::ConsumerContext for BrokerGuard {}

/// cassa's producer.
pub type Producer = FutureProducer<BrokerGuard>;

/// Where the consumers put the records they refuse: the dead-letter topic, each record
/// as it came with the reason and its origin in headers.
#[derive(Clone)]
pub struct DeadLetters {
    pub producer: Producer,
    pub topic: String,
}

impl DeadLetters {
    /// Writes `message` to the dead-letter topic with `reason` (retried until
    /// acknowledged: the consumer does not move past a refused record it could lose).
    pub async fn send(&self, message: &rdkafka::message::BorrowedMessage<'_>, reason: &str) {
        use rdkafka::message::{Header, Message, OwnedHeaders};
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        loop {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "cassa-reason",
                    value: Some(reason),
                })
                .insert(Header {
                    key: "cassa-source-topic",
                    value: Some(message.topic()),
                })
                .insert(Header {
                    key: "cassa-source-partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "cassa-source-offset",
                    value: Some(&offset),
                });
            let mut record =
                rdkafka::producer::FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            match self.producer.send(record, Duration::from_secs(0)).await {
                Ok(_) => return,
                Err((e, _)) => {
                    tracing::warn!(error = %e, "cannot write the dead-letter record; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Where cassa's Kafka is and how its topics are laid out.
pub struct KafkaSetup {
    /// The embedded broker (when no brokers were configured), shared by the clients.
    pub embedded: BrokerGuard,
    pub bootstrap: String,
    pub producer: Producer,
    /// Partitions of the `payments` topic (ownership is by partition).
    pub payments_partitions: i32,
}

/// Running Kafka work; dropping it stops the loops (and the embedded broker).
pub struct KafkaBridge {
    pub setup: KafkaSetup,
    stop: watch::Sender<bool>,
    /// See `proxy::PaymentsRebalance::incremental`.
    incremental: Arc<std::sync::atomic::AtomicU8>,
}

impl KafkaBridge {
    /// The bootstrap address in use.
    pub fn bootstrap(&self) -> &str {
        &self.setup.bootstrap
    }

    /// Whether the `payments` group assigns partitions incrementally (KIP-848's
    /// consumer protocol does; the classic one with cassa's assignors does not): `None`
    /// until the first assignment.
    pub fn incremental_rebalance(&self) -> Option<bool> {
        match self.incremental.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            protocol => Some(protocol == 2),
        }
    }

    /// Stops the consumers and the relay.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

fn base_config(settings: &KafkaSettings, instance: &str, bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", format!("cassa-{instance}"))
        .set("log_level", "4")
        .set("reconnect.backoff.max.ms", "1000");
    // The embedded broker speaks plaintext only: the security settings are for real
    // clusters.
    if settings.external() {
        apply_client_settings(&mut config, &settings.client);
    }
    config
}

/// Security settings and the passthrough properties of `CASSA_KAFKA_*`, onto a client.
pub fn apply_client_settings(config: &mut ClientConfig, client: &KafkaClientArgs) {
    let pairs = [
        ("security.protocol", &client.kafka_security_protocol),
        ("sasl.mechanism", &client.kafka_sasl_mechanism),
        ("sasl.username", &client.kafka_sasl_username),
        ("sasl.password", &client.kafka_sasl_password),
        ("ssl.ca.location", &client.kafka_ssl_ca_location),
    ];
    for (key, value) in pairs {
        if let Some(value) = value {
            // librdkafka wants the protocol in lower case and the mechanism in upper
            // case; the settings accept either.
            let value = match key {
                "security.protocol" => value.to_ascii_lowercase(),
                "sasl.mechanism" => value.to_ascii_uppercase(),
                _ => value.clone(),
            };
            config.set(key, value);
        }
    }
    apply_passthrough(config, client);
}

/// `CASSA_KAFKA_CONFIG`'s properties, applied last so they may override cassa's own.
fn apply_passthrough(config: &mut ClientConfig, client: &KafkaClientArgs) {
    for (key, value) in &client.kafka_config.0 {
        config.set(key, value);
    }
}

/// What a client to a real cluster must be told when the brokers refuse it: the
/// settings to check.
fn unreachable_hint(settings: &KafkaSettings) -> &'static str {
    if settings.client.kafka_sasl_username.is_some()
        || settings.client.kafka_sasl_mechanism.is_some()
    {
        "check CASSA_KAFKA_BROKERS and the credentials (CASSA_KAFKA_SASL_USERNAME, CASSA_KAFKA_SASL_PASSWORD, CASSA_KAFKA_SASL_MECHANISM, CASSA_KAFKA_SECURITY_PROTOCOL)"
    } else {
        "check CASSA_KAFKA_BROKERS, and CASSA_KAFKA_SECURITY_PROTOCOL / CASSA_KAFKA_SASL_* if the cluster requires authentication"
    }
}

/// Connects to the configured brokers (or starts the embedded one), makes sure the
/// topics exist, and builds the idempotent producer.
pub async fn connect(settings: &KafkaSettings, instance: &str) -> anyhow::Result<KafkaSetup> {
    let partitions = settings.partitions;
    let topics = settings.topics.with_partitions(partitions);
    let (embedded, bootstrap) = if !settings.external() {
        let kafka = EmbeddedKafka::start(settings.embedded_port, &topics)
            .await
            .context("cannot start the embedded Kafka broker")?;
        let bootstrap = kafka.bootstrap_servers();
        tracing::info!(%bootstrap, "embedded Kafka broker started (librdkafka mock cluster)");
        (BrokerGuard(Some(Arc::new(kafka))), bootstrap)
    } else {
        (BrokerGuard(None), settings.brokers.trim().to_string())
    };
    let producer: Producer = base_config(settings, instance, &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create_with_context(embedded.clone())
        .context("cannot create the Kafka producer")?;
    if embedded.0.is_none() {
        let brokers = broker_count(&producer).await.with_context(|| {
            format!(
                "cannot reach the Kafka cluster at {bootstrap}: {}",
                unreachable_hint(settings)
            )
        })?;
        let mut missing = Vec::new();
        for (name, partitions) in topics {
            if topic_partitions(&producer, name).await.is_err() {
                missing.push((name, partitions));
            }
        }
        if !missing.is_empty() {
            ensure_topics(settings, instance, &bootstrap, &missing, brokers).await?;
            for (name, _) in &missing {
                wait_for_topic(&producer, name).await?;
            }
        }
        check_topics(settings, instance, &bootstrap, &producer, &topics).await?;
    }
    let payments_partitions = topic_partitions(&producer, &settings.topics.payments).await?;
    Ok(KafkaSetup {
        embedded,
        bootstrap,
        producer,
        payments_partitions,
    })
}

/// Brokers the cluster's metadata lists.
async fn broker_count(producer: &Producer) -> anyhow::Result<usize> {
    let producer = producer.clone();
    let metadata = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(10))
    })
    .await??;
    Ok(metadata.brokers().len())
}

/// Replication of the topics cassa creates: three copies where the cluster has three
/// brokers, so one broker may die without losing an acknowledged event (`acks=all`
/// with two in-sync replicas at least).
pub fn replication_for(brokers: usize) -> (i32, Option<&'static str>) {
    let factor = brokers.clamp(1, 3) as i32;
    (factor, (factor == 3).then_some("2"))
}

/// Refuses existing topics cassa cannot work with: fewer partitions than configured
/// (ownership and ordering are by partition) or a cleanup policy other than `delete`
/// (compaction would drop events of one payment, keyed alike).
async fn check_topics(
    settings: &KafkaSettings,
    instance: &str,
    bootstrap: &str,
    producer: &Producer,
    topics: &[(&str, i32); 3],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(settings, instance, bootstrap)
        .create()
        .context("cannot create the Kafka admin client")?;
    for (name, wanted) in topics {
        let have = topic_partitions(producer, name).await?;
        anyhow::ensure!(
            have >= *wanted,
            "topic {name} has {have} partitions, fewer than CASSA_KAFKA_PARTITIONS ({wanted}): add partitions to it (kafka-topics --alter --partitions {wanted}) or lower the setting"
        );
    }
    let resources: Vec<rdkafka::admin::ResourceSpecifier<'_>> = topics
        .iter()
        .map(|(name, _)| rdkafka::admin::ResourceSpecifier::Topic(name))
        .collect();
    // librdkafka's mock cluster (`cassa dev-kafka`) does not answer DescribeConfigs: a
    // broker that cannot describe its topics gets a warning, not a refusal.
    let described = match admin
        .describe_configs(
            &resources,
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(3))),
        )
        .await
    {
        Ok(described) => described,
        Err(e) => {
            tracing::warn!(error = %e, "the brokers do not describe topic configurations; their cleanup policy is not checked");
            return Ok(());
        }
    };
    for (resource, (name, _)) in described.into_iter().zip(topics) {
        let resource = resource
            .map_err(|e| anyhow::anyhow!("cannot read the configuration of topic {name}: {e}"))?;
        let policy = resource
            .get("cleanup.policy")
            .and_then(|entry| entry.value.clone())
            .unwrap_or_else(|| "delete".into());
        anyhow::ensure!(
            policy == "delete",
            "topic {name} has cleanup.policy={policy}; cassa needs delete (a compacted topic drops a payment's earlier events)"
        );
    }
    Ok(())
}

/// How long a topic just created may take to show in a real cluster's metadata (the
/// controller has committed it; each broker learns it a moment later).
const TOPIC_VISIBLE_WITHIN: Duration = Duration::from_secs(15);

/// Waits until a topic cassa created shows in the metadata.
async fn wait_for_topic(producer: &Producer, topic: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + TOPIC_VISIBLE_WITHIN;
    loop {
        match topic_partitions(producer, topic).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e.context(format!(
                "topic {topic} was created but did not show in the cluster's metadata within {} s",
                TOPIC_VISIBLE_WITHIN.as_secs()
            )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn topic_partitions(producer: &Producer, topic: &str) -> anyhow::Result<i32> {
    let producer = producer.clone();
    let topic_name = topic.to_string();
    let metadata = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic_name), Duration::from_secs(10))
    })
    .await?
    .with_context(|| format!("cannot read the metadata of topic {topic}"))?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    anyhow::ensure!(
        count > 0,
        "topic {topic} does not exist on the Kafka cluster"
    );
    Ok(count as i32)
}

/// Creates missing topics on a real cluster; a clear error when that is impossible.
async fn ensure_topics(
    settings: &KafkaSettings,
    instance: &str,
    bootstrap: &str,
    topics: &[(&str, i32)],
    brokers: usize,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(settings, instance, bootstrap)
        .create()
        .context("cannot create the Kafka admin client")?;
    let (factor, min_insync) = replication_for(brokers);
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| {
            let topic = NewTopic::new(name, *partitions, TopicReplication::Fixed(factor))
                .set("cleanup.policy", "delete");
            match min_insync {
                Some(min) => topic.set("min.insync.replicas", min),
                None => topic,
            }
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .context("cannot reach the Kafka cluster to check the topics (CASSA_KAFKA_BROKERS)")?;
    for result in results {
        match result {
            Ok(name) => {
                tracing::info!(topic = %name, replication = factor, "topic created")
            }
            Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic exists")
            }
            Err((name, code)) => anyhow::bail!(
                "topic {name} is missing and cannot be created ({code}); create it on the cluster"
            ),
        }
    }
    Ok(())
}

/// Who this instance is in the consumer groups: its name and the roles it plays.
pub struct Member<'a> {
    pub instance: &'a str,
    pub roles: &'a [Role],
}

/// Starts the relay and the consumers of this instance's roles.
pub fn start(
    settings: &KafkaSettings,
    member: Member<'_>,
    setup: KafkaSetup,
    store: Arc<dyn Store>,
    registry: Addr<PaymentRegistry>,
    public_url: String,
    configs: Arc<crate::intake::ConfigCache>,
) -> anyhow::Result<KafkaBridge> {
    let Member { instance, roles } = member;
    let (stop, stopped) = watch::channel(false);
    let dead_letters = DeadLetters {
        producer: setup.producer.clone(),
        topic: settings.topics.dead_letter.clone(),
    };
    let relay = relay::OutboxRelay {
        store: store.clone(),
        producer: setup.producer.clone(),
        topic: settings.topics.payments.clone(),
        instance: instance.to_string(),
        idle: Duration::from_millis(100),
    };
    actix::spawn(relay.run(stopped.clone()));

    let session = settings.session_timeout.as_millis().to_string();
    let consumer_config = |group: &str| {
        let mut config = base_config(settings, instance, &setup.bootstrap);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        match settings.client.kafka_group_protocol {
            GroupProtocol::Classic => {
                config
                    .set("session.timeout.ms", &session)
                    .set("heartbeat.interval.ms", "500");
            }
            // KIP-848: the broker times sessions out and assigns partitions; the client
            // may not set either.
            GroupProtocol::Consumer => {
                config.set("group.protocol", "consumer");
            }
        }
        config
            // Bounded prefetch: while handlers wait (back-pressure) little piles up. Once
            // the queue is full the next fetch waits this long (librdkafka's 1 s default
            // made a lagging consumer catch up in 1 s steps).
            .set("queued.max.messages.kbytes", "4096")
            .set("fetch.queue.backoff.ms", "20");
        if settings.external() {
            apply_passthrough(&mut config, &settings.client);
        }
        config
    };

    let incremental = Arc::new(std::sync::atomic::AtomicU8::new(0));
    if roles.contains(&Role::Proxy) {
        let context = proxy::PaymentsRebalance {
            registry: registry.clone(),
            topic: settings.topics.payments.clone(),
            partitions: setup.payments_partitions,
            _broker: setup.embedded.clone(),
            incremental: incremental.clone(),
        };
        let consumer: StreamConsumer<proxy::PaymentsRebalance> = consumer_config(&settings.group)
            .create_with_context(context)
            .context("cannot create the payments consumer")?;
        consumer.subscribe(&[&settings.topics.payments])?;
        let (store, registry, public_url, configs, dead_letters, stopped) = (
            store.clone(),
            registry.clone(),
            public_url.clone(),
            configs.clone(),
            dead_letters.clone(),
            stopped.clone(),
        );
        actix::spawn(async move {
            let intake = Intake {
                store: store.as_ref(),
                registry: &registry,
                public_url: &public_url,
                configs: &configs,
            };
            let consumer = closing::Closing::new(consumer, "payments");
            proxy::run(&consumer, intake, dead_letters, stopped).await;
        });
    }
    if roles.contains(&Role::Dispatcher) {
        let consumer: StreamConsumer<BrokerGuard> =
            consumer_config(&format!("{}-dispatcher", settings.group))
                .create_with_context(setup.embedded.clone())
                .context("cannot create the applications consumer")?;
        consumer.subscribe(&[&settings.topics.applications])?;
        let dispatcher = dispatcher::ApplicationDispatcher {
            consumer: closing::Closing::new(consumer, "applications"),
            dead_letters,
        };
        actix::spawn(async move {
            let intake = Intake {
                store: store.as_ref(),
                registry: &registry,
                public_url: &public_url,
                configs: &configs,
            };
            dispatcher.run(intake, stopped).await;
        });
    }
    Ok(KafkaBridge {
        setup,
        stop,
        incremental,
    })
}
