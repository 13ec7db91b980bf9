//! The `cassa` binary: parses the command line and runs the chosen command.

use std::process::ExitCode;

use cassa::config::{self, LogFormat};
use clap::{CommandFactory, Parser, Subcommand};

/// mimalloc: size-segregated pages keep hundreds of thousands of small, long-lived actor
/// allocations compact (glibc's per-thread arenas fragmented them: ~3.3 KB per resident
/// payment against ~1 KB of live data).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command line of `cassa`.
#[derive(Debug, Parser)]
#[command(
    name = "cassa",
    version,
    about = "Payment orchestrator for e-government platforms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `cassa` does.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (embedded SQLite + built-in simulator by default).
    Serve(Box<config::Settings>),
    /// Apply the database migrations and exit.
    Migrate(config::DatabaseArgs),
    /// Run the intermediary / payment-system simulator alone.
    Simulator(config::SimulatorArgs),
    /// Run the embedded Kafka broker alone, so several instances (and kcat) can share it.
    DevKafka(config::DevKafkaArgs),
    /// Mint a bearer token from the configured HS256 secret (for operators and scripts).
    Token(config::TokenArgs),
    /// Benchmarks: print key=value figures and append them to a markdown file.
    #[command(subcommand)]
    Bench(cassa::bench::BenchCommand),
    /// The wallets' double-entry journal.
    #[command(subcommand)]
    Ledger(LedgerCommand),
}

/// `cassa ledger …`.
#[derive(Debug, Clone, clap::Subcommand)]
enum LedgerCommand {
    /// Print every account whose balance or held money disagrees with its journal; exit
    /// non-zero when there is one.
    Check(config::DatabaseArgs),
}

fn init_tracing(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("CASSA_LOG / --log is not a valid filter: {e}"))?;
    // Logs on stderr: stdout carries what a command prints (demo banner, bench figures).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Adds the environment variable's name to clap's "invalid value for --flag" errors.
fn explain(error: clap::Error) -> String {
    let text = error.to_string();
    let flag = text
        .split("'--")
        .nth(1)
        .and_then(|rest| rest.split([' ', '\'']).next())
        .map(|flag| format!("CASSA_{}", flag.replace('-', "_").to_ascii_uppercase()));
    match flag {
        Some(var) if config::known_env(&Cli::command()).contains(&var) => {
            format!("{}\n(setting {var} or its flag)", text.trim_end())
        }
        _ => text,
    }
}

