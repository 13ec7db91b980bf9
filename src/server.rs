//! Start-up of `cassa serve`: open and migrate the store, seed the demo data, start the
//! registry (re-arming open payments in the background), mount the API and, when
//! `CASSA_SIMULATOR` is on (by default in the embedded mode), the simulator under `/sim`.

use std::net::TcpListener;
use std::sync::Arc;

use actix::{Actor, Addr};
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::actors::{Deps, PaymentRegistry};
use crate::config::{Role, Settings};
use crate::http::{self, AppState};
use crate::intermediary::{Intermediaries, Intermediary};
use crate::simulator::{Simulator, SimulatorConfig};
use crate::store::{self, Store};
use crate::{seed, store::StoreError};

/// A started cassa.
pub struct Running {
    /// Where the API listens.
    pub addr: std::net::SocketAddr,
    pub public_url: String,
    pub store: Arc<dyn Store>,
    pub registry: Addr<PaymentRegistry>,
    /// The HTTP server: await it to run until a stop signal.
    pub server: actix_web::dev::Server,
    /// Whether the demo data was seeded.
    pub seeded: bool,
    /// The built-in simulator, when mounted.
    pub simulator: Option<Simulator>,
    /// Kafka: broker (embedded or not), relay and consumers; dropping it stops them.
    pub kafka: crate::kafka::KafkaBridge,
    /// Verifies (and with an HS256 secret mints) the API's tokens.
    pub auth: Arc<crate::auth::Authenticator>,
}

/// Extra wiring for tests and benchmarks.
#[derive(Default)]
pub struct Overrides {
    /// Use this intermediary for every service instead of the configured ones.
    pub intermediary: Option<Arc<dyn Intermediary>>,
    /// Tests: outbound calls resolve names from this list only, never through DNS (so
    /// "a name that resolves to loopback" needs no real name server).
    pub resolve: Option<Vec<(String, std::net::IpAddr)>>,
}

