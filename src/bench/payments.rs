//! `cassa bench actors`, `passivated` and `recovery`: open payments held, woken and
//! recovered.

use super::*;

pub(super) async fn actors(args: PaymentsArgs) -> anyhow::Result<()> {
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

pub(super) async fn passivated(args: PaymentsArgs) -> anyhow::Result<()> {
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

pub(super) async fn recovery(args: PaymentsArgs) -> anyhow::Result<()> {
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
