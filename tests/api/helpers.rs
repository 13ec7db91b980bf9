//! `TestApp`: a cassa and a simulator for one test, each on its own port, with a fresh
//! database. PostgreSQL tests need `TEST_PG_URL` (an admin URL; `bash .ci/run` sets
//! it); each test gets its own database created from it.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use cassa::actors::{GetStats, PaymentRegistry, RegistryStats};
use cassa::auth::{Authenticator, Role};
use cassa::config::Settings;
use cassa::intermediary::Intermediary;
use cassa::seed::{DEMO_ACCOUNT, DEMO_CITIZEN, DEMO_SERVICE, DEMO_TAX_CODE, DEMO_TENANT};
use cassa::server::{self, Overrides};
use cassa::simulator::{self, SimulatorConfig, SimulatorStats};
use cassa::store::Store;
use serde_json::{json, Value};
use sqlx::Connection;
use uuid::Uuid;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Whether PostgreSQL tests cannot run here (`TEST_PG_URL` unset): says so on the
/// terminal itself (libtest captures only the print macros), naming the test.
pub fn postgres_skipped(test: &str) -> bool {
    if std::env::var_os("TEST_PG_URL").is_some() {
        return false;
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: TEST_PG_URL is unset (bash .ci/run sets it up)"
    );
    true
}

/// A fresh database; the temp dir lives as long as this.
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    /// A PostgreSQL test database: (admin URL, name), dropped with this.
    pub pg: Option<(String, String)>,
}

impl Drop for TestDatabase {
    /// Drops a PostgreSQL test database (closing what still uses it), so test runs do not
    /// pile databases up in the cluster. Best effort, on a thread of its own: `drop`
    /// cannot wait for the test's runtime.
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        let dropping = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        });
        let _ = dropping.join();
    }
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/cassa.db", dir.path().display());
                TestDatabase {
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres => {
                let admin = std::env::var("TEST_PG_URL").expect(
                    "PostgreSQL tests need TEST_PG_URL, e.g. postgres://cassa:cassa@127.0.0.1:5432/postgres (bash .ci/run sets it up)",
                );
                let name = format!("cassa_test_{}", Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to TEST_PG_URL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                TestDatabase {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    pg: Some((admin.clone(), name)),
                }
            }
        }
    }
}

/// A simulator on its own port.
pub struct TestSimulator {
    pub base: String,
    /// The `X-Api-Key` it requires, if any (its test hooks need it too).
    pub api_key: Option<String>,
}

impl TestSimulator {
    /// Starts serving on `listener` (bind one early to reserve the port).
    pub fn serve(listener: TcpListener) -> Self {
        Self::serve_with(listener, true)
    }

    /// Serves without "paid" pushes: cassa can learn payments only by polling.
    pub fn serve_without_push(listener: TcpListener) -> Self {
        Self::serve_with(listener, false)
    }

    /// Serves, refusing intermediary calls without this `X-Api-Key`.
    pub fn serve_with_key(listener: TcpListener, api_key: &str) -> Self {
        Self::serve_config(listener, true, Some(api_key.to_string()))
    }

    fn serve_with(listener: TcpListener, push: bool) -> Self {
        Self::serve_config(listener, push, None)
    }

    fn serve_config(listener: TcpListener, push: bool, api_key: Option<String>) -> Self {
        let base = format!("http://{}/sim", listener.local_addr().unwrap());
        let config = SimulatorConfig {
            hang_for: Duration::from_secs(3),
            notify_url: None,
            push,
            api_key: api_key.clone(),
            cassa_url: None,
            push_secret: Some(TEST_PUSH_SECRET.into()),
        };
        actix_rt::spawn(simulator::server(listener, config).unwrap());
        TestSimulator { base, api_key }
    }

