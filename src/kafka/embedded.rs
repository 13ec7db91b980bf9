//! cassa's embedded Kafka broker: librdkafka's mock cluster (`rdkafka::mocking::MockCluster`),
//! optionally reachable on a fixed loopback port through a small TCP forwarder.
//!
//! `MockCluster` holds a raw pointer and is therefore neither `Send` nor `Sync`; it lives on a
//! dedicated OS thread that owns it for the lifetime of [`EmbeddedKafka`]. Fault-injection commands
//! reach that thread over a channel, and dropping [`EmbeddedKafka`] closes the channel, which makes
//! the thread destroy the cluster and exit.
//!
//! The fixed-port forwarder is a bootstrap convenience only: clients connect to it first, but the
//! metadata they receive advertises the mock broker's own (random) loopback port, which they then
//! use directly. Both are on 127.0.0.1, so processes on the same host can use the fixed address.
//!
//! Mock-cluster caveats relevant to consumer groups (classic protocol):
//! - the first join of an empty group waits a fixed 3 s (`group.initial.rebalance.delay.ms`);
//! - any later join or leave makes the mock wait `session.timeout.ms - 1000` ms before electing a
//!   leader (it never short-cuts when everyone has rejoined), so give consumers that share a group a
//!   small `session.timeout.ms` (e.g. 3000–6000) or rebalances take ~44 s with the 45 s default;
//! - the mock enforces no minimum/maximum session timeout, and the group uses the session timeout of
//!   the most recent JoinGroup.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle as ThreadHandle;
use std::time::Duration;

use anyhow::{anyhow, Context};
use rdkafka::error::KafkaResult;
use rdkafka::mocking::MockCluster;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// The id of the single broker of the mock cluster (librdkafka numbers mock brokers from 1).
const BROKER_ID: i32 = 1;

/// A command for the thread that owns the mock cluster.
enum Command {
    /// Disconnect broker 1 and refuse new connections.
    BrokerDown(std_mpsc::Sender<KafkaResult<()>>),
    /// Accept connections on broker 1 again.
    BrokerUp(std_mpsc::Sender<KafkaResult<()>>),
}

/// A running embedded broker (librdkafka mock cluster), alive as long as this value.
pub struct EmbeddedKafka {
    /// Commands for the owning thread; dropping it stops the thread.
    commands: Option<std_mpsc::Sender<Command>>,
    /// The thread owning the `MockCluster`.
    thread: Option<ThreadHandle<()>>,
    /// The mock cluster's own bootstrap list.
    mock_bootstrap: String,
    /// The fixed forwarder address (`127.0.0.1:<port>`), when one was requested.
    forwarded_bootstrap: Option<String>,
    /// The accept loop of the forwarder; aborting it also aborts every forwarded connection.
    forwarder: Option<JoinHandle<()>>,
}

