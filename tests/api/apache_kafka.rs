//! What only a real Apache Kafka cluster shows (clusters of their own, started with
//! `scripts/kafka-cluster`): every broker down and back, the partition leader's broker
//! killed or paused while creates stream in, replicated topics, refused topic layouts,
//! SASL/SCRAM clients.

use std::collections::HashMap;
use std::time::Duration;

use cassa::server::{self, Overrides};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use serde_json::Value;

use crate::helpers::*;
use crate::kafka::{a_broker_outage_loses_no_event_on, read_until, reader};

/// A cassa on a cluster of the test's own, with topics named for the test.
async fn spawn_on_cluster(
    backend: Backend,
    cluster: &KafkaCluster,
    tune: impl FnOnce(&mut cassa::config::Settings),
) -> (TestApp, TestTopics) {
    let topics = TestTopics::for_broker(Broker::Apache);
    let app = TestApp::spawn_with(
        backend,
        |settings| {
            topics.apply(settings, &cluster.bootstrap);
            tune(settings);
        },
        Overrides::default(),
    )
    .await;
    (app, topics)
}

#[actix_rt::test]
async fn every_broker_down_and_back_loses_no_event() {
    let cluster = KafkaCluster::start(1, false);
    // SQLite: on the PostgreSQL server the other tests share, an event may be held back
    // behind their transactions for a while, which is not what this test is about.
    let (app, topics) = spawn_on_cluster(Backend::Sqlite, &cluster, |_| {}).await;
    a_broker_outage_loses_no_event_on(
        &app,
        &topics.payments,
        cluster.node("kill", 1),
        cluster.node("restart", 1),
    )
    .await;
}

/// The broker leading `partition` of `topic`.
fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .unwrap()
        .leader()
}

/// Creates `count` WALLET payments one after the other, `fault` after the first third,
/// `heal` after the second; then checks every event of every payment reached the topic
/// in version order.
async fn creates_survive(fault: &str, heal: &str) {
    let cluster = KafkaCluster::start(3, false);
    let (app, topics) = spawn_on_cluster(Backend::Postgres, &cluster, |_| {}).await;
    let warm = app.create(&wallet_body("1.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&warm, "COMPLETE", 30).await;
    let leader = leader_of(&cluster.bootstrap, &topics.payments, 0);
    let count = 30;
    let mut ids = vec![warm];
    for i in 0..count {
        if i == count / 3 {
            cluster.node(fault, leader).await;
        }
        if i == 2 * count / 3 {
            cluster.node(heal, leader).await;
        }
        let created = app.create(&wallet_body(&format!("{}.00", 2 + i))).await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        app.wait_for(id, "COMPLETE", 60).await;
    }
    let records = read_until(&reader(&cluster.bootstrap, &topics.payments), 90, |seen| {
        ids.iter().all(|id| {
            seen.iter()
                .filter(|(k, _, _)| k.as_deref() == Some(id))
                .count()
                >= 4
        })
    })
    .await;
    for id in &ids {
        let stored = app.store.payment_events(id.parse().unwrap()).await.unwrap();
        let mut seen_events: Vec<String> = Vec::new();
        let mut versions: Vec<i64> = Vec::new();
        for (key, payload, headers) in &records {
            if key.as_deref() != Some(id) {
                continue;
            }
            let event: Value = serde_json::from_slice(payload).unwrap();
            let event_id = event["event_id"].as_str().unwrap().to_string();
            // A re-published event (after an unacknowledged send) may come twice: once
            // counted, and never out of order.
            if seen_events.contains(&event_id) {
                continue;
            }
            seen_events.push(event_id);
            let version = headers
                .iter()
                .find(|(k, _)| k == cassa::kafka::VERSION_HEADER)
                .map(|(_, v)| v.parse::<i64>().unwrap())
                .unwrap();
            versions.push(version);
        }
        let stored_ids: Vec<String> = stored
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            seen_events, stored_ids,
            "payment {id}: every outbox event, in order"
        );
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "payment {id}: versions {versions:?}"
        );
    }
    // The broker that was hurt serves again: it leads or follows partitions of the topic.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cluster.bootstrap)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    assert!(
        metadata.brokers().iter().any(|b| b.id() == leader),
        "broker {leader} rejoined the cluster"
    );
}

#[actix_rt::test]
async fn the_partition_leaders_broker_killed_while_creates_stream_in_loses_no_event() {
    creates_survive("kill", "restart").await;
}

#[actix_rt::test]
async fn the_partition_leaders_broker_paused_while_creates_stream_in_loses_no_event() {
    creates_survive("pause", "resume").await;
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap()
}

async fn topic_config(bootstrap: &str, topic: &str) -> HashMap<String, String> {
    let described = admin(bootstrap)
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    resource
        .entries
        .into_iter()
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect()
}