    pub fn start() -> Self {
        Self::serve(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    pub async fn stats(&self) -> SimulatorStats {
        reqwest::get(format!("{}/stats", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A request to the simulator, with its API key if it has one.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        match &self.api_key {
            Some(key) => request.header("X-Api-Key", key),
            None => request,
        }
    }

    pub async fn position(&self, iuv: &str) -> Value {
        self.request(reqwest::Method::GET, &format!("/positions/{iuv}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn pay(&self, iuv: &str) {
        let r = self
            .request(reqwest::Method::POST, &format!("/positions/{iuv}/pay"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "pay at simulator: {}", r.status());
    }
}

/// One cassa under test.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub registry: actix::Addr<PaymentRegistry>,
    pub sim: TestSimulator,
    pub kafka: cassa::kafka::KafkaBridge,
    pub _db: TestDatabase,
}

/// The HS256 secret every test instance uses (so tests can mint tokens).
pub const TEST_JWT_SECRET: &str = "cassa-test-secret-0123456789abcdef";
/// The credential key every test instance uses (32 bytes, base64).
/// What the test simulators sign their pushes with (the demo service's push secret).
pub const TEST_PUSH_SECRET: &str = "cassa-test-push-secret";
pub const TEST_SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// What the tests' instances may call and redirect to: the simulators and notify
/// receivers the tests run on loopback, over plain http, and the landing host of
/// `pagopa_body` (never called, only redirected to). The guard tests (`outbound.rs`)
/// start with nothing allowed instead.
pub const TEST_OUTBOUND_ALLOW: &str = "http://127.0.0.1,http://platform.example";

/// A token for `role` minted with the tests' secret, valid for an hour.
pub fn token(role: Role, tenant: Option<Uuid>, sub: &str) -> String {
    Authenticator::new(Some(TEST_JWT_SECRET), None)
        .unwrap()
        .mint(role, sub, tenant, Duration::from_secs(3600))
        .unwrap()
}

/// The admin's token.
pub fn admin_token() -> String {
    token(Role::Admin, None, "test-admin")
}

/// The demo citizen's token (the owner of the demo wallet), with the demo tax code.
pub fn citizen_token() -> String {
    citizen_token_for(DEMO_CITIZEN, Some(DEMO_TAX_CODE))
}

/// A citizen token of the demo tenant for `user`, carrying `tax_code` in its claim.
pub fn citizen_token_for(user: Uuid, tax_code: Option<&str>) -> String {
    citizen_token_in(DEMO_TENANT, user, tax_code)
}

/// A citizen token of `tenant` for `user`, carrying `tax_code` in its claim.
pub fn citizen_token_in(tenant: Uuid, user: Uuid, tax_code: Option<&str>) -> String {
    let tax_code = tax_code.map(|t| t.parse().unwrap());
    Authenticator::new(Some(TEST_JWT_SECRET), None)
        .unwrap()
        .mint_with_tax_code(
            Role::Citizen,
            &user.to_string(),
            Some(tenant),
            tax_code.as_ref(),
            Duration::from_secs(3600),
        )
        .unwrap()
}

/// An HTTP client that does not follow redirects and sends `token` on every request.
pub fn client_with(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

/// POSTs `body` to `url` as `client`: the status and the JSON answer (null when none).
pub async fn send_json(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = client.post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// GETs `url` as `client` and reads the JSON answer.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// A client acting as the admin (most tests are not about authorisation).
pub fn admin_client() -> reqwest::Client {
    client_with(Some(&admin_token()))
}

/// Environment for a `cassa` process that accepts the tests' tokens.
pub fn key_env() -> [(&'static str, &'static str); 3] {
    [
        ("CASSA_JWT_SECRET", TEST_JWT_SECRET),
        ("CASSA_SECRET_KEY", TEST_SECRET_KEY),
        ("CASSA_OUTBOUND_ALLOW", TEST_OUTBOUND_ALLOW),
    ]
}

/// Settings of a test instance: port 0, a fast poll schedule, short intermediary timeout;
/// none read from the developer's `CASSA_*` variables.
pub fn test_settings(db_url: &str, sim_base: &str) -> Settings {
    Settings::for_tests([
        "--http-addr",
        "127.0.0.1:0",
        "--database-url",
        db_url,
        "--jwt-secret",
        TEST_JWT_SECRET,
        "--secret-key",
        TEST_SECRET_KEY,
        "--seed-demo",
        "true",
        "--simulator-url",
        sim_base,
        "--poll-schedule",
        "*:1s",
        "--intermediary-timeout",
        "1s",
        "--arbiters",
        "2",
        "--kafka-session-timeout",
        "3s",
        "--outbound-allow",
        TEST_OUTBOUND_ALLOW,
    ])
    .unwrap()
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}, Overrides::default()).await
    }

    pub async fn spawn_with(
        backend: Backend,
        tune: impl FnOnce(&mut Settings),
        overrides: Overrides,
    ) -> Self {
        Self::spawn_full(backend, tune, overrides, true).await
    }

    /// A cassa whose simulator never pushes: payments are learnt by polling only.
    pub async fn spawn_polling_only(backend: Backend) -> Self {
        Self::spawn_full(backend, |_| {}, Overrides::default(), false).await
    }

    /// Full control: settings, overrides, and whether the simulator pushes.
    pub async fn spawn_full(
        backend: Backend,
        tune: impl FnOnce(&mut Settings),
        overrides: Overrides,
        push: bool,
    ) -> Self {
        let db = TestDatabase::new(backend).await;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sim = if push {
            TestSimulator::serve(listener)
        } else {
            TestSimulator::serve_without_push(listener)
        };
        let mut settings = test_settings(&db.url, &sim.base);
        tune(&mut settings);
        let running = server::start(&settings, overrides).await.unwrap();
        // The demo service takes the test simulator's signed pushes.
        let secret_box = cassa::secrets::SecretBox::from_setting(TEST_SECRET_KEY).unwrap();
        cassa::seed::set_push_secret(
            running.store.as_ref(),
            &secret_box,
            DEMO_SERVICE,
            TEST_PUSH_SECRET,
        )
        .await
        .unwrap();
        actix_rt::spawn(running.server);
        let kafka = running.kafka;
        TestApp {
            base: running.public_url,
            client: admin_client(),
            store: running.store,
            registry: running.registry,
            sim,
            kafka,
            _db: db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET` a path of this cassa (redirects are not followed).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// `GET` a path asking for one media type (`Accept`).
    pub async fn get_accepting(&self, path: &str, accept: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("Accept", accept)
            .send()
            .await
            .unwrap()
    }

    /// Creates a payment and answers its id.
    pub async fn create_id(&self, body: &Value) -> String {
        self.create(body).await["id"].as_str().unwrap().to_string()
    }

    /// Waits for a PAGOPA payment's position, pays it at the simulator and asks cassa to
    /// check: the payment as the check answers it (COMPLETE).
    pub async fn pay_and_check(&self, id: &str) -> Value {
        let pending = self.wait_for(id, "PAYMENT_PENDING", 10).await;
        self.sim
            .pay(pending["payment"]["iuv"].as_str().unwrap())
            .await;
        let done: Value = self
            .post(&format!("/v1/payments/{id}/update"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(done["status"], "COMPLETE", "{done}");
        done
    }

    /// `POST` a path of this cassa without a body.
    pub async fn post(&self, path: &str) -> reqwest::Response {
        self.client.post(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a payment and expects 202; returns its JSON. A WALLET payment is created
    /// with the demo citizen's token: only a wallet's owner may spend it.
    pub async fn create(&self, body: &Value) -> Value {
        let client = if body["type"] == "WALLET" {
            client_with(Some(&citizen_token()))
        } else {
            self.client.clone()
        };
        let response = client
            .post(self.url("/v1/payments"))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 202, "create answered {status}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn get_payment(&self, id: &str) -> Value {
        let r = self
            .client
            .get(self.url(&format!("/v1/payments/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn account(&self) -> Value {
        self.client
            .get(self.url(&format!("/v1/accounts/{DEMO_ACCOUNT}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn registry_stats(&self) -> RegistryStats {
        self.registry.send(GetStats).await.unwrap()
    }

    /// Waits (polling the API) until the payment has `status`; fails after `seconds`.
    pub async fn wait_for(&self, id: &str, status: &str, seconds: u64) -> Value {
        wait_for_status(&self.client, &self.base, id, status, seconds).await
    }

    /// Outbox events of a payment, oldest first.
    pub async fn events(&self, id: &str) -> Vec<Value> {
        self.store
            .payment_events(Uuid::parse_str(id).unwrap())
            .await
            .unwrap()
    }
}

/// Polls `GET /v1/payments/{id}` until it shows `status`.
pub async fn wait_for_status(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    status: &str,
    seconds: u64,
) -> Value {
    let what = format!("payment {id} reaching {status}");
    eventually(&what, Duration::from_secs(seconds), || async {
        let sent = client.get(format!("{base}/v1/payments/{id}")).send().await;
        match sent.map_err(|e| e.to_string()) {
            Ok(r) => match r.json::<Value>().await {
                Ok(body) if body["status"] == status => Ok(body),
                Ok(body) => Err(body.to_string()),
                Err(e) => Err(format!("no JSON: {e}")),
            },
            Err(e) => Err(format!("no answer: {e}")),
        }
    })
    .await
}

/// How often `eventually` asks again.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// Asks `probe` every `every` until it answers `Ok`, for at most `timeout` (at least
/// once): that answer, or the last `Err` once the time is up. The clock is tokio's, so
/// in paused time the sleeps advance it and let timers fire (`timeout` is virtual time
/// there). For the waits that report their last reading instead of failing.
pub async fn poll<T, E, F, Fut>(timeout: Duration, every: Duration, mut probe: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(done) => return Ok(done),
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(every).await;
    }
}

/// What a probe of `eventually` answers: done (with a value), or not yet.
pub trait Probed {
    type Value;
    /// The value, or what the probe saw instead (for the failure message; may be empty).
    fn done(self) -> Result<Self::Value, String>;
}

impl Probed for bool {
    type Value = ();
    fn done(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err(String::new())
        }
    }
}

impl<T> Probed for Option<T> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

/// `Err(seen)`: not yet, and `seen` is what the failure message shows.
impl<T, E: std::fmt::Display> Probed for Result<T, E> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self.map_err(|seen| seen.to_string())
    }
}

/// Waits until `probe` answers `true`, `Some(value)` or `Ok(value)` (asked every
/// [`POLL_EVERY`]); the value. Fails the test after `timeout`, naming `what` and what
/// the probe last answered (an `Err`'s text). Works in paused time too (see [`poll`]).
pub async fn eventually<P, F, Fut>(what: &str, timeout: Duration, probe: F) -> P::Value
where
    P: Probed,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    eventually_every(what, timeout, POLL_EVERY, probe).await
}

/// [`eventually`], asking every `every`: for waits that must not ask more often (a rate
/// limit, another process's metrics) and for paused time, where each sleep moves the
/// clock on by exactly that much.
pub async fn eventually_every<P, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> P::Value
where
    P: Probed,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    let probed = poll(timeout, every, || {
        let asked = probe();
        async move { asked.await.done() }
    })
    .await;
    match probed {
        Ok(value) => value,
        Err(seen) if seen.is_empty() => panic!("{what}: not within {timeout:?}"),
        Err(seen) => panic!("{what}: not within {timeout:?}; last seen: {seen}"),
    }
}

/// A valid create body for the demo service.
pub fn pagopa_body(amount: &str) -> Value {
    json!({
        "type": "PAGOPA",
        "tenant_id": DEMO_TENANT,
        "service_id": DEMO_SERVICE,
        "remote_id": null,
        "reason": "TARI 2026 rata 1",
        "payment": {"amount": amount, "currency": "EUR", "expire_at": null, "split": []},
        "payer": {"type": "human", "tax_identification_number": "RSSMRA80A01H501U", "name": "Mario", "family_name": "Rossi", "email": null},
        "links": {"notify": [{"url": "http://127.0.0.1:9/notify", "method": "POST"}],
                  "online_payment_landing": {"url": "http://platform.example/landing", "method": "GET"}},
        "wallet_account_id": null
    })
}

/// A valid create body a citizen may send: no links (only the platform, operators and
/// admins hand cassa URLs).
pub fn citizen_body(amount: &str) -> Value {
    let mut body = pagopa_body(amount);
    body.as_object_mut().unwrap().remove("links");
    body
}

/// A valid WALLET create body charging the demo account: the demo citizen's own (only
/// the owner spends a wallet, and citizens hand cassa no links).
pub fn wallet_body(amount: &str) -> Value {
    let mut body = citizen_body(amount);
    body["type"] = json!("WALLET");
    body["wallet_account_id"] = json!(DEMO_ACCOUNT);
    // The account's owner: only the payment's user's own wallet may be charged.
    body["user_id"] = json!(DEMO_CITIZEN);
    body
}

/// An intermediary that panics on the first position creation and then delegates.
pub struct PanicOnce {
    pub inner: Arc<dyn Intermediary>,
    pub fired: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Intermediary for PanicOnce {
    async fn create_position(
        &self,
        request: &cassa::intermediary::PositionRequest,
    ) -> Result<cassa::intermediary::Position, cassa::intermediary::IntermediaryError> {
        if !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("injected panic inside the payment actor's handler");
        }
        self.inner.create_position(request).await
    }
    async fn position(
        &self,
        iuv: &str,
    ) -> Result<cassa::intermediary::Position, cassa::intermediary::IntermediaryError> {
        self.inner.position(iuv).await
    }
    async fn cancel_position(
        &self,
        iuv: &str,
    ) -> Result<(), cassa::intermediary::IntermediaryError> {
        self.inner.cancel_position(iuv).await
    }
    async fn execute_payment(
        &self,
        request: &cassa::intermediary::GatewayRequest,
    ) -> Result<cassa::intermediary::GatewayResult, cassa::intermediary::IntermediaryError> {
        self.inner.execute_payment(request).await
    }
}

/// Which Kafka a test's cassa talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// librdkafka's mock cluster, in process, one per test.
    Embedded,
    /// The Apache Kafka cluster `bash .ci/run` starts (`TEST_KAFKA_BROKERS`), shared by
    /// the tests: each gets topics and consumer groups of its own.
    Apache,
}

/// The bootstrap servers of the shared Apache Kafka cluster.
pub fn apache_kafka_bootstrap() -> String {
    std::env::var("TEST_KAFKA_BROKERS").expect(
        "Apache Kafka tests need TEST_KAFKA_BROKERS (bash .ci/run starts a cluster with scripts/kafka-cluster and sets it)",
    )
}

/// The topic names one test's cassa uses.
#[derive(Debug, Clone)]
pub struct TestTopics {
    pub applications: String,
    pub payments: String,
    pub dead_letter: String,
}

impl TestTopics {
    /// The defaults on the embedded broker (a broker of its own per test); on Apache
    /// Kafka names nobody else uses, and a consumer group of its own.
    pub fn for_broker(broker: Broker) -> Self {
        match broker {
            Broker::Embedded => TestTopics {
                applications: "applications".into(),
                payments: "payments".into(),
                dead_letter: "cassa-dead-letter".into(),
            },
            Broker::Apache => {
                let tag = Uuid::new_v4().simple();
                TestTopics {
                    applications: format!("applications-{tag}"),
                    payments: format!("payments-{tag}"),
                    dead_letter: format!("cassa-dead-letter-{tag}"),
                }
            }
        }
    }

    /// Points `settings` at `bootstrap` (empty: the embedded broker) with these topics.
    pub fn apply(&self, settings: &mut Settings, bootstrap: &str) {
        settings.kafka.brokers = bootstrap.to_string();
        settings.kafka.topics.applications = self.applications.clone();
        settings.kafka.topics.payments = self.payments.clone();
        settings.kafka.topics.dead_letter = self.dead_letter.clone();
        settings.kafka.group = format!("cassa-{}", self.payments);
    }
}

impl TestApp {
    /// A cassa on `broker`, and the topics it uses.
    pub async fn spawn_on(backend: Backend, broker: Broker) -> (Self, TestTopics) {
        let topics = TestTopics::for_broker(broker);
        let bootstrap = match broker {
            Broker::Embedded => String::new(),
            Broker::Apache => apache_kafka_bootstrap(),
        };
        let app = Self::spawn_with(
            backend,
            |settings| topics.apply(settings, &bootstrap),
            Overrides::default(),
        )
        .await;
        (app, topics)
    }
}

/// An Apache Kafka cluster of a test's own (for faults that would disturb the shared
/// one), run by `scripts/kafka-cluster` in a temporary directory; stopped when dropped.
pub struct KafkaCluster {
    pub bootstrap: String,
    /// Clusters of tests' own run one at a time: three more JVMs at once on a small
    /// machine slow every broker down past its registration deadline.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
    /// `key=value` lines the script printed (`sasl_username`, `sasl_password`, …).
    pub printed: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl KafkaCluster {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-cluster")
    }

    /// Starts `nodes` nodes (and waits until they are registered).
    pub fn start(nodes: u32, sasl: bool) -> Self {
        static OWN_CLUSTERS: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let one_at_a_time = OWN_CLUSTERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "start".to_string(),
            "--nodes".into(),
            nodes.to_string(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        if sasl {
            args.push("--sasl".into());
        }
        let out = std::process::Command::new(Self::script())
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kafka-cluster start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let bootstrap = printed
            .iter()
            .find(|(k, _)| k == "bootstrap")
            .map(|(_, v)| v.clone())
            .unwrap();
        KafkaCluster {
            bootstrap,
            _one_at_a_time: one_at_a_time,
            printed,
            dir,
        }
    }

    /// A value the script printed at start.
    pub fn printed(&self, key: &str) -> String {
        self.printed
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("kafka-cluster printed no {key}"))
    }

    /// `kafka-cluster <command> <node>` (kill, pause, resume, restart), without
    /// blocking the test's runtime (cassa serves on it meanwhile).
    pub async fn node(&self, command: &str, node: i32) {
        let out = tokio::process::Command::new(Self::script())
            .args([command, &node.to_string(), "--dir"])
            .arg(self.dir.path())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "kafka-cluster {command} {node} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script())
            .args(["stop", "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

/// `eventually` in paused time: the sleeps move the virtual clock, so it answers once
/// the probe does and gives up at the timeout, naming the wait and the last reading.
mod eventually_waits {
    use std::time::Duration;

    use super::{eventually, eventually_every};

    #[actix_rt::test]
    async fn answers_the_value_once_the_probe_has_it() {
        tokio::time::pause();
        let start = tokio::time::Instant::now();
        let asked = std::cell::Cell::new(0);
        let value = eventually("the third answer", Duration::from_secs(1), || async {
            asked.set(asked.get() + 1);
            (asked.get() == 3).then_some("three")
        })
        .await;
        assert_eq!((value, asked.get()), ("three", 3));
        // Two sleeps (tokio's timer rounds each up to the next millisecond).
        let slept = start.elapsed();
        assert!(
            (2 * super::POLL_EVERY..3 * super::POLL_EVERY).contains(&slept),
            "{slept:?}"
        );
    }

    #[actix_rt::test]
    #[should_panic(expected = "the answer: not within 1s; last seen: ")]
    async fn fails_at_the_timeout_with_the_last_reading() {
        tokio::time::pause();
        let asked = std::cell::Cell::new(0);
        let every = Duration::from_millis(10);
        eventually_every("the answer", Duration::from_secs(1), every, || async {
            asked.set(asked.get() + 1);
            Err::<(), _>(asked.get())
        })
        .await;
    }
}
