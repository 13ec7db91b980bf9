//! Intermediary/gateway simulator: an actix-web HTTP service that stands in for a
//! pagoPA-style payment intermediary (debt positions, checkout page, push
//! notifications) and for a wallet payment gateway (payment executions).
//!
//! Behaviour is chosen by the cents of the amount (`amount_cents % 100`):
//!
//! | cents | debt position (PAGOPA)                              | gateway (WALLET)                         |
//! |-------|-----------------------------------------------------|------------------------------------------|
//! | 1     | created normally                                    | REJECTED                                 |
//! | 2     | create and status calls sleep `hang_for`            | execute sleeps `hang_for`                |
//! | 3     | first 2 calls per iud (create + status) answer 503  | first 2 executes per payment_id → 503    |
//! | other | created normally                                    | APPROVED                                 |
//!
//! All state is in memory. Routes are mounted under `/sim` (see [`Simulator::configure`]).

mod routes;
mod state;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use serde::{Deserialize, Serialize};

/// Configuration of the simulator.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// How long "hanging" calls (amount cents == 2) sleep before answering. Default 30 s.
    pub hang_for: Duration,
    /// If set, when a position is paid the simulator POSTs a push notification here
    /// (fire-and-forget, errors only logged), unless the position carries its own notify_url.
    pub notify_url: Option<String>,
    /// Push "paid" notifications at all (off: the paying is only learnt by polling).
    pub push: bool,
    /// When set, the intermediary and gateway calls and the test hooks that pay or fail
    /// a position (not the citizen's checkout pages) need this `X-Api-Key`, as a real
    /// intermediary needs its credentials.
    pub api_key: Option<String>,
    /// cassa's public URL: after the checkout the citizen is sent to
    /// `<cassa_url>/v1/payments/{id}/landing` of the position's payment, never anywhere
    /// a request names (no open redirect). `None`: a "done" page instead.
    pub cassa_url: Option<String>,
    /// The secret its pushes are signed with (`X-Cassa-Signature`), as the service's
    /// `intermediary.credentials.push_secret` in cassa; `None`: unsigned pushes.
    pub push_secret: Option<String>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            hang_for: Duration::from_secs(30),
            notify_url: None,
            push: true,
            api_key: None,
            cassa_url: None,
            push_secret: None,
        }
    }
}

/// Whether `url` is an http(s) URL on a loopback address (`127.0.0.0/8`, `[::1]`,
/// `localhost`): the only place the simulator sends its pushes, so that whoever creates
/// a position cannot make it call elsewhere.
pub fn is_loopback_url(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Counters of the calls the simulator has served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SimulatorStats {
    /// Debt positions newly created (201).
    pub positions_created: u64,
    /// Creates that matched an existing iud (200, same position).
    pub duplicate_creates: u64,
    /// `GET /sim/positions/{iuv}` calls (all of them, including 404/503/hanging).
    pub status_calls: u64,
    /// Gateway executions that decided an outcome.
    pub gateway_executions: u64,
    /// Gateway executions that replayed a stored outcome.
    pub duplicate_executions: u64,
}

/// The simulator: cheap to clone, all clones share the same in-memory state.
#[derive(Clone)]
pub struct Simulator {
    state: Arc<state::State>,
}

impl Simulator {
    /// Creates a simulator with empty state.
    pub fn new(config: SimulatorConfig) -> Self {
        Self {
            state: Arc::new(state::State::new(config)),
        }
    }

    /// Mounts every `/sim/...` route on an actix-web app
    /// (`App::new().configure(|c| sim.configure(c))`).
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        routes::configure(cfg, Arc::clone(&self.state));
    }

    /// Current counters (same as `GET /sim/stats`).
    pub fn stats(&self) -> SimulatorStats {
        self.state.stats()
    }
}

/// Method and full path of each simulator route.
pub fn route_list() -> Vec<(actix_web::http::Method, String)> {
    routes::route_list()
}

/// Builds (without awaiting) an HTTP server running only the simulator on `listener`.
pub fn server(
    listener: TcpListener,
    config: SimulatorConfig,
) -> std::io::Result<actix_web::dev::Server> {
    let sim = Simulator::new(config);
    listener.set_nonblocking(true)?;
    let server = HttpServer::new(move || {
        let sim = sim.clone();
        App::new()
            .wrap(actix_web::middleware::from_fn(
                crate::http::security_headers,
            ))
            .configure(move |c| sim.configure(c))
    })
    .listen(listener)?
    .run();
    Ok(server)
}

/// Runs the simulator alone on `addr` until the process is stopped (used by `cassa simulator --addr`).
pub async fn serve(addr: SocketAddr, config: SimulatorConfig) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    tracing::info!(%addr, "simulator listening");
    server(listener, config)?.await
}

#[cfg(test)]
mod tests;