#[actix_rt::test]
async fn topics_cassa_creates_are_replicated_and_bad_layouts_are_refused() {
    let bootstrap = apache_kafka_bootstrap();
    let (app, topics) = TestApp::spawn_on(Backend::Sqlite, Broker::Apache).await;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let brokers = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap()
        .brokers()
        .len();
    let expected_factor = brokers.min(3);
    for topic in [&topics.applications, &topics.payments, &topics.dead_letter] {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        for partition in metadata.topics()[0].partitions() {
            assert_eq!(partition.replicas().len(), expected_factor, "{topic}");
        }
        let config = topic_config(&bootstrap, topic).await;
        if expected_factor == 3 {
            assert_eq!(
                config.get("min.insync.replicas").map(String::as_str),
                Some("2")
            );
        }
        assert_eq!(
            config.get("cleanup.policy").map(String::as_str),
            Some("delete")
        );
    }
    drop(app);

    // A payments topic with fewer partitions than configured is refused by name.
    let few = TestTopics::for_broker(Broker::Apache);
    let compacted = TestTopics::for_broker(Broker::Apache);
    let admin = admin(&bootstrap);
    let results = admin
        .create_topics(
            &[
                NewTopic::new(&few.payments, 2, TopicReplication::Fixed(1)),
                NewTopic::new(&compacted.payments, 6, TopicReplication::Fixed(1))
                    .set("cleanup.policy", "compact"),
            ],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let db = TestDatabase::new(Backend::Sqlite).await;
    for (topics, expected) in [
        (&few, "CASSA_KAFKA_PARTITIONS"),
        (&compacted, "cleanup.policy=compact"),
    ] {
        let mut settings = test_settings(&db.url, "http://127.0.0.1:9/sim");
        topics.apply(&mut settings, &bootstrap);
        let err = match server::start(&settings, Overrides::default()).await {
            Ok(_) => panic!("start-up accepted {topics:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(expected), "{err}");
        assert!(err.contains(&topics.payments), "{err}");
    }
}

/// A consumer of a SASL cluster reading `topic` from the start.
fn sasl_reader(cluster: &KafkaCluster, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cluster.bootstrap)
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "SCRAM-SHA-256")
        .set("sasl.username", cluster.printed("sasl_username"))
        .set("sasl.password", cluster.printed("sasl_password"))
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

#[actix_rt::test]
async fn sasl_scram_clients_work_and_wrong_credentials_stop_the_start_up_by_name() {
    let cluster = KafkaCluster::start(1, true);
    let user = cluster.printed("sasl_username");
    let password = cluster.printed("sasl_password");
    let login = |settings: &mut cassa::config::Settings, password: &str| {
        settings.kafka_client.kafka_security_protocol = Some("SASL_PLAINTEXT".into());
        settings.kafka_client.kafka_sasl_mechanism = Some("SCRAM-SHA-256".into());
        settings.kafka_client.kafka_sasl_username = Some(user.clone());
        settings.kafka_client.kafka_sasl_password = Some(password.to_string());
    };
    let (app, topics) = spawn_on_cluster(Backend::Sqlite, &cluster, |s| login(s, &password)).await;
    let id = app.create(&wallet_body("7.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&id, "COMPLETE", 30).await;
    let consumer = sasl_reader(&cluster, &topics.payments);
    let mut statuses = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while statuses.len() < 4 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "events read: {statuses:?}");
        if let Ok(Ok(m)) = tokio::time::timeout(left, consumer.recv()).await {
            if m.key() == Some(id.as_bytes()) {
                let event: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                assert!(m.headers().is_some_and(|h| h.count() > 0));
                statuses.push(event["status"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(
        statuses,
        [
            "CREATION_PENDING",
            "PAYMENT_PENDING",
            "PAYMENT_STARTED",
            "COMPLETE"
        ]
    );
    drop(app);

    let wrong = "not-the-scram-password";
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db.url, "http://127.0.0.1:9/sim");
    TestTopics::for_broker(Broker::Apache).apply(&mut settings, &cluster.bootstrap);
    login(&mut settings, wrong);
    let err = match server::start(&settings, Overrides::default()).await {
        Ok(_) => panic!("start-up accepted a wrong SASL password"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("CASSA_KAFKA_SASL_PASSWORD"), "{err}");
    assert!(!err.contains(wrong), "the password leaked: {err}");
}

#[actix_rt::test]
async fn the_kip_848_consumer_protocol_assigns_the_partitions_and_payments_complete() {
    let topics = TestTopics::for_broker(Broker::Apache);
    let bootstrap = apache_kafka_bootstrap();
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        |settings| {
            topics.apply(settings, &bootstrap);
            settings.kafka_client.kafka_group_protocol = cassa::config::GroupProtocol::Consumer;
        },
        Overrides::default(),
    )
    .await;
    // The proxy owns payments only once the broker has assigned it the partitions.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.registry_stats().await.owned_partitions != Some(6) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker assigned no partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = app.create(&wallet_body("9.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&id, "COMPLETE", 30).await;
}