fn main() -> ExitCode {
    let known = config::known_env(&Cli::command());
    if let Err(message) = config::check_env(&known, std::env::vars()) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", explain(e));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve(settings) => init_tracing(&settings.log.filter, settings.log.format)
            .and_then(|()| actix_web::rt::System::new().block_on(serve(*settings))),
        Command::Migrate(db) => init_tracing("info", LogFormat::Text).and_then(|()| {
            actix_web::rt::System::new().block_on(async move {
                let store = cassa::store::open(&db.database_url).await?;
                tracing::info!(database = store.backend(), "migrations applied");
                Ok(())
            })
        }),
        Command::Simulator(args) => init_tracing("info", LogFormat::Text).and_then(|()| {
            actix_web::rt::System::new().block_on(async move {
                tracing::info!(addr = %args.addr, "simulator listening");
                // cassa's origin, from the push address when not given.
                let cassa_url = args.cassa_url.or_else(|| {
                    let notify = url::Url::parse(args.notify_url.as_deref()?).ok()?;
                    Some(notify.origin().ascii_serialization())
                });
                let config = cassa::simulator::SimulatorConfig {
                    hang_for: args.hang_for,
                    notify_url: args.notify_url,
                    push: true,
                    api_key: args.api_key,
                    cassa_url,
                    push_secret: args.push_secret,
                };
                Ok(cassa::simulator::serve(args.addr, config).await?)
            })
        }),
        Command::DevKafka(args) => init_tracing("info", LogFormat::Text).and_then(|()| {
            actix_web::rt::System::new().block_on(async move {
                let topics = args.topics.with_partitions(args.partitions);
                cassa::kafka::embedded::run_dev_kafka(args.port, &topics).await
            })
        }),
        Command::Token(args) => token(&args),
        Command::Ledger(LedgerCommand::Check(db)) => {
            match actix_web::rt::System::new().block_on(ledger_check(&db.database_url)) {
                Ok(0) => Ok(()),
                Ok(_) => return ExitCode::from(1),
                Err(e) => Err(e),
            }
        }
        Command::Bench(bench) => {
            let result = init_tracing("warn", LogFormat::Text).and_then(|()| {
                let system = actix_web::rt::System::new();
                let result = system.block_on(cassa::bench::run(bench));
                // A bench leaves the cassa it measured running (actors, relay, writes
                // in flight). Tearing its runtime down would drop database connections
                // outside of it, which sqlx answers with a panic: the process ends
                // here instead, once the figures are out.
                std::mem::forget(system);
                result
            });
            let _ = std::io::Write::flush(&mut std::io::stdout());
            let code = match result {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            };
            std::process::exit(code)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints every account whose row disagrees with its journal, and every hold that
/// outlived its payment; how many problems there are.
async fn ledger_check(database_url: &str) -> anyhow::Result<usize> {
    let started = std::time::Instant::now();
    let store = cassa::store::open(database_url).await?;
    let mismatches = store.ledger_mismatches().await?;
    let stale = store.stale_holds().await?;
    let money = cassa::domain::money::format_cents;
    for m in &mismatches {
        println!(
            "account {}: balance {} but the journal says {}; held {} but the journal says {}",
            m.account_id,
            money(m.balance_cents),
            money(m.journal_balance_cents),
            money(m.held_cents),
            money(m.journal_held_cents)
        );
    }
    for h in &stale {
        println!(
            "account {}: {} still held for payment {}, which is {}",
            h.account_id,
            money(h.amount_cents),
            h.payment_id,
            h.status
        );
    }
    println!(
        "{} account(s) disagree with the journal, {} hold(s) outlived their payment (checked in {:.3} s)",
        mismatches.len(),
        stale.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(mismatches.len() + stale.len())
}

async fn serve(settings: config::Settings) -> anyhow::Result<()> {
    let mut running = cassa::server::start(&settings, Default::default()).await?;
    if running.seeded {
        // Only an RS256 public key configured: nothing to mint demo tokens with.
        let tokens = cassa::seed::demo_tokens(&running.auth).unwrap_or_default();
        println!("{}", cassa::seed::banner(&running.public_url, &tokens));
    }
    if running.simulator.is_some() {
        println!(
            "simulator mounted at {}/sim (a fake intermediary anyone can drive: CASSA_SIMULATOR=off outside a demo)",
            running.public_url
        );
    }
    println!(
        "cassa listening on {} ({} database)",
        running.public_url,
        running.store.backend()
    );
    let stopped = (&mut running.server).await;
    cassa::server::drain(&running, &settings).await;
    stopped?;
    Ok(())
}

/// `cassa token`: prints a token minted from the configured (or kept embedded) secret.
fn token(args: &config::TokenArgs) -> anyhow::Result<()> {
    // The service's keys or none: new ones would mint tokens the service refuses.
    let (_, auth) = args
        .keys
        .resolve_keeping(&args.database, cassa::secrets::Keep::MustExist)?;
    let sub = match (&args.sub, args.role) {
        (Some(sub), _) => sub.clone(),
        (None, cassa::auth::Role::Citizen) => {
            anyhow::bail!("a citizen token needs --sub <user id (UUID)>")
        }
        (None, role) => format!("{}-cli", role.as_str()),
    };
    let token = auth.mint_with_tax_code(
        args.role,
        &sub,
        args.tenant,
        args.tax_code.as_ref(),
        args.ttl,
    )?;
    println!("{token}");
    Ok(())
}