impl EmbeddedKafka {
    /// Starts a 1-broker mock cluster. With `port = Some(p)`, also listens on 127.0.0.1:p and forwards
    /// every TCP connection to the mock broker (bootstrap only: clients then use the broker address the
    /// metadata advertises, which is on loopback), so that other processes can use a fixed bootstrap address.
    /// Creates `topics` (name, partitions) with replication 1.
    ///
    /// `Some(0)` binds an ephemeral port; [`EmbeddedKafka::bootstrap_servers`] reports the real one.
    /// With a port, this must be called inside a tokio runtime (the forwarder is a tokio task).
    pub async fn start(port: Option<u16>, topics: &[(&str, i32)]) -> anyhow::Result<Self> {
        // Bind first so that a taken port fails fast, before any cluster is created.
        let listener =
            match port {
                Some(p) => Some(TcpListener::bind(("127.0.0.1", p)).await.with_context(|| {
                    format!("binding embedded kafka forwarder on 127.0.0.1:{p}")
                })?),
                None => None,
            };

        let topics: Vec<(String, i32)> = topics
            .iter()
            .map(|(name, partitions)| ((*name).to_owned(), *partitions))
            .collect();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (commands_tx, commands_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".to_owned())
            .spawn(move || own_mock_cluster(topics, ready_tx, commands_rx))
            .context("spawning the embedded kafka thread")?;

        let mut kafka = EmbeddedKafka {
            commands: Some(commands_tx),
            thread: Some(thread),
            mock_bootstrap: String::new(),
            forwarded_bootstrap: None,
            forwarder: None,
        };
        // On error, `kafka` drops here, which stops and joins the thread.
        kafka.mock_bootstrap = ready_rx.await.map_err(|_| {
            anyhow!("the embedded kafka thread exited before the cluster started")
        })??;

        if let Some(listener) = listener {
            let local = listener
                .local_addr()
                .context("reading the forwarder's local address")?;
            let target = kafka
                .mock_bootstrap
                .split(',')
                .next()
                .unwrap_or_default()
                .to_owned();
            kafka.forwarded_bootstrap = Some(format!("127.0.0.1:{}", local.port()));
            kafka.forwarder = Some(tokio::spawn(forward(listener, target)));
        }
        tracing::info!(
            bootstrap = %kafka.bootstrap_servers(),
            mock_broker = %kafka.mock_bootstrap,
            "embedded kafka started"
        );
        Ok(kafka)
    }

    /// The bootstrap address to give clients: `127.0.0.1:<port>` when a port was fixed, else the mock cluster's own.
    pub fn bootstrap_servers(&self) -> String {
        self.forwarded_bootstrap
            .clone()
            .unwrap_or_else(|| self.mock_bootstrap.clone())
    }

    /// Makes the broker unreachable (fault injection for tests: broker 1 down). Existing connections
    /// are closed and new ones refused, including those arriving through the forwarder.
    pub fn broker_down(&self) -> anyhow::Result<()> {
        self.command(Command::BrokerDown)
            .context("setting the embedded broker down")
    }

    /// Makes the broker reachable again (fault injection for tests: broker 1 up).
    pub fn broker_up(&self) -> anyhow::Result<()> {
        self.command(Command::BrokerUp)
            .context("setting the embedded broker up")
    }

    /// Sends a command to the owning thread and waits for its result (the mock cluster applies it
    /// synchronously, so this returns quickly).
    fn command(
        &self,
        make: fn(std_mpsc::Sender<KafkaResult<()>>) -> Command,
    ) -> anyhow::Result<()> {
        let (reply_tx, reply_rx) = std_mpsc::channel();
        self.commands
            .as_ref()
            .ok_or_else(|| anyhow!("embedded kafka is stopped"))?
            .send(make(reply_tx))
            .map_err(|_| anyhow!("the embedded kafka thread has stopped"))?;
        reply_rx
            .recv()
            .map_err(|_| anyhow!("the embedded kafka thread has stopped"))??;
        Ok(())
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        if let Some(forwarder) = self.forwarder.take() {
            forwarder.abort();
        }
        // Closing the command channel makes the thread destroy the cluster and return.
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the embedded kafka thread panicked");
            }
        }
    }
}

/// Between two requests to the mock cluster (see `own_mock_cluster`).
const MOCK_REQUEST_SPACING: Duration = Duration::from_millis(2);

/// Body of the thread that owns the (non-`Send`) mock cluster: creates it and the topics, reports
/// the bootstrap list, then serves commands until the command channel closes.
fn own_mock_cluster(
    topics: Vec<(String, i32)>,
    ready: oneshot::Sender<anyhow::Result<String>>,
    commands: std_mpsc::Receiver<Command>,
) {
    let cluster = match MockCluster::new(1) {
        Ok(cluster) => cluster,
        Err(e) => {
            let _ = ready.send(Err(
                anyhow::Error::new(e).context("creating the mock cluster")
            ));
            return;
        }
    };
    for (i, (name, partitions)) in topics.iter().enumerate() {
        if i > 0 {
            // librdkafka's mock thread serves its queued requests before it drains its
            // wake-up pipe: a request made while it still serves the previous one loses
            // its wake-up and waits for the thread's 1 s poll (a third of start-ups took
            // a second more, measured). A pause lets it drain first.
            std::thread::sleep(MOCK_REQUEST_SPACING);
        }
        if let Err(e) = cluster.create_topic(name, *partitions, 1) {
            let _ = ready.send(Err(anyhow::Error::new(e).context(format!(
                "creating topic {name} with {partitions} partitions"
            ))));
            return;
        }
    }
    if ready.send(Ok(cluster.bootstrap_servers())).is_err() {
        return;
    }
    while let Ok(command) = commands.recv() {
        match command {
            Command::BrokerDown(reply) => {
                let _ = reply.send(cluster.broker_down(BROKER_ID));
            }
            Command::BrokerUp(reply) => {
                let _ = reply.send(cluster.broker_up(BROKER_ID));
            }
        }
    }
    // `cluster` drops here, destroying the mock cluster on the thread that created it.
}

