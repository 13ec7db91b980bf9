//! `cassa bench …`: the figures behind the scale targets. Each command shows progress on
//! stderr, prints `key=value` figures on stdout at the end, and appends a markdown row
//! to `--out` (default `bench-results.md`). The intermediary is an in-process stand-in
//! that answers at once, so the figures are cassa's own, not a simulator's.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, Addr};
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::actors::{
    Deps, GetStats, Ownership, PaymentRegistry, RearmOpen, TimerLag, Touch, Wheel,
};
use crate::domain::money::Money;
use crate::domain::payment::{Links, Payer, PayerType, Payment, PaymentData, PaymentType};
use crate::domain::status::PaymentStatus;
use crate::domain::time;
use crate::intermediary::{
    GatewayOutcome, GatewayRequest, GatewayResult, Intermediaries, Intermediary, IntermediaryError,
    Position, PositionRequest, PositionState,
};
use crate::seed::{DEMO_SERVICE, DEMO_TENANT};
use crate::store::{Change, NewPayment, Store};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// N open payments resident as actors with pending timers: memory, spawn rate, timer lag.
    Actors(PaymentsArgs),
    /// N open payments in the database, most passivated: memory and timer lag.
    Passivated(PaymentsArgs),
    /// Restart with N overdue payments: time to serve HTTP, to re-arm, peak intermediary call rate.
    Recovery(PaymentsArgs),
    /// Durable HTTP creates per second next to raw INSERT+COMMIT at the same concurrency.
    Create(CreateArgs),
    /// N application events on `applications` until all are committed payments, next to
    /// raw INSERT+COMMIT into the same database.
    Dispatch(DispatchArgs),
}

/// Arguments of `cassa bench dispatch`.
#[derive(Debug, Clone, Args)]
pub struct DispatchArgs {
    /// Application events produced.
    #[arg(long, default_value = "5000")]
    pub events: usize,
    /// Kafka bootstrap servers (default: the embedded broker). Topics of the run's own
    /// are created there.
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// Clients of the raw INSERT+COMMIT baseline.
    #[arg(long, default_value = "16")]
    pub concurrency: usize,
    /// Seconds of the baseline.
    #[arg(long, default_value = "5")]
    pub baseline_seconds: u64,
    /// Database (default: a new SQLite file in a temporary directory).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Markdown file the results are appended to.
    #[arg(long, default_value = "bench-results.md")]
    pub out: PathBuf,
}

/// Arguments of the payment-count benchmarks.
#[derive(Debug, Clone, Args)]
pub struct PaymentsArgs {
    /// Open payments.
    #[arg(long, default_value = "100000")]
    pub payments: usize,
    /// Database (default: a new SQLite file in a temporary directory).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Markdown file the results are appended to.
    #[arg(long, default_value = "bench-results.md")]
    pub out: PathBuf,
}

/// Arguments of `cassa bench create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Concurrent clients.
    #[arg(long, default_value = "16")]
    pub concurrency: usize,
    /// Seconds each phase runs, in all.
    #[arg(long, default_value = "10")]
    pub seconds: u64,
    /// Slices each phase is cut into, the phases taking turns (creates, raw inserts,
    /// creates…): both see the machine alike when its speed drifts during the run.
    #[arg(long, default_value = "5", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Kafka bootstrap servers (default: the embedded broker). Topics of the run's own
    /// are created there.
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// Database (default: a new SQLite file in a temporary directory).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Markdown file the results are appended to.
    #[arg(long, default_value = "bench-results.md")]
    pub out: PathBuf,
}

/// Runs a benchmark.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Actors(args) => actors(args).await,
        BenchCommand::Passivated(args) => passivated(args).await,
        BenchCommand::Recovery(args) => recovery(args).await,
        BenchCommand::Create(args) => create(args).await,
        BenchCommand::Dispatch(args) => dispatch(args).await,
    }
}

