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
    if crate::helpers::postgres_skipped(concat!(
        module_path!(),
        "::the_partition_leaders_broker_killed_while_creates_stream_in_loses_no_event"
    )) {
        return;
    }
    creates_survive("kill", "restart").await;
}

#[actix_rt::test]
async fn the_partition_leaders_broker_paused_while_creates_stream_in_loses_no_event() {
    if crate::helpers::postgres_skipped(concat!(
        module_path!(),
        "::the_partition_leaders_broker_paused_while_creates_stream_in_loses_no_event"
    )) {
        return;
    }
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
        settings.kafka.client.kafka_security_protocol = Some("SASL_PLAINTEXT".into());
        settings.kafka.client.kafka_sasl_mechanism = Some("SCRAM-SHA-256".into());
        settings.kafka.client.kafka_sasl_username = Some(user.clone());
        settings.kafka.client.kafka_sasl_password = Some(password.to_string());
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

/// One instance on `protocol`: the broker assigns it every partition and a payment
/// completes. Answers whether the assignment was incremental.
async fn assigned_on(protocol: cassa::config::GroupProtocol) -> Option<bool> {
    let topics = TestTopics::for_broker(Broker::Apache);
    let bootstrap = apache_kafka_bootstrap();
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        |settings| {
            topics.apply(settings, &bootstrap);
            settings.kafka.client.kafka_group_protocol = protocol;
        },
        Overrides::default(),
    )
    .await;
    // The proxy owns payments only once the broker has assigned it the partitions.
    eventually_every(
        "the broker assigning the partitions",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { app.registry_stats().await.owned_partitions == Some(6) },
    )
    .await;
    let id = app.create(&wallet_body("9.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&id, "COMPLETE", 30).await;
    app.kafka.incremental_rebalance()
}

/// `CASSA_KAFKA_GROUP_PROTOCOL=consumer` is in force: the group runs KIP-848's protocol,
/// whose assignments are incremental, where the classic one's are eager.
#[actix_rt::test]
async fn the_kip_848_consumer_protocol_assigns_the_partitions_and_payments_complete() {
    let incremental = assigned_on(cassa::config::GroupProtocol::Consumer).await;
    assert_eq!(incremental, Some(true), "KIP-848 assigns incrementally");
}

#[actix_rt::test]
async fn the_classic_protocol_assigns_eagerly() {
    let incremental = assigned_on(cassa::config::GroupProtocol::Classic).await;
    assert_eq!(
        incremental,
        Some(false),
        "the classic protocol's assignment is eager"
    );
}

/// `cassa_owned_partitions` of the instance at `base` (0 while it does not answer).
async fn owned(client: &reqwest::Client, base: &str) -> u64 {
    let Ok(r) = client.get(format!("{base}/metrics")).send().await else {
        return 0;
    };
    r.text()
        .await
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("cassa_owned_partitions "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until the instances at `bases` own `total` partitions between them, each some.
async fn shared(client: &reqwest::Client, bases: &[&String], total: u64) {
    let every = Duration::from_millis(200);
    eventually_every(
        "partitions shared",
        Duration::from_secs(60),
        every,
        || async {
            let mut counts = Vec::new();
            for base in bases {
                counts.push(owned(client, base).await);
            }
            if counts.iter().sum::<u64>() == total && counts.iter().all(|c| *c > 0) {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            }
        },
    )
    .await
}

/// `count` PAGOPA payments created through each of `bases` in turn (amounts from
/// `first_euros` up, so each is its own); their ids.
async fn create_round_robin(
    client: &reqwest::Client,
    bases: &[String],
    count: usize,
    first_euros: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let r = client
            .post(format!("{}/v1/payments", bases[i % bases.len()]))
            .json(&pagopa_body(&format!("{}.00", first_euros + i)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ids
}

/// Asks the process to stop (SIGTERM, a graceful stop) and waits for it: a stop is
/// bounded (the HTTP drain, one step per actor, the consumers' close), so one that
/// does not come within a minute fails the test instead of hanging it.
async fn terminate(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = poll(Duration::from_secs(60), POLL_EVERY, || {
        let stopped = matches!(child.try_wait(), Ok(Some(_)));
        async move {
            if stopped {
                Ok(())
            } else {
                Err(())
            }
        }
    })
    .await;
    if stopped.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("cassa did not stop within a minute of SIGTERM");
    }
}

#[actix_rt::test]
async fn three_instances_share_twelve_partitions_survive_a_kill_and_a_rolling_restart() {
    if crate::helpers::postgres_skipped(concat!(
        module_path!(),
        "::three_instances_share_twelve_partitions_survive_a_kill_and_a_rolling_restart"
    )) {
        return;
    }
    use crate::restart::{free_port, start_cassa_with, wait_ready};

    let db = TestDatabase::new(Backend::Postgres).await;
    let sim =
        TestSimulator::serve_without_push(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let topics = TestTopics::for_broker(Broker::Apache);
    let bootstrap = apache_kafka_bootstrap();
    let group = format!("cassa-{}", topics.payments);
    let env: Vec<(&str, &str)> = vec![
        ("CASSA_KAFKA_BROKERS", &bootstrap),
        ("CASSA_KAFKA_PARTITIONS", "12"),
        ("CASSA_KAFKA_SESSION_TIMEOUT", "3s"),
        ("CASSA_KAFKA_GROUP", &group),
        ("CASSA_TOPIC_APPLICATIONS", &topics.applications),
        ("CASSA_TOPIC_PAYMENTS", &topics.payments),
        ("CASSA_TOPIC_DEAD_LETTER", &topics.dead_letter),
        // A call slower than its time limit is rightly tried again (the position is
        // idempotent by IUD); with three instances and three brokers on two cores a
        // create can take longer than 500 ms, and this test counts the handover's
        // repeats only.
        ("CASSA_INTERMEDIARY_TIMEOUT", "3s"),
    ];
    let client = admin_client();
    let ports = [free_port(), free_port(), free_port()];
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let start = |i: usize| {
        let mut env = env.clone();
        let name = format!("instance-{i}");
        env.push(("CASSA_INSTANCE_ID", &name));
        start_cassa_with(&db.url, ports[i], &sim.base, &env)
    };
    let mut instances = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        instances.push(start(i));
        wait_ready(&client, base).await;
    }
    shared(&client, &bases.iter().collect::<Vec<_>>(), 12).await;

    // Payments through every instance: each position is created once.
    let mut ids = create_round_robin(&client, &bases, 24, 20).await;
    for id in &ids {
        wait_for_status(&client, &bases[0], id, "PAYMENT_PENDING", 60).await;
    }
    assert_eq!(sim.stats().await.positions_created, 24);

    // kill -9 of one instance: the other two take its partitions over.
    instances[2].kill().unwrap();
    instances[2].wait().unwrap();
    shared(&client, &[&bases[0], &bases[1]], 12).await;
    instances[2] = start(2);
    wait_ready(&client, &bases[2]).await;

    // A rolling restart of all three while creates keep coming.
    let creating = {
        let (client, bases) = (client.clone(), bases.clone());
        actix_rt::spawn(async move {
            let mut made = Vec::new();
            for i in 0..60 {
                // Whichever instance answers: one is always restarting.
                for attempt in 0..3 {
                    let base = &bases[(i + attempt) % 3];
                    let sent = client
                        .post(format!("{base}/v1/payments"))
                        .json(&pagopa_body(&format!("{}.00", 100 + i)))
                        .send()
                        .await;
                    if let Ok(r) = sent {
                        if r.status() == 202 {
                            made.push(
                                r.json::<Value>().await.unwrap()["id"]
                                    .as_str()
                                    .unwrap()
                                    .to_string(),
                            );
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            made
        })
    };
    for (i, base) in bases.iter().enumerate() {
        terminate(&mut instances[i]).await;
        instances[i] = start(i);
        wait_ready(&client, base).await;
    }
    let made = creating.await.unwrap();
    assert!(
        made.len() >= 55,
        "creates refused during the restart: {}",
        made.len()
    );
    shared(&client, &bases.iter().collect::<Vec<_>>(), 12).await;
    ids.extend(made);
    for id in &ids {
        let pending = wait_for_status(&client, &bases[1], id, "PAYMENT_PENDING", 60).await;
        sim.pay(pending["payment"]["iuv"].as_str().unwrap()).await;
    }
    for id in &ids {
        wait_for_status(&client, &bases[2], id, "COMPLETE", 60).await;
    }
    let stats = sim.stats().await;
    assert_eq!(stats.positions_created, ids.len() as u64, "{stats:?}");
    assert_eq!(stats.duplicate_creates, 0, "{stats:?}");
    for mut instance in instances {
        instance.kill().unwrap();
        instance.wait().unwrap();
    }
}

#[actix_rt::test]
async fn with_the_kip_848_protocol_two_instances_share_partitions_and_hand_them_over() {
    if crate::helpers::postgres_skipped(concat!(
        module_path!(),
        "::with_the_kip_848_protocol_two_instances_share_partitions_and_hand_them_over"
    )) {
        return;
    }
    use crate::restart::{free_port, start_cassa_with, wait_ready};

    let db = TestDatabase::new(Backend::Postgres).await;
    let sim =
        TestSimulator::serve_without_push(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let topics = TestTopics::for_broker(Broker::Apache);
    let bootstrap = apache_kafka_bootstrap();
    let group = format!("cassa-{}", topics.payments);
    let client = admin_client();
    let ports = [free_port(), free_port()];
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let start = |i: usize| {
        let name = format!("consumer-protocol-{i}");
        let env: Vec<(&str, &str)> = vec![
            ("CASSA_KAFKA_BROKERS", &bootstrap),
            ("CASSA_KAFKA_GROUP_PROTOCOL", "consumer"),
            ("CASSA_KAFKA_GROUP", &group),
            ("CASSA_TOPIC_APPLICATIONS", &topics.applications),
            ("CASSA_TOPIC_PAYMENTS", &topics.payments),
            ("CASSA_TOPIC_DEAD_LETTER", &topics.dead_letter),
            ("CASSA_INSTANCE_ID", &name),
        ];
        start_cassa_with(&db.url, ports[i], &sim.base, &env)
    };
    let mut a = start(0);
    wait_ready(&client, &bases[0]).await;
    let mut b = start(1);
    wait_ready(&client, &bases[1]).await;
    // Incremental assignment: b's share moves from a without a's stopping the rest.
    shared(&client, &[&bases[0], &bases[1]], 6).await;
    let ids = create_round_robin(&client, &bases, 8, 30).await;
    let mut iuvs = Vec::new();
    for id in &ids {
        let pending = wait_for_status(&client, &bases[1], id, "PAYMENT_PENDING", 60).await;
        iuvs.push(pending["payment"]["iuv"].as_str().unwrap().to_string());
    }
    // a dies: the broker gives b every partition once a's session times out.
    a.kill().unwrap();
    a.wait().unwrap();
    eventually_every(
        "b owning a's partitions",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async { owned(&client, &bases[1]).await == 6 },
    )
    .await;
    for iuv in &iuvs {
        sim.pay(iuv).await;
    }
    for id in &ids {
        wait_for_status(&client, &bases[1], id, "COMPLETE", 60).await;
    }
    assert_eq!(sim.stats().await.positions_created, ids.len() as u64);
    b.kill().unwrap();
    b.wait().unwrap();
}
