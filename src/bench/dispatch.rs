//! `cassa bench dispatch`: application events turned into payments through Kafka.

use super::*;

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

pub(super) async fn dispatch(args: DispatchArgs) -> anyhow::Result<()> {
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