/// An intermediary that answers at once (position pending, gateway approved) and counts
/// calls per second.
#[derive(Default)]
struct InstantIntermediary {
    calls: AtomicU64,
    per_second: Mutex<HashMap<u64, u64>>,
    started: Mutex<Option<Instant>>,
}

impl InstantIntermediary {
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        let second = started.get_or_insert_with(Instant::now).elapsed().as_secs();
        *self
            .per_second
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(second)
            .or_default() += 1;
    }

    fn peak_per_second(&self) -> u64 {
        self.per_second
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    fn position(iud: &str) -> Position {
        Position {
            iuv: iud.chars().take(17).collect(),
            notice_code: "3".repeat(18),
            status: PositionState::Pending,
            checkout_url: "http://bench.invalid/checkout".into(),
            paid_at: None,
            transaction_id: None,
        }
    }
}

#[async_trait]
impl Intermediary for InstantIntermediary {
    async fn create_position(
        &self,
        request: &PositionRequest,
    ) -> Result<Position, IntermediaryError> {
        self.count();
        Ok(Self::position(&request.iud))
    }
    async fn position(&self, iuv: &str) -> Result<Position, IntermediaryError> {
        self.count();
        Ok(Self::position(iuv))
    }
    async fn cancel_position(&self, _iuv: &str) -> Result<(), IntermediaryError> {
        self.count();
        Ok(())
    }
    async fn execute_payment(
        &self,
        request: &GatewayRequest,
    ) -> Result<GatewayResult, IntermediaryError> {
        self.count();
        Ok(GatewayResult {
            outcome: GatewayOutcome::Approved,
            transaction_id: request.payment_id.to_string(),
        })
    }
}

/// Resident memory of this process, from /proc.
fn rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}

/// Highest resident memory of this process since the last `reset_peak_rss` (or since
/// it started), from /proc.
fn peak_rss_bytes() -> u64 {
    status_bytes("VmHWM:")
}

/// A `kB` field of /proc/self/status, in bytes (0 when unreadable).
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Starts the peak of `peak_rss_bytes` over from the current RSS (Linux: `clear_refs`).
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak RSS ({e}): peak_rss_bytes counts the seeding too");
    }
}

/// A database for the run: the given URL, or a new SQLite file (kept alive by the dir).
async fn database(
    url: Option<String>,
) -> anyhow::Result<(Arc<dyn Store>, String, Option<tempfile_dir::Dir>)> {
    match url {
        Some(url) => Ok((crate::store::open(&url).await?, url, None)),
        None => {
            let dir = tempfile_dir::Dir::new()?;
            let url = format!("sqlite://{}/bench.db", dir.path.display());
            Ok((crate::store::open(&url).await?, url, Some(dir)))
        }
    }
}

