//! Two cassa processes on one PostgreSQL and one broker (`cassa dev-kafka`): they share
//! the payments by partition, create every position exactly once, and when one is
//! killed the other completes its payments.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::helpers::*;
use crate::restart::{free_port, start_cassa_with, wait_ready};

async fn owned_partitions(client: &reqwest::Client, base: &str) -> u64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("cassa_owned_partitions "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no cassa_owned_partitions in {text}"))
}

async fn owned_partition_list(client: &reqwest::Client, base: &str) -> Vec<i32> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("cassa_owned_partition{partition=\""))
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect()
}

#[actix_rt::test]
async fn two_instances_share_the_work_and_survive_the_loss_of_one() {
    if crate::helpers::postgres_skipped(concat!(
        module_path!(),
        "::two_instances_share_the_work_and_survive_the_loss_of_one"
    )) {
        return;
    }
    let db = TestDatabase::new(Backend::Postgres).await;
    let sim =
        TestSimulator::serve_without_push(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let kafka_port = free_port();
    let mut broker = crate::restart::Spawned(
        Command::new(env!("CARGO_BIN_EXE_cassa"))
            .args(["dev-kafka", "--port", &kafka_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let bootstrap = format!("127.0.0.1:{kafka_port}");
    let client = admin_client();
    let ports = [free_port(), free_port()];
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let env = |name: &'static str| {
        vec![
            ("CASSA_KAFKA_BROKERS", bootstrap.clone()),
            ("CASSA_KAFKA_SESSION_TIMEOUT", "3s".to_string()),
            ("CASSA_INSTANCE_ID", name.to_string()),
        ]
    };
    let start = |port: u16, name: &'static str| {
        let env = env(name);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        start_cassa_with(&db.url, port, &sim.base, &env)
    };
    let mut a = start(ports[0], "a");
    wait_ready(&client, &bases[0]).await;
    let mut b = start(ports[1], "b");
    wait_ready(&client, &bases[1]).await;

    // Payments created through both instances.
    let mut pagopa = Vec::new();
    let mut wallet = Vec::new();
    for i in 0..12 {
        let base = &bases[i % 2];
        let body = if i % 4 == 3 {
            wallet_body("5.00")
        } else {
            pagopa_body(&format!("{}.00", 20 + i))
        };
        // Only the wallet's owner may spend it.
        let creator = if body["type"] == "WALLET" {
            client_with(Some(&citizen_token()))
        } else {
            client.clone()
        };
        let r = creator
            .post(format!("{base}/v1/payments"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        if i % 4 == 3 {
            wallet.push(id)
        } else {
            pagopa.push(id)
        }
    }
    let mut iuvs = Vec::new();
    for id in &pagopa {
        let pending = wait_for_status(&client, &bases[1], id, "PAYMENT_PENDING", 30).await;
        iuvs.push(pending["payment"]["iuv"].as_str().unwrap().to_string());
    }
    for id in &wallet {
        wait_for_status(&client, &bases[0], id, "COMPLETE", 30).await;
    }
    let stats = sim.stats().await;
    assert_eq!(stats.positions_created, pagopa.len() as u64, "{stats:?}");
    assert_eq!(stats.gateway_executions, wallet.len() as u64, "{stats:?}");

    // The partitions are shared: each instance owns some.
    for base in &bases {
        let owned = owned_partitions(&client, base).await;
        assert!(
            (1..6).contains(&owned),
            "{base} owns {owned} of 6 partitions"
        );
    }

    // A change made through the instance that does not own the payment reaches the
    // owner and is not overwritten by it.
    let owned_by_a = owned_partition_list(&client, &bases[0]).await;
    let owned_by_a_ = owned_by_a.clone();
    let belongs_to_a = move |id: &str| {
        let id = uuid::Uuid::parse_str(id).unwrap();
        owned_by_a_.contains(&cassa::actors::Ownership::partition_of(id, 6))
    };
    let mut victim = None;
    for _ in 0..40 {
        let r = client
            .post(format!("{}/v1/payments", bases[1]))
            .json(&pagopa_body("3.00"))
            .send()
            .await
            .unwrap();
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        if belongs_to_a(&id) {
            victim = Some(id);
            break;
        }
        // Not a's: it runs on b like the others.
        let pending = wait_for_status(&client, &bases[1], &id, "PAYMENT_PENDING", 30).await;
        iuvs.push(pending["payment"]["iuv"].as_str().unwrap().to_string());
        pagopa.push(id);
    }
    let victim =
        victim.unwrap_or_else(|| panic!("no payment landed in a's partitions {owned_by_a:?}"));
    let pending = wait_for_status(&client, &bases[1], &victim, "PAYMENT_PENDING", 30).await;
    let victim_iuv = pending["payment"]["iuv"].as_str().unwrap().to_string();
    let r = client
        .post(format!("{}/v1/payments/{victim}/cancel", bases[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "cancel through the non-owner");
    assert_eq!(sim.position(&victim_iuv).await["status"], "CANCELED");
    let r = client
        .post(format!("{}/v1/payments/{victim}/update", bases[0]))
        .send()
        .await
        .unwrap();
    let seen_by_owner: Value = r.json().await.unwrap();
    assert_eq!(
        seen_by_owner["status"], "CANCELED",
        "the owner sees the change: {seen_by_owner}"
    );

    // Instance a dies; b takes over its partitions and completes everything by polling.
    a.kill().unwrap();
    a.wait().unwrap();
    for iuv in &iuvs {
        sim.pay(iuv).await;
    }
    for id in &pagopa {
        wait_for_status(&client, &bases[1], id, "COMPLETE", 40).await;
    }
    assert_eq!(
        owned_partitions(&client, &bases[1]).await,
        6,
        "b owns every partition now"
    );
    assert_eq!(sim.stats().await.positions_created, pagopa.len() as u64 + 1);
    assert_eq!(
        wait_for_status(&client, &bases[1], &victim, "CANCELED", 5).await["status"],
        "CANCELED"
    );
    b.kill().unwrap();
    b.wait().unwrap();
    broker.kill().unwrap();
    broker.wait().unwrap();
}
