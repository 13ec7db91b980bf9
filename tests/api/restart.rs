//! `kill -9` of the real `cassa` process right after its 202s loses nothing: a new
//! process on the same database re-arms the open payments and completes them.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process of a test, killed when dropped: a test that fails midway leaves no
/// `cassa serve` (or broker) running after it.
pub struct Spawned(pub Child);

impl std::ops::Deref for Spawned {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn start_cassa(db_url: &str, port: u16, sim_base: &str) -> Spawned {
    start_cassa_with(db_url, port, sim_base, &[])
}

/// Starts `cassa serve` as its own process, with extra environment.
pub fn start_cassa_with(db_url: &str, port: u16, sim_base: &str, env: &[(&str, &str)]) -> Spawned {
    Spawned(
        cassa_command(db_url, port, sim_base, env)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Starts `cassa serve` at `CASSA_LOG=info`, its log going to `log`.
pub fn start_cassa_logging(
    db_url: &str,
    port: u16,
    sim_base: &str,
    log: &std::path::Path,
) -> Spawned {
    let file = std::fs::File::create(log).unwrap();
    Spawned(
        cassa_command(db_url, port, sim_base, &[("CASSA_LOG", "info")])
            .stderr(file)
            .spawn()
            .unwrap(),
    )
}

fn cassa_command(db_url: &str, port: u16, sim_base: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cassa"));
    command
        .arg("serve")
        .envs(key_env())
        .env("CASSA_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("CASSA_DATABASE_URL", db_url)
        .env("CASSA_SIMULATOR_URL", sim_base)
        .env("CASSA_SEED_DEMO", "true")
        .env("CASSA_POLL_SCHEDULE", "*:1s")
        .env("CASSA_INTERMEDIARY_TIMEOUT", "500ms")
        .env("CASSA_LOG", "warn")
        // Last, so a test may override the defaults above.
        .envs(env.iter().copied())
        .stdout(Stdio::null());
    command
}

/// Waits until the cassa at `base` answers `/readyz` with 200; fails after 40 s.
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    let ready = format!("cassa at {base} ready");
    eventually(&ready, Duration::from_secs(40), || async {
        match client.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

async fn kill_9_and_restart_resumes_open_payments(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    // The simulator's port is reserved but not served yet: the first process's calls
    // to the intermediary hang and time out, so every payment is still open when it
    // is killed.
    let sim_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let sim_base = format!("http://{}/sim", sim_listener.local_addr().unwrap());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = admin_client();

    let mut first = start_cassa(&db.url, port, &sim_base);
    wait_ready(&client, &base).await;
    let mut pagopa = Vec::new();
    let mut wallet = Vec::new();
    for i in 0..4 {
        let r = client
            .post(format!("{base}/v1/payments"))
            .json(&pagopa_body(&format!("{}.00", 10 + i)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        pagopa.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Only the wallet's owner may spend it.
    let r = client_with(Some(&citizen_token()))
        .post(format!("{base}/v1/payments"))
        .json(&wallet_body("50.00"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wallet.push(
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let sim = TestSimulator::serve_without_push(sim_listener);
    let mut second = start_cassa(&db.url, port, &sim_base);
    wait_ready(&client, &base).await;
    for id in &pagopa {
        let pending = wait_for_status(&client, &base, id, "PAYMENT_PENDING", 20).await;
        sim.pay(pending["payment"]["iuv"].as_str().unwrap()).await;
    }
    for id in pagopa.iter().chain(&wallet) {
        wait_for_status(&client, &base, id, "COMPLETE", 20).await;
    }
    let stats = sim.stats().await;
    assert_eq!(
        stats.positions_created, 4,
        "each position created once: {stats:?}"
    );
    assert_eq!(stats.gateway_executions, 1);
    let account: Value = client
        .get(format!("{base}/v1/accounts/{}", cassa::seed::DEMO_ACCOUNT))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["balance"].as_f64().unwrap(), 950.0);
    assert_eq!(account["held"].as_f64().unwrap(), 0.0);
    second.kill().unwrap();
    second.wait().unwrap();
}

on_both_databases!(kill_9_and_restart_resumes_open_payments);