/// A temporary directory removed on drop (no extra crate for one directory).
mod tempfile_dir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }

    impl Dir {
        pub fn new() -> std::io::Result<Self> {
            let path =
                std::env::temp_dir().join(format!("cassa-bench-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&path)?;
            Ok(Dir { path })
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// An open PAGOPA payment (debt position created) due at `next_check_at`.
fn open_payment(next_check_at: DateTime<Utc>) -> anyhow::Result<NewPayment> {
    let now = time::now();
    let id = Uuid::new_v4();
    let iud = Payment::iud_for(id);
    let mut payment = Payment {
        id,
        user_id: Uuid::new_v4(),
        kind: PaymentType::Pagopa,
        tenant_id: DEMO_TENANT,
        service_id: DEMO_SERVICE,
        created_at: now,
        updated_at: now,
        status: PaymentStatus::PaymentPending,
        reason: "bench".into(),
        status_message: None,
        remote_id: None,
        payment: PaymentData {
            amount: Money::from_cents(1000)?,
            currency: "EUR".into(),
            expire_at: None,
            notice_code: Some("3".repeat(18)),
            iuv: Some(iud.chars().take(17).collect()),
            iud,
            transaction_id: None,
            paid_at: None,
            split: vec![],
        },
        links: Links::default(),
        payer: Payer {
            kind: PayerType::Human,
            tax_identification_number: "RSSMRA80A01H501U".parse()?,
            name: "Bench".into(),
            family_name: None,
            street_name: None,
            building_number: None,
            postal_code: None,
            town_name: None,
            country_subdivision: None,
            country: None,
            email: None,
        },
        debtor: None,
        locale: None,
        wallet_account_id: None,
        created_by: None,
        top_up_account_id: None,
    };
    payment.links.update.next_check_at = Some(next_check_at);
    Ok(NewPayment {
        payment,
        saga: Default::default(),
        next_check_at: Some(next_check_at),
        idempotency: None,
        hold: None,
    })
}

fn progress(label: &str, done: usize, total: usize) {
    if total > 0 && (done.is_multiple_of((total / 100).max(1)) || done == total) {
        eprint!("\r{label}: {done}/{total} ({}%)   ", done * 100 / total);
        if done == total {
            eprintln!();
        }
    }
}

/// Payments stored per transaction while seeding.
const SEED_CHUNK: usize = 2000;

/// Stores `n` open payments, due as `due(i)` says; returns the ids.
async fn seed(
    store: &Arc<dyn Store>,
    n: usize,
    due: impl Fn(usize) -> DateTime<Utc>,
) -> anyhow::Result<Vec<Uuid>> {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for chunk_start in (0..n).step_by(SEED_CHUNK) {
        let chunk: Vec<NewPayment> = (chunk_start..(chunk_start + SEED_CHUNK).min(n))
            .map(|i| open_payment(due(i)))
            .collect::<anyhow::Result<_>>()?;
        store.import_payments(&chunk).await?;
        ids.extend(chunk.iter().map(|new| new.payment.id));
        progress("storing open payments", ids.len(), n);
    }
    eprintln!(
        "stored {n} payments in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(ids)
}

fn deps(
    store: Arc<dyn Store>,
    intermediary: Arc<dyn Intermediary>,
    passivate_after: Option<Duration>,
    lag: Arc<TimerLag>,
) -> Arc<Deps> {
    Arc::new(Deps {
        intermediaries: Intermediaries::fixed(store.clone(), intermediary),
        store,
        schedule: Default::default(),
        public_url: "http://bench.invalid".into(),
        notify_platform: false,
        outbound: Arc::new(crate::outbound::Outbound::new(
            Default::default(),
            crate::outbound::DEFAULT_TIMEOUT,
        )),
        passivate_after,
        timer_lag: Some(lag),
    })
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

async fn stats(registry: &Addr<PaymentRegistry>) -> anyhow::Result<crate::actors::RegistryStats> {
    registry.send(GetStats).await.context("registry gone")
}

/// Waits until `lag` has `n` samples (or `limit` passes), showing progress.
async fn wait_for_timers(lag: &TimerLag, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while lag.count() < n && Instant::now() < deadline {
        progress("timers fired", lag.count(), n);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    progress("timers fired", lag.count(), n);
}

/// Prints the figures and appends them to the markdown file.
fn report(out: &PathBuf, bench: &str, figures: &[(&str, String)]) -> anyhow::Result<()> {
    let line: Vec<String> = figures.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{}", line.join(" "));
    let fresh = !out.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)?;
    if fresh {
        writeln!(file, "| when | bench | figures |\n|---|---|---|")?;
    }
    writeln!(
        file,
        "| {} | {bench} | {} |",
        time::format(&time::now()),
        line.join(" ")
    )?;
    Ok(())
}

fn ms(value: Option<u32>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "n/a".into())
}

mod create;
mod dispatch;
mod payments;

use create::create;
use dispatch::dispatch;
use payments::{actors, passivated, recovery};

/// Settings of a benchmark's cassa on `url`: throw-away keys (a PostgreSQL database
/// would otherwise need them configured), the demo data, warnings only, and `extra`
/// flags. On a real cluster (`brokers`) the run's own topics and group: an earlier run's
/// records would otherwise be consumed again.
fn bench_settings(
    url: &str,
    brokers: &str,
    extra: &[&str],
) -> anyhow::Result<(crate::config::Settings, crate::config::Topics)> {
    let keys = (
        crate::secrets::random_base64(32),
        crate::secrets::random_base64(32),
    );
    let tag = Uuid::new_v4().simple().to_string();
    let topic = |name: &str| {
        if brokers.is_empty() {
            name.to_string()
        } else {
            format!("bench-{name}-{tag}")
        }
    };
    let (applications, payments, dead_letter, group) = (
        topic("applications"),
        topic("payments"),
        topic("cassa-dead-letter"),
        format!("bench-{tag}"),
    );
    let mut argv = vec![
        "cassa",
        "--http-addr",
        "127.0.0.1:0",
        "--database-url",
        url,
        "--jwt-secret",
        &keys.0,
        "--secret-key",
        &keys.1,
        "--seed-demo",
        "true",
        "--log",
        "warn",
        "--kafka-brokers",
        brokers,
        "--kafka-group",
        &group,
        "--topic-applications",
        &applications,
        "--topic-payments",
        &payments,
        "--topic-dead-letter",
        &dead_letter,
    ];
    argv.extend_from_slice(extra);
    let settings = crate::config::Settings::parse_from(argv).map_err(|e| anyhow::anyhow!("{e}"))?;
    let topics = settings.kafka.topics.clone();
    Ok((settings, topics))
}

/// The `broker` figure: which Kafka a bench ran against.
fn broker_name(brokers: &str) -> &'static str {
    if brokers.is_empty() {
        "embedded"
    } else {
        "apache"
    }
}

/// `measured` against the same run's `baseline` (0 without a baseline).
fn ratio(measured: f64, baseline: f64) -> f64 {
    if baseline > 0.0 {
        measured / baseline
    } else {
        0.0
    }
}

/// When each created payment's first event reached the `payments` topic, against when
/// its create was asked: a consumer on a thread of its own, reading from the end.
struct EventClock {
    sent: Arc<Mutex<HashMap<String, Instant>>>,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EventClock {
    fn start(bootstrap: &str, topic: &str) -> anyhow::Result<Self> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::Message;

        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("bench-clock-{}", Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut assignment = rdkafka::TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            assignment.add_partition_offset(topic, partition.id(), rdkafka::Offset::End)?;
        }
        consumer.assign(&assignment)?;
        let clock = EventClock {
            sent: Arc::default(),
            seen: Arc::default(),
            stop: Arc::default(),
        };
        let (seen, stop) = (clock.seen.clone(), clock.stop.clone());
        std::thread::Builder::new()
            .name("bench-event-clock".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                        let at = Instant::now();
                        if let Some(Ok(key)) = message.key_view::<str>() {
                            seen.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry(key.to_string())
                                .or_insert(at);
                        }
                    }
                }
            })?;
        Ok(clock)
    }

    /// The latencies of the creates whose event arrived (waiting up to 30 s for the
    /// last ones), then stops the consumer.
    async fn latencies(&self) -> Summary {
        let started = Instant::now();
        let samples = loop {
            let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let samples: Vec<f64> = sent
                .iter()
                .filter_map(|(id, asked)| seen.get(id).map(|at| at.duration_since(*asked)))
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect();
            if samples.len() == sent.len() || started.elapsed() > Duration::from_secs(30) {
                eprintln!(
                    "events seen for {} of {} creates",
                    samples.len(),
                    sent.len()
                );
                break samples;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.stop.store(true, Ordering::Relaxed);
        Throughput {
            samples,
            seconds: 1.0,
        }
        .summary()
    }
}

/// Waits until the registry owns its share of the `payments` partitions (at most a minute).
async fn owning(registry: &Addr<PaymentRegistry>) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        match stats(registry).await?.owned_partitions {
            None => return Ok(()),
            Some(n) if n > 0 => {
                eprintln!(
                    "partitions assigned after {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Some(_) if started.elapsed() > Duration::from_secs(60) => {
                anyhow::bail!("no partition of `payments` assigned within a minute")
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits until the outbox has stayed empty for half a second (at most a minute).
async fn settle(store: &dyn crate::store::Store) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut empty_since: Option<Instant> = None;
    while started.elapsed() < Duration::from_secs(60) {
        if store.unpublished_events(1).await?.is_empty() {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_millis(500) {
                eprintln!("cassa idle after {:.1} s", started.elapsed().as_secs_f64());
                return Ok(());
            }
        } else {
            empty_since = None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("cassa still publishing after 60 s; measuring the baseline anyway");
    Ok(())
}

/// Runs a load generator on a thread and runtime of its own (both phases alike), so the
/// clients do not share cassa's system thread, where the registry, the SQLite writer,
/// the outbox relay and the Kafka consumers run. They still share the machine's cores.
async fn on_client_thread<F, Fut, T>(load: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
    T: Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-clients".into())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(load()));
            let _ = done.send(outcome);
        })?;
    result.await.context("the bench client thread died")?
}

/// Operations timed over one or more windows.
#[derive(Default)]
struct Throughput {
    /// Each operation's latency, in ms.
    samples: Vec<f64>,
    /// The windows' total length, in s.
    seconds: f64,
}

struct Summary {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Throughput {
    /// Adds another window's operations.
    fn add(&mut self, other: Throughput) {
        self.samples.extend(other.samples);
        self.seconds += other.seconds;
    }

    fn per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.samples.len() as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn summary(mut self) -> Summary {
        self.samples.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| {
            self.samples
                .get(((self.samples.len().max(1) - 1) as f64 * q) as usize)
                .copied()
                .unwrap_or(0.0)
        };
        Summary {
            per_sec: self.per_sec(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
        }
    }
}

/// Runs `op` from `clients` loops for `window`; each operation's latency.
async fn concurrently<F, Fut>(clients: usize, window: Duration, op: F) -> anyhow::Result<Throughput>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + 'static,
{
    let started = Instant::now();
    let deadline = started + window;
    let loops = (0..clients).map(|_| async {
        let mut samples = Vec::new();
        while Instant::now() < deadline {
            let t = Instant::now();
            op().await?;
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::Ok(samples)
    });
    let mut samples: Vec<f64> = Vec::new();
    for result in futures::future::join_all(loops).await {
        samples.extend(result?);
    }
    Ok(Throughput {
        samples,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Single-row INSERT + COMMIT into a scratch table of the same database, same concurrency.
async fn raw_inserts(url: &str, clients: usize, window: Duration) -> anyhow::Result<Throughput> {
    if url.starts_with("sqlite:") {
        use std::str::FromStr;
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        // One writer, as cassa's own SQLite store has.
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_raw (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
        )
        .execute(&pool)
        .await?;
        concurrently(clients, window, || {
            let pool = pool.clone();
            async move {
                sqlx::query("INSERT INTO bench_raw (id, body) VALUES ($1, $2)")
                    .bind(Uuid::new_v4().to_string())
                    .bind("{}")
                    .execute(&pool)
                    .await?;
                Ok(())
            }
        })
        .await
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(clients as u32)
            .connect(url)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_raw (id UUID PRIMARY KEY, body JSONB NOT NULL)",
        )
        .execute(&pool)
        .await?;
        // Every client's connection is open before the window starts.
        drop(futures::future::try_join_all((0..clients).map(|_| pool.acquire())).await?);
        concurrently(clients, window, || {
            let pool = pool.clone();
            async move {
                sqlx::query("INSERT INTO bench_raw (id, body) VALUES ($1, '{}')")
                    .bind(Uuid::new_v4())
                    .execute(&pool)
                    .await?;
                Ok(())
            }
        })
        .await
    }
}