/// Accepts connections on `listener` and pipes each to `target` until aborted. Connection tasks
/// live in a `JoinSet` owned by this future, so aborting it tears them all down.
async fn forward(listener: TcpListener, target: String) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, peer)) => {
                    connections.spawn(forward_one(inbound, target.clone(), peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "embedded kafka forwarder: accept failed");
                    // Avoid spinning on persistent errors such as EMFILE.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Pipes one forwarded connection to the mock broker until either side closes.
async fn forward_one(mut inbound: TcpStream, target: String, peer: std::net::SocketAddr) {
    let mut outbound = match TcpStream::connect(&target).await {
        Ok(stream) => stream,
        Err(e) => {
            // Typically the broker is down: dropping `inbound` closes the client's connection.
            tracing::debug!(%peer, %target, error = %e, "embedded kafka forwarder: broker unreachable");
            return;
        }
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await {
        tracing::debug!(%peer, error = %e, "embedded kafka forwarder: connection closed");
    }
}

/// `cassa dev-kafka --port P`: runs the embedded broker alone with the given topics until Ctrl-C (tokio::signal::ctrl_c), printing the bootstrap address.
pub async fn run_dev_kafka(port: u16, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let kafka = EmbeddedKafka::start(Some(port), topics).await?;
    println!(
        "embedded kafka running; bootstrap.servers={}",
        kafka.bootstrap_servers()
    );
    for (name, partitions) in topics {
        println!("  topic {name} ({partitions} partitions)");
    }
    println!("press Ctrl-C to stop");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    drop(kafka);
    println!("embedded kafka stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{ClientConfig, Message};

    use super::*;

    /// Picks a currently free loopback port.
    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    fn producer(bootstrap: &str, message_timeout_ms: u32) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("message.timeout.ms", message_timeout_ms.to_string())
            .set("linger.ms", "0")
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "200")
            .create()
            .unwrap()
    }

    async fn send(
        producer: &FutureProducer,
        topic: &str,
        key: &str,
        payload: &str,
    ) -> KafkaResult<(i32, i64)> {
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Duration::from_secs(0),
            )
            .await
            .map_err(|(e, _)| e)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fixed_port_bootstrap_is_enough_to_produce_and_consume() {
        const TOPIC: &str = "payments";
        let port = free_port();
        let kafka = EmbeddedKafka::start(Some(port), &[(TOPIC, 3)])
            .await
            .unwrap();
        let bootstrap = kafka.bootstrap_servers();
        assert_eq!(bootstrap, format!("127.0.0.1:{port}"));
        assert_ne!(bootstrap, kafka.mock_bootstrap);

        let producer = producer(&bootstrap, 5000);
        send(&producer, TOPIC, "pay-1", "hello").await.unwrap();

        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "embedded-test")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .create()
            .unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        let message = tokio::time::timeout(Duration::from_secs(9), consumer.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message.key(), Some(&b"pay-1"[..]));
        assert_eq!(message.payload(), Some(&b"hello"[..]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broker_down_then_up() {
        const TOPIC: &str = "faults";
        let kafka = EmbeddedKafka::start(Some(free_port()), &[(TOPIC, 1)])
            .await
            .unwrap();
        let producer = producer(&kafka.bootstrap_servers(), 1000);
        send(&producer, TOPIC, "k", "before").await.unwrap();

        kafka.broker_down().unwrap();
        // Fails (message timeout) or at least does not succeed within the timeout.
        let outcome =
            tokio::time::timeout(Duration::from_secs(3), send(&producer, TOPIC, "k", "down")).await;
        assert!(
            !matches!(outcome, Ok(Ok(_))),
            "delivered while the broker was down: {outcome:?}"
        );

        kafka.broker_up().unwrap();
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            match send(&producer, TOPIC, "k", "after").await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "not yet reconnected");
                }
                Err(e) => panic!("broker did not come back: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn taken_port_is_an_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        assert!(EmbeddedKafka::start(Some(port), &[]).await.is_err());
    }

    #[tokio::test]
    async fn drop_stops_the_forwarder() {
        let kafka = EmbeddedKafka::start(Some(0), &[("t", 1)]).await.unwrap();
        let bootstrap = kafka.bootstrap_servers();
        assert!(!bootstrap.ends_with(":0"));
        TcpStream::connect(&bootstrap).await.unwrap();
        drop(kafka);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(&bootstrap).await.is_ok() {
            assert!(Instant::now() < deadline, "forwarder still listening");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn without_port_uses_the_mock_address() {
        let kafka = EmbeddedKafka::start(None, &[("t", 2)]).await.unwrap();
        assert_eq!(kafka.bootstrap_servers(), kafka.mock_bootstrap);
        assert!(kafka.bootstrap_servers().starts_with("127.0.0.1:"));
    }
}
