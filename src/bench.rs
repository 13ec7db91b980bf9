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

async fn actors(args: PaymentsArgs) -> anyhow::Result<()> {
    let (store, _, _dir) = database(args.database_url.clone()).await?;
    let n = args.payments;
    let far = time::now() + chrono::Duration::hours(2);
    let ids = seed(&store, n, |_| far).await?;
    let lag = Arc::new(TimerLag::default());
    let deps = deps(
        store.clone(),
        Arc::new(InstantIntermediary::default()),
        None,
        lag.clone(),
    );
    let before = rss_bytes();
    let started = Instant::now();
    let registry = PaymentRegistry::new(deps, cores(), Ownership::All).start();
    registry.send(RearmOpen).await??;
    loop {
        let resident = stats(&registry).await?.resident;
        progress("actors resident", resident, n);
        if resident >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spawn_seconds = started.elapsed().as_secs_f64();
    // Measure the steady state: every actor has loaded its row and armed its timer (an
    // actor still loading holds its query's buffers), and the allocator has settled.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let armed = stats(&registry).await?.armed_timers;
        progress("actors armed", armed.min(n), n);
        if armed >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes();

    // Every resident payment is now made due 10-15 s from its update; its actor reloads
    // and re-arms, and the lateness of each firing is recorded.
    eprintln!("re-timing the payments to fire within the next seconds");
    for (i, id) in ids.iter().enumerate() {
        if let Some(row) = store.payment(*id).await? {
            let at = time::now() + chrono::Duration::milliseconds(10_000 + (i % 5000) as i64);
            let mut payment = row.payment.clone();
            payment.links.update.next_check_at = Some(at);
            let mut change = Change::of(&row, payment, row.saga.clone());
            change.next_check_at = Some(at);
            store.update_payment(row.version, change).await?;
            registry.send(Touch(*id)).await?;
        }
        progress("re-timed", i + 1, n);
    }
    wait_for_timers(&lag, n, Duration::from_secs(60)).await;
    report(
        &args.out,
        "actors",
        &[
            ("open_payments", n.to_string()),
            ("rss_bytes", after.to_string()),
            (
                "bytes_per_payment",
                (after.saturating_sub(before) / n.max(1) as u64).to_string(),
            ),
            ("spawn_per_sec", format!("{:.0}", n as f64 / spawn_seconds)),
            ("timers_fired", lag.count().to_string()),
            ("timer_lag_p50_ms", ms(lag.quantile(0.5))),
            ("timer_lag_p99_ms", ms(lag.quantile(0.99))),
        ],
    )
}

async fn passivated(args: PaymentsArgs) -> anyhow::Result<()> {
    let (store, _, _dir) = database(args.database_url.clone()).await?;
    let n = args.payments;
    // One in a hundred is due soon; the rest are due in 15-75 minutes (passivated).
    let due_soon = (n / 100).max(1);
    let now = time::now();
    seed(&store, n - due_soon, |i| {
        now + chrono::Duration::seconds(900 + (i % 3600) as i64)
    })
    .await?;
    let soon = time::now();
    seed(&store, due_soon, |i| {
        soon + chrono::Duration::milliseconds(20_000 + (i % 10_000) as i64)
    })
    .await?;
    let lag = Arc::new(TimerLag::default());
    let after = Duration::from_secs(600);
    let deps = deps(
        store.clone(),
        Arc::new(InstantIntermediary::default()),
        Some(after),
        lag.clone(),
    );
    let before = rss_bytes();
    let registry = PaymentRegistry::new(deps, cores(), Ownership::All)
        .with_wheel(Wheel::for_passivation(after, 200_000))
        .start();
    registry.send(RearmOpen).await??;
    wait_for_timers(&lag, due_soon, Duration::from_secs(90)).await;
    let resident = stats(&registry).await?.resident;
    let rss = rss_bytes();
    report(
        &args.out,
        "passivated",
        &[
            ("open_payments", n.to_string()),
            ("resident_actors", resident.to_string()),
            ("rss_bytes", rss.to_string()),
            ("rss_growth_bytes", rss.saturating_sub(before).to_string()),
            ("timers_fired", lag.count().to_string()),
            ("timer_lag_p50_ms", ms(lag.quantile(0.5))),
            ("timer_lag_p99_ms", ms(lag.quantile(0.99))),
        ],
    )
}

async fn recovery(args: PaymentsArgs) -> anyhow::Result<()> {
    let (store, url, _dir) = database(args.database_url.clone()).await?;
    let n = args.payments;
    let now = time::now();
    // Overdue, as after a restart.
    seed(&store, n, |i| {
        now - chrono::Duration::milliseconds((i % 60_000) as i64)
    })
    .await?;
    drop(store);
    let (settings, _) = bench_settings(&url, "", &[])?;
    let intermediary = Arc::new(InstantIntermediary::default());
    let guarded = Arc::new(crate::intermediary::guard::GuardedIntermediary::new(
        intermediary.clone(),
        settings.intermediaries.guard(),
    ));
    reset_peak_rss();
    let started = Instant::now();
    let running = crate::server::start(
        &settings,
        crate::server::Overrides {
            intermediary: Some(guarded),
            ..Default::default()
        },
    )
    .await?;
    let base = running.public_url.clone();
    let registry = running.registry.clone();
    actix::spawn(running.server);
    // Asked from a thread of its own: this (system) thread is busy re-arming, and its
    // delays are not the server's.
    let serving = on_client_thread(move || async move {
        let client = reqwest::Client::new();
        while !client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(started.elapsed().as_secs_f64())
    })
    .await?;
    loop {
        let spawned = stats(&registry).await?.spawned as usize;
        progress("open payments re-armed", spawned.min(n), n);
        if spawned >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rearmed = started.elapsed().as_secs_f64();
    // Watch the call rate (and memory) for a few seconds under the limit.
    tokio::time::sleep(Duration::from_secs(5)).await;
    report(
        &args.out,
        "recovery",
        &[
            ("open_payments", n.to_string()),
            ("serving_http_after_s", format!("{serving:.2}")),
            ("all_rearmed_after_s", format!("{rearmed:.2}")),
            ("rss_bytes", rss_bytes().to_string()),
            ("peak_rss_bytes", peak_rss_bytes().to_string()),
            (
                "peak_intermediary_calls_per_sec",
                intermediary.peak_per_second().to_string(),
            ),
            (
                "intermediary_rate_limit_per_sec",
                settings.intermediaries.rate_limit.to_string(),
            ),
        ],
    )
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let (store, url, _dir) = database(args.database_url.clone()).await?;
    drop(store);
    let brokers = args.kafka_brokers.clone().unwrap_or_default();
    // One token creates everything here: the per-caller limit would measure itself.
    let (settings, topics) = bench_settings(&url, &brokers, &["--create-rate-limit", "0"])?;
    let running = crate::server::start(
        &settings,
        crate::server::Overrides {
            intermediary: Some(Arc::new(InstantIntermediary::default())),
            ..Default::default()
        },
    )
    .await?;
    let base = running.public_url.clone();
    let token = running
        .auth
        .mint(
            crate::auth::Role::System,
            "bench",
            None,
            Duration::from_secs(3600),
        )
        .map_err(anyhow::Error::msg)?;
    actix::spawn(running.server);
    // Measured in steady state: until the `payments` partitions are assigned, a create's
    // actor is not started (no instance owns it yet) and its first check waits for the
    // assignment, which would then land in the middle of the window.
    owning(&running.registry).await?;
    let body = serde_json::json!({
        "type": "PAGOPA", "tenant_id": DEMO_TENANT, "service_id": DEMO_SERVICE, "reason": "bench",
        "payment": {"amount": "10.00"},
        "payer": {"type": "human", "tax_identification_number": "RSSMRA80A01H501U", "name": "Bench"}
    });
    let window = Duration::from_secs(args.seconds) / args.rounds;
    let clients = args.concurrency;
    eprintln!(
        "durable creates over HTTP, then raw single-row INSERT+COMMIT into the same database: \
         {} clients, {} s each, in {} turns of {:.1} s",
        args.concurrency,
        args.seconds,
        args.rounds,
        window.as_secs_f64()
    );
    let events = EventClock::start(running.kafka.bootstrap(), &topics.payments)?;
    let mut http = Throughput::default();
    let mut raw = Throughput::default();
    for round in 1..=args.rounds {
        let (base, body, token) = (base.clone(), body.clone(), token.clone());
        let sent = events.sent.clone();
        http.add(
            on_client_thread(move || async move {
                let client = reqwest::Client::new();
                // Every client's connection is open before the window starts, as the raw
                // inserts' are.
                futures::future::try_join_all(
                    (0..clients).map(|_| client.get(format!("{base}/healthz")).send()),
                )
                .await?;
                concurrently(clients, window, || {
                    let (client, base, body, token, sent) = (
                        client.clone(),
                        base.clone(),
                        body.clone(),
                        token.clone(),
                        sent.clone(),
                    );
                    async move {
                        let asked = Instant::now();
                        let r = client
                            .post(format!("{base}/v1/payments"))
                            .bearer_auth(token)
                            .json(&body)
                            .send()
                            .await?;
                        anyhow::ensure!(
                            r.status().as_u16() == 202,
                            "create answered {}",
                            r.status()
                        );
                        // The id from `Location`, not the body: parsing the payment would
                        // cost the measured creates.
                        if let Some(id) = r
                            .headers()
                            .get(reqwest::header::LOCATION)
                            .and_then(|l| l.to_str().ok())
                            .and_then(|l| l.rsplit('/').next())
                        {
                            sent.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(id.to_string(), asked);
                        }
                        Ok(())
                    }
                })
                .await
            })
            .await?,
        );
        // The raw inserts run on an idle cassa: what the creates left to do (actor steps,
        // publishing) is finished first, so it does not slow the baseline down.
        settle(running.store.as_ref()).await?;
        let raw_url = url.clone();
        raw.add(
            on_client_thread(move || async move { raw_inserts(&raw_url, clients, window).await })
                .await?,
        );
        eprintln!(
            "turn {round}/{}: {:.0} creates/s, {:.0} raw inserts/s so far",
            args.rounds,
            http.per_sec(),
            raw.per_sec()
        );
    }
    let latency = events.latencies().await;
    let (http, raw) = (http.summary(), raw.summary());
    let ratio = ratio(http.per_sec, raw.per_sec);
    report(
        &args.out,
        "create",
        &[
            ("database", url.split(':').next().unwrap_or("?").to_string()),
            ("broker", broker_name(&brokers).to_string()),
            ("event_latency_p50_ms", format!("{:.1}", latency.p50_ms)),
            ("event_latency_p99_ms", format!("{:.1}", latency.p99_ms)),
            ("concurrency", args.concurrency.to_string()),
            ("creates_per_sec", format!("{:.0}", http.per_sec)),
            ("create_p50_ms", format!("{:.1}", http.p50_ms)),
            ("create_p99_ms", format!("{:.1}", http.p99_ms)),
            ("raw_insert_per_sec", format!("{:.0}", raw.per_sec)),
            ("ratio_vs_raw_insert", format!("{ratio:.2}")),
        ],
    )
}

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

/// An Opencity application waiting for a payment (event_version 2.0), for the demo service.
fn application_event(id: Uuid) -> serde_json::Value {
    serde_json::json!({
        "id": id, "event_id": Uuid::new_v4(), "event_version": "2.0",
        "tenant_id": DEMO_TENANT, "service_id": DEMO_SERVICE, "user": Uuid::new_v4(),
        "status_name": "status_payment_pending",
        "payment_data": {"amount": 16.5, "reason": "Occupazione suolo pubblico"},
        "data": {
            "applicant.data.completename.data.name": "Mario",
            "applicant.data.completename.data.surname": "Rossi",
            "applicant.data.fiscal_code.data.fiscal_code": "RSSMRA80A01H501U"
        }
    })
}

/// Payments made from applications (`remote_id` set) in the database at `url`.
async fn application_payments(url: &str) -> anyhow::Result<i64> {
    const COUNT: &str = "SELECT COUNT(*) FROM payments WHERE remote_id IS NOT NULL";
    if url.starts_with("sqlite:") {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(url).await?;
        Ok(sqlx::query_scalar(COUNT).fetch_one(&mut conn).await?)
    } else {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
        Ok(sqlx::query_scalar(COUNT).fetch_one(&mut conn).await?)
    }
}

async fn dispatch(args: DispatchArgs) -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let (store, url, _dir) = database(args.database_url.clone()).await?;
    drop(store);
    let brokers = args.kafka_brokers.clone().unwrap_or_default();
    let (settings, topics) = bench_settings(&url, &brokers, &[])?;
    let applications = topics.applications.clone();
    let running = crate::server::start(
        &settings,
        crate::server::Overrides {
            intermediary: Some(Arc::new(InstantIntermediary::default())),
            ..Default::default()
        },
    )
    .await?;
    let bootstrap = running.kafka.bootstrap().to_string();
    actix::spawn(running.server);
    owning(&running.registry).await?;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("acks", "all")
        .create()?;
    eprintln!(
        "dispatch: {} application events on {applications} ({}), then raw INSERT+COMMIT",
        args.events,
        if brokers.is_empty() {
            "embedded broker"
        } else {
            "Apache Kafka"
        }
    );
    let started = Instant::now();
    let events: Vec<(String, String)> = (0..args.events)
        .map(|_| {
            let id = Uuid::new_v4();
            (id.to_string(), application_event(id).to_string())
        })
        .collect();
    let sends = events.iter().map(|(key, payload)| {
        producer.send(
            FutureRecord::to(&applications).key(key).payload(payload),
            Duration::from_secs(30),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| anyhow::anyhow!("cannot produce an application: {e}"))?;
    }
    let produced = started.elapsed();
    eprintln!("produced in {:.1} s", produced.as_secs_f64());
    let wanted = args.events as i64;
    let limit = Duration::from_secs(600);
    // The rate counts from the first committed payment: before it the dispatcher's
    // consumer is still joining its group (seconds, whatever the database), which is
    // reported apart.
    let mut first: Option<(Instant, i64)> = None;
    loop {
        let done = application_payments(&url).await?;
        progress("payments", done as usize, args.events);
        if done > 0 && first.is_none() {
            first = Some((Instant::now(), done));
        }
        if done >= wanted {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "only {done} of {wanted} applications became payments within {} s",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (first_at, first_done) = first.unwrap_or((started, 0));
    let first_after = first_at.duration_since(started).as_secs_f64();
    let per_sec = (wanted - first_done) as f64 / first_at.elapsed().as_secs_f64().max(1e-3);
    settle(running.store.as_ref()).await?;
    let (raw_url, clients) = (url.clone(), args.concurrency);
    let window = Duration::from_secs(args.baseline_seconds);
    let raw = on_client_thread(move || async move { raw_inserts(&raw_url, clients, window).await })
        .await?
        .summary();
    let ratio = ratio(per_sec, raw.per_sec);
    report(
        &args.out,
        "dispatch",
        &[
            ("database", url.split(':').next().unwrap_or("?").to_string()),
            ("broker", broker_name(&brokers).to_string()),
            ("events", args.events.to_string()),
            ("first_payment_after_s", format!("{first_after:.1}")),
            ("applications_per_sec", format!("{per_sec:.0}")),
            ("raw_insert_per_sec", format!("{:.0}", raw.per_sec)),
            ("ratio_vs_raw_insert", format!("{ratio:.2}")),
        ],
    )
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