/// How long a client may take to send a request's head; past it, a 408 and the
/// connection is closed.
pub const CLIENT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Starts cassa (inside an actix system) and returns once it accepts connections.
pub async fn start(settings: &Settings, overrides: Overrides) -> anyhow::Result<Running> {
    let (secrets, auth) = settings
        .security
        .keys
        .resolve(&settings.database)
        .map_err(anyhow::Error::msg)?;
    if let Some(path) = &secrets.kept_in {
        tracing::info!(path = %path.display(), "embedded mode: token and credential keys kept beside the database");
    }
    let auth = Arc::new(auth);
    let store = store::open(&settings.database.database_url).await?;
    let listener = TcpListener::bind(settings.http.addr)
        .with_context(|| format!("cannot listen on {} (CASSA_HTTP_ADDR)", settings.http.addr))?;
    let addr = listener.local_addr()?;
    let public_url = settings
        .http
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();
    let embedded = settings.embedded();
    let simulator_url = settings
        .intermediaries
        .simulator_url
        .clone()
        .unwrap_or_else(|| format!("{public_url}/sim"));
    let seeded = settings.seed_demo.unwrap_or(embedded);
    // The demo's simulator is the one host the seeded configuration calls: opened
    // exactly (its loopback address, for plain http), nothing else.
    let mut allow = settings.security.outbound_allow.clone();
    if seeded {
        allow = allow.with(
            crate::outbound::exact_entry_for(&simulator_url)
                .map_err(|e| anyhow::anyhow!("CASSA_SIMULATOR_URL: {e}"))?,
        );
    }
    let mut outbound = crate::outbound::Outbound::new(allow, crate::outbound::DEFAULT_TIMEOUT);
    if let Some(names) = &overrides.resolve {
        outbound = outbound.resolving_only(names);
    }
    let outbound = Arc::new(outbound);
    if seeded {
        seed::demo(store.as_ref(), &simulator_url)
            .await
            .map_err(|e: StoreError| anyhow::anyhow!("cannot seed the demo data: {e}"))?;
    }
    let intermediaries = match overrides.intermediary {
        Some(fixed) => Intermediaries::fixed(store.clone(), fixed),
        None => Intermediaries::from_config(
            store.clone(),
            secrets.secret_box.clone(),
            settings.intermediaries.timeout,
            settings.intermediaries.guard(),
            outbound.clone(),
        ),
    };
    let deps = Arc::new(Deps {
        store: store.clone(),
        intermediaries,
        schedule: settings.actors.poll_schedule.clone(),
        public_url: public_url.clone(),
        notify_platform: settings.roles.contains(&Role::Updater),
        outbound: outbound.clone(),
        passivate_after: (!settings.actors.passivate_after.is_zero())
            .then_some(settings.actors.passivate_after),
        timer_lag: None,
    });
    let arbiters = settings.actors.arbiters.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let instance = settings.instance_id();
    let kafka = crate::kafka::connect(&settings.kafka, &instance).await?;
    // Ownership by partition: nothing is owned until the group assigns partitions.
    let ownership = crate::actors::Ownership::Partitions {
        count: kafka.payments_partitions,
        owned: Default::default(),
    };
    let wheel = deps
        .passivate_after
        .map(|after| crate::actors::Wheel::for_passivation(after, settings.actors.max_resident));
    let mut registry = PaymentRegistry::new(deps.clone(), arbiters, ownership)
        .with_call_rate(settings.intermediaries.rate_limit)
        .with_handover(handover_grace(settings));
    if let Some(wheel) = wheel {
        registry = registry.with_wheel(wheel);
    }
    let registry = registry.start();
    let configs = Arc::new(crate::intake::ConfigCache::with_outbound(outbound.clone()));
    let kafka = crate::kafka::start(
        &settings.kafka,
        crate::kafka::Member {
            instance: &instance,
            roles: &settings.roles,
        },
        kafka,
        store.clone(),
        registry.clone(),
        public_url.clone(),
        configs.clone(),
    )?;
    // Nothing is re-armed here: the instance owns no payment until the group assigns it
    // partitions, and each assignment re-arms (and logs) the open payments it brings.
    // The built-in simulator signs its pushes as the demo service expects.
    let push_secret = if seeded && settings.simulator_mounted() {
        Some(
            seed::demo_push_secret(store.as_ref(), &secrets.secret_box)
                .await
                .map_err(|e| anyhow::anyhow!("cannot set the demo push secret: {e}"))?,
        )
    } else {
        None
    };
    let simulator = settings.simulator_mounted().then(|| {
        Simulator::new(SimulatorConfig {
            notify_url: Some(format!(
                "{public_url}/v1/intermediaries/{}/notify",
                seed::DEMO_SERVICE
            )),
            cassa_url: Some(public_url.clone()),
            push_secret,
            ..SimulatorConfig::default()
        })
    });
    if seeded && simulator.is_none() && settings.intermediaries.simulator_url.is_none() {
        tracing::warn!("the demo service points at {simulator_url}, but the simulator is not mounted (CASSA_SIMULATOR=off): set CASSA_SIMULATOR_URL");
    }
    let state = web::Data::new(AppState {
        store: store.clone(),
        registry: registry.clone(),
        public_url: public_url.clone(),
        deps: deps.clone(),
        auth: auth.clone(),
        secret_box: secrets.secret_box.clone(),
        create_limiter: http::ratelimit::RateLimiter::new(settings.http.create_rate_limit),
        link_limiter: http::ratelimit::RateLimiter::new(http::LINK_RATE),
        check_triggers: http::ratelimit::Cooldown::new(http::CHECK_TRIGGER_EVERY),
        configs,
    });
    let mounted = simulator.clone();
    let server = HttpServer::new(move || {
        let mounted = mounted.clone();
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(http::security_headers))
            .wrap(actix_web::middleware::Logger::new("%r %s %Dms").log_target("cassa::http"))
            .configure(http::app_config)
            .configure(move |cfg| {
                if let Some(sim) = &mounted {
                    sim.configure(cfg);
                }
            })
            .default_service(web::to(http::not_found))
    })
    .listen(listener)?
    .workers(2)
    // A client that sends its request slowly (or never finishes it) is cut off instead
    // of holding a connection: slow-loris clients cannot exhaust the server.
    .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
    .client_disconnect_timeout(std::time::Duration::from_secs(1))
    .keep_alive(std::time::Duration::from_secs(5))
    .shutdown_timeout(10)
    .run();
    let simulator_mounted = simulator.is_some();
    tracing::info!(%addr, %public_url, database = store.backend(), embedded, simulator = simulator_mounted, kafka = kafka.bootstrap(), "cassa is serving");
    Ok(Running {
        addr,
        public_url,
        store,
        registry,
        server,
        seeded,
        simulator,
        kafka,
        auth,
    })
}

/// Method and path of every route the server can mount, the simulator's included (it
/// is mounted only when asked): what the router answers, for tests to walk.
pub fn route_list() -> Vec<(actix_web::http::Method, String)> {
    let mut all = http::route_list();
    all.extend(crate::simulator::route_list());
    all
}

/// How long a step of a payment may still take on the instance that just lost it: one
/// intermediary call's time limit and a second for its write.
pub fn handover_grace(settings: &Settings) -> std::time::Duration {
    settings.intermediaries.timeout + std::time::Duration::from_secs(1)
}

/// A graceful stop, once the HTTP server has stopped: every payment actor finishes the
/// step it is in (so no other instance repeats it), then the Kafka consumers leave the
/// group. Bounded: a step is bounded by the intermediary time limit.
pub async fn drain(running: &Running, settings: &Settings) {
    let deadline = handover_grace(settings) + std::time::Duration::from_secs(2);
    match tokio::time::timeout(deadline, running.registry.send(crate::actors::Drain)).await {
        Ok(Ok(stopped)) => tracing::info!(stopped, "payment actors stopped"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the payment registry is gone"),
        Err(_) => tracing::warn!(
            ?deadline,
            "payment actors still busy at the deadline; stopping anyway"
        ),
    }
    running.kafka.stop();
}
