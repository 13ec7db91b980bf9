//! `cassa bench create`: payments created over HTTP against raw inserts.

use super::*;

pub(super) async fn create(args: CreateArgs) -> anyhow::Result<()> {
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
