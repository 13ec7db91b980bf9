//! Settings: defaults, then `CASSA_*` environment variables, then flags (a flag wins).
//! Unknown `CASSA_*` variables and malformed values stop start-up with a message that
//! names the setting.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

use crate::domain::schedule::PollSchedule;

/// A setting cassa cannot start with, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingError(pub String);

impl From<String> for SettingError {
    fn from(message: String) -> Self {
        SettingError(message)
    }
}

/// Settings of `cassa token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The token's role.
    #[arg(long, value_enum)]
    pub role: crate::auth::Role,
    /// The tenant (required for operator and citizen).
    #[arg(long)]
    pub tenant: Option<uuid::Uuid>,
    /// The subject: a citizen's user id (UUID); default `<role>-cli` for the other roles.
    #[arg(long)]
    pub sub: Option<String>,
    /// How long the token is valid, e.g. `15m`, `1h`, `24h` (at most the maximum
    /// token lifetime, `--jwt-max-lifetime`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// A citizen's tax code (codice fiscale), put in the tax code claim: a citizen
    /// creates payments with themselves as payer, and PAGOPA ones only with it.
    #[arg(long)]
    pub tax_code: Option<crate::domain::tax_code::TaxCode>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// The keys of the API's tokens and of sealed secrets (shared by `serve` and `token`).
#[derive(Clone, Args)]
pub struct KeyArgs {
    /// HS256 secret of the API's bearer tokens (default in the embedded mode: generated
    /// once and kept beside the SQLite file).
    #[arg(long, env = "CASSA_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// RS256 public key (PEM text, or the path of a PEM file) to verify tokens signed by
    /// an identity provider.
    #[arg(long, env = "CASSA_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,
    /// Key sealing intermediary credentials: 32 random bytes as base64 or hex (default in
    /// the embedded mode: generated once and kept beside the SQLite file).
    #[arg(long, env = "CASSA_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Required `aud` of tokens (an identity provider's client id); minted tokens carry it.
    #[arg(long, env = "CASSA_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Required `iss` of tokens; minted tokens carry it.
    #[arg(long, env = "CASSA_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Longest lifetime of a token (`exp - iat`, and `exp - now`): longer ones are
    /// refused, and `cassa token` mints within it.
    #[arg(long, env = "CASSA_JWT_MAX_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    pub jwt_max_lifetime: Duration,
    /// The claim of a citizen's token that carries their tax code (the payer of the
    /// payments they create).
    #[arg(long, env = "CASSA_JWT_TAX_CODE_CLAIM", default_value = crate::auth::DEFAULT_TAX_CODE_CLAIM)]
    pub jwt_tax_code_claim: String,
}

impl std::fmt::Debug for KeyArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| v.as_ref().map(|_| "(set)");
        f.debug_struct("KeyArgs")
            .field("jwt_secret", &set(&self.jwt_secret))
            .field("jwt_public_key", &set(&self.jwt_public_key))
            .field("secret_key", &set(&self.secret_key))
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_max_lifetime", &self.jwt_max_lifetime)
            .field("jwt_tax_code_claim", &self.jwt_tax_code_claim)
            .finish()
    }
}

impl KeyArgs {
    /// The RS256 public key's PEM text (read from a file unless given inline).
    pub fn public_key_pem(&self) -> Result<Option<String>, SettingError> {
        match self.jwt_public_key.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(pem) if pem.starts_with("-----BEGIN") => Ok(Some(pem.to_string())),
            Some(path) => std::fs::read_to_string(path).map(Some).map_err(|e| {
                SettingError(format!("CASSA_JWT_PUBLIC_KEY: cannot read {path:?}: {e}"))
            }),
        }
    }

    /// The secrets and the token authenticator these settings describe (kept secrets
    /// are generated when missing: the service's start).
    pub fn resolve(
        &self,
        database: &DatabaseArgs,
    ) -> Result<(crate::secrets::Resolved, crate::auth::Authenticator), SettingError> {
        self.resolve_keeping(database, crate::secrets::Keep::CreateIfMissing)
    }

    /// `resolve`, saying whether missing kept secrets may be generated.
    pub fn resolve_keeping(
        &self,
        database: &DatabaseArgs,
        keep: crate::secrets::Keep,
    ) -> Result<(crate::secrets::Resolved, crate::auth::Authenticator), SettingError> {
        let pem = self.public_key_pem()?;
        let resolved = crate::secrets::resolve_keeping(
            &database.database_url,
            self.jwt_secret.as_deref(),
            pem.is_some(),
            self.secret_key.as_deref(),
            keep,
        )
        .map_err(|e| SettingError(e.to_string()))?;
        let auth = crate::auth::Authenticator::new(resolved.jwt_secret.as_deref(), pem.as_deref())
            .map_err(|e| SettingError(e.to_string()))?
            .expecting(self.jwt_audience.clone(), self.jwt_issuer.clone())
            .with_token_rules(self.jwt_max_lifetime, self.jwt_tax_code_claim.clone());
        Ok((resolved, auth))
    }
}

/// Settings of `cassa dev-kafka`.
#[derive(Debug, Clone, Args)]
pub struct DevKafkaArgs {
    /// Fixed bootstrap port on 127.0.0.1.
    #[arg(long, default_value = "9092")]
    pub port: u16,
    /// Partitions of the topics it creates.
    #[arg(long, default_value = "6")]
    pub partitions: i32,
    #[command(flatten)]
    pub topics: Topics,
}

/// The Kafka topics cassa uses.
#[derive(Debug, Clone, Args)]
pub struct Topics {
    /// Opencity application events (dispatcher role).
    #[arg(
        long = "topic-applications",
        env = "CASSA_TOPIC_APPLICATIONS",
        default_value = "applications"
    )]
    pub applications: String,
    /// Payment events (every state change; proxy role).
    #[arg(
        long = "topic-payments",
        env = "CASSA_TOPIC_PAYMENTS",
        default_value = "payments"
    )]
    pub payments: String,
    /// Rejected application events, with the reason.
    #[arg(
        long = "topic-dead-letter",
        env = "CASSA_TOPIC_DEAD_LETTER",
        default_value = "cassa-dead-letter"
    )]
    pub dead_letter: String,
}

impl Topics {
    /// The topics with their partition counts (`partitions` each; one for dead letters).
    pub fn with_partitions(&self, partitions: i32) -> [(&str, i32); 3] {
        [
            (self.applications.as_str(), partitions),
            (self.payments.as_str(), partitions),
            (self.dead_letter.as_str(), 1),
        ]
    }
}

/// How cassa's Kafka clients reach and log in to a real cluster (the embedded broker
/// needs none of this).
#[derive(Clone, Default, Args)]
pub struct KafkaClientArgs {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (librdkafka's
    /// `security.protocol`); default: librdkafka's (plaintext).
    #[arg(long, env = "CASSA_KAFKA_SECURITY_PROTOCOL", value_parser = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"], ignore_case = true)]
    pub kafka_security_protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[arg(long, env = "CASSA_KAFKA_SASL_MECHANISM", value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], ignore_case = true)]
    pub kafka_sasl_mechanism: Option<String>,
    /// SASL user name.
    #[arg(long, env = "CASSA_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// SASL password (never logged).
    #[arg(long, env = "CASSA_KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,
    /// CA certificate(s) (PEM file) to verify the brokers' TLS certificates.
    #[arg(long, env = "CASSA_KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<String>,
    /// Any other librdkafka client property, `key=value,key=value`, applied last.
    #[arg(long, env = "CASSA_KAFKA_CONFIG", value_parser = parse_kafka_config, default_value = "")]
    pub kafka_config: KafkaProperties,
    /// `classic` consumer groups, or `consumer` (KIP-848: the broker assigns partitions
    /// and times sessions out; rebalances are incremental).
    #[arg(
        long,
        env = "CASSA_KAFKA_GROUP_PROTOCOL",
        value_enum,
        default_value = "classic"
    )]
    pub kafka_group_protocol: GroupProtocol,
}

impl std::fmt::Debug for KafkaClientArgs {
    /// Everything but the password, which is shown masked.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClientArgs")
            .field("kafka_security_protocol", &self.kafka_security_protocol)
            .field("kafka_sasl_mechanism", &self.kafka_sasl_mechanism)
            .field("kafka_sasl_username", &self.kafka_sasl_username)
            .field(
                "kafka_sasl_password",
                &self.kafka_sasl_password.as_ref().map(|_| "********"),
            )
            .field("kafka_ssl_ca_location", &self.kafka_ssl_ca_location)
            .field("kafka_config", &self.kafka_config)
            .field("kafka_group_protocol", &self.kafka_group_protocol)
            .finish()
    }
}

/// Extra librdkafka properties (`CASSA_KAFKA_CONFIG`), in the order given.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(pub Vec<(String, String)>);

impl std::fmt::Debug for KafkaProperties {
    /// Keys only: a passthrough property may carry a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// Parses `key=value,key=value` (empty: none).
pub fn parse_kafka_config(text: &str) -> Result<KafkaProperties, SettingError> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| SettingError(format!("{part:?} is not key=value")))?;
            let key = key.trim();
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
            {
                return Err(SettingError(format!(
                    "{key:?} is not a librdkafka property name"
                )));
            }
            Ok((key.to_string(), value.trim().to_string()))
        })
        .collect::<Result<Vec<_>, SettingError>>()
        .map(KafkaProperties)
}

/// Consumer-group protocol (librdkafka's `group.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum GroupProtocol {
    #[default]
    Classic,
    Consumer,
}

/// Roles this instance plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Api,
    Dispatcher,
    Proxy,
    Updater,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Database selection.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://file.db` (created if missing) or `postgres://user:pass@host/db`.
    #[arg(long, env = "CASSA_DATABASE_URL", default_value = "sqlite://cassa.db", value_parser = parse_database_url)]
    pub database_url: String,
}

/// Settings of `cassa serve`, by subject.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub intermediaries: IntermediarySettings,
    #[command(flatten)]
    pub actors: ActorSettings,
    #[command(flatten)]
    pub security: SecuritySettings,
    #[command(flatten)]
    pub log: LogSettings,
    /// This instance's name (leases, Kafka client id); default: host and process id.
    #[arg(long, env = "CASSA_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Comma-separated roles: api, dispatcher, proxy, updater.
    #[arg(
        long,
        env = "CASSA_ROLES",
        value_delimiter = ',',
        default_value = "api,dispatcher,proxy,updater"
    )]
    pub roles: Vec<Role>,
    /// Seed the demo tenant, service and wallet (default: only in the embedded mode).
    #[arg(long, env = "CASSA_SEED_DEMO")]
    pub seed_demo: Option<bool>,
}

/// The HTTP API.
#[derive(Debug, Clone, Args)]
pub struct HttpSettings {
    /// Address the HTTP API listens on.
    #[arg(long = "http-addr", env = "CASSA_HTTP_ADDR", default_value = "127.0.0.1:8080", value_parser = parse_listen_addr)]
    pub addr: SocketAddr,
    /// Base URL of the links cassa hands out (default: http://<http addr>).
    #[arg(long, env = "CASSA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Payments one token subject may create per second (`0`: no limit).
    #[arg(long, env = "CASSA_CREATE_RATE_LIMIT", default_value = "200")]
    pub create_rate_limit: u32,
}

/// Kafka: the brokers (or the embedded one), the consumer group, the topics, and how
/// the clients log in.
#[derive(Debug, Clone, Args)]
pub struct KafkaSettings {
    /// Kafka bootstrap servers; empty = embedded broker.
    #[arg(
        long = "kafka-brokers",
        env = "CASSA_KAFKA_BROKERS",
        default_value = ""
    )]
    pub brokers: String,
    /// Fixed port of the embedded broker (default: any free port).
    #[arg(long = "kafka-embedded-port", env = "CASSA_KAFKA_EMBEDDED_PORT")]
    pub embedded_port: Option<u16>,
    /// Consumer group of the `payments` topic (all instances of one deployment share it).
    #[arg(
        long = "kafka-group",
        env = "CASSA_KAFKA_GROUP",
        default_value = "cassa"
    )]
    pub group: String,
    /// Partitions of topics cassa creates (embedded broker, or missing topics).
    #[arg(long = "kafka-partitions", env = "CASSA_KAFKA_PARTITIONS", default_value = "6", value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub partitions: i32,
    /// Consumer-group session timeout: how soon a dead instance's partitions move.
    #[arg(long = "kafka-session-timeout", env = "CASSA_KAFKA_SESSION_TIMEOUT", default_value = "6s", value_parser = parse_duration)]
    pub session_timeout: Duration,
    #[command(flatten)]
    pub topics: Topics,
    #[command(flatten)]
    pub client: KafkaClientArgs,
}

impl KafkaSettings {
    /// Whether a real cluster is configured (otherwise cassa starts the embedded broker).
    pub fn external(&self) -> bool {
        !self.brokers.trim().is_empty()
    }
}

/// The intermediaries: how they are called, and the built-in simulator.
#[derive(Debug, Clone, Args)]
pub struct IntermediarySettings {
    /// Time limit of one call to an intermediary, e.g. `5s`, `800ms`.
    #[arg(long = "intermediary-timeout", env = "CASSA_INTERMEDIARY_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Calls per second to one intermediary, shared by all its payments (`0`: no limit).
    #[arg(
        long = "intermediary-rate-limit",
        env = "CASSA_INTERMEDIARY_RATE_LIMIT",
        default_value = "50"
    )]
    pub rate_limit: f64,
    /// Calls in flight to one intermediary at most.
    #[arg(
        long = "intermediary-max-in-flight",
        env = "CASSA_INTERMEDIARY_MAX_IN_FLIGHT",
        default_value = "32"
    )]
    pub max_in_flight: usize,
    /// Consecutive transient failures that open an intermediary's circuit (`0`: never).
    #[arg(long, env = "CASSA_CIRCUIT_FAILURES", default_value = "5")]
    pub circuit_failures: u32,
    /// How long an open circuit postpones calls before one probe is let through.
    #[arg(long, env = "CASSA_CIRCUIT_OPEN_FOR", default_value = "30s", value_parser = parse_duration)]
    pub circuit_open_for: Duration,
    /// Where the demo service config points (default: the built-in `/sim`).
    #[arg(long, env = "CASSA_SIMULATOR_URL")]
    pub simulator_url: Option<String>,
    /// Mount the intermediary simulator under `/sim`: `on` or `off` (default: on in the
    /// embedded mode, for the demo; off otherwise). Never for production: it is a fake
    /// intermediary anyone can drive.
    #[arg(long, env = "CASSA_SIMULATOR", value_parser = parse_switch)]
    pub simulator: Option<bool>,
}

impl IntermediarySettings {
    /// The per-intermediary guard these settings describe.
    pub fn guard(&self) -> crate::intermediary::guard::GuardConfig {
        crate::intermediary::guard::GuardConfig {
            rate_per_sec: self.rate_limit,
            // A tenth of a second's worth: a burst never pushes a one-second window far
            // past the limit.
            burst: ((self.rate_limit / 10.0).ceil() as u32).max(1),
            max_in_flight: self.max_in_flight,
            max_wait: Duration::from_secs(2),
            failure_threshold: self.circuit_failures,
            open_for: self.circuit_open_for,
        }
    }
}

/// The payment actors: their checks, passivation and placement.
#[derive(Debug, Clone, Args)]
pub struct ActorSettings {
    /// Poll table: `<age>:<interval>,…,*:<interval>`.
    #[arg(
        long,
        env = "CASSA_POLL_SCHEDULE",
        default_value = "5m:1m,15m:5m,7d:1h,30d:6h,*:24h"
    )]
    pub poll_schedule: PollSchedule,
    /// A payment whose next check is further away than this passivates (its actor stops;
    /// a durable timer wheel wakes it in time). `0s` keeps every actor resident.
    #[arg(long, env = "CASSA_PASSIVATE_AFTER", default_value = "10m", value_parser = parse_duration)]
    pub passivate_after: Duration,
    /// Most payment actors resident at once (the timer wheel wakes no more).
    #[arg(long, env = "CASSA_MAX_RESIDENT", default_value = "200000")]
    pub max_resident: usize,
    /// Arbiters (threads) payment actors are spread over (default: one per core).
    #[arg(long, env = "CASSA_ARBITERS")]
    pub arbiters: Option<usize>,
}

/// Who may call cassa (token keys) and whom cassa may call (the outbound allow-list).
#[derive(Debug, Clone, Args)]
pub struct SecuritySettings {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Hosts every tenant may call and redirect to, comma-separated host patterns:
    /// `pay.example.it`, `*.example.it`, `http://127.0.0.1:8090` (plain http for it).
    #[arg(long, env = "CASSA_OUTBOUND_ALLOW", default_value = "", value_parser = crate::outbound::parse_allow_setting)]
    pub outbound_allow: crate::outbound::AllowList,
}

/// Logs.
#[derive(Debug, Clone, Args)]
pub struct LogSettings {
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long = "log", env = "CASSA_LOG", default_value = "info")]
    pub filter: String,
    #[arg(
        long = "log-format",
        env = "CASSA_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub format: LogFormat,
}

/// Settings of `cassa simulator`.
#[derive(Debug, Clone, Args)]
pub struct SimulatorArgs {
    /// Address the simulator listens on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub addr: SocketAddr,
    /// Where to push "paid" notifications (e.g. cassa's `/v1/intermediaries/sim/notify`);
    /// loopback addresses only.
    #[arg(long)]
    pub notify_url: Option<String>,
    /// cassa's public URL: the checkout sends the citizen back to
    /// `<cassa url>/v1/payments/{id}/landing`, nowhere else (default: the origin of
    /// `--notify-url`; without either, the checkout shows a "done" page).
    #[arg(long)]
    pub cassa_url: Option<String>,
    /// Sign pushes with this secret (`X-Cassa-Signature`): the service's
    /// `intermediary.credentials.push_secret` in cassa.
    #[arg(long)]
    pub push_secret: Option<String>,
    /// How long "hanging" calls (amount cents .02) wait.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub hang_for: Duration,
    /// Require this `X-Api-Key` on intermediary and gateway calls (as a service config's
    /// `intermediary.credentials.api_key` sends it).
    #[arg(long)]
    pub api_key: Option<String>,
}

/// Every `CASSA_*` variable a command line reads: the `env` of every flag of `command`
/// and its subcommands, taken from the parser itself so no list can fall behind it.
pub fn known_env(command: &clap::Command) -> Vec<String> {
    fn walk(command: &clap::Command, names: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if let Some(name) = arg.get_env().and_then(|n| n.to_str()) {
                if !names.iter().any(|known| known == name) {
                    names.push(name.to_string());
                }
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, names);
        }
    }
    let mut names = Vec::new();
    walk(command, &mut names);
    names
}

/// Refuses `CASSA_*` variables not among the `known` ones (a typo would silently be
/// ignored).
pub fn check_env(
    known: &[String],
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), SettingError> {
    for (name, _) in vars {
        if name.starts_with("CASSA_") && !known.contains(&name) {
            return Err(SettingError(format!(
                "unknown setting {name}: known settings are {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// A database URL of a kind cassa speaks, refused by its scheme alone (the rest may hold
/// a password, so it is not echoed).
pub fn parse_database_url(text: &str) -> Result<String, SettingError> {
    let text = text.trim();
    if text.starts_with("sqlite:")
        || text.starts_with("postgres://")
        || text.starts_with("postgresql://")
    {
        return Ok(text.to_string());
    }
    let scheme = text.split_once(':').map(|(scheme, _)| scheme).unwrap_or("");
    Err(SettingError(format!(
        "unsupported database {}: use sqlite://FILE or postgres://USER:PASSWORD@HOST/DATABASE",
        if scheme.is_empty() {
            "URL (no scheme)".to_string()
        } else {
            format!("scheme {scheme:?}")
        }
    )))
}

/// `host:port` to listen on: an address, or a name resolved here (`localhost:8080`),
/// IPv4 first.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, SettingError> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("{text:?} is not host:port that resolves here: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| SettingError(format!("{text:?} resolves to no address")))
}

/// Parses a switch: `on`/`off` (also `true`/`false`, `1`/`0`).
pub fn parse_switch(text: &str) -> Result<bool, SettingError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(SettingError(format!("{text:?} is not on or off"))),
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, SettingError> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: ms, s, m or h"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} must start with a whole number"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(SettingError(format!(
                "{text:?} has unit {unit:?}; use ms, s, m or h"
            )))
        }
    };
    number
        .checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| SettingError(format!("{text:?} is too long")))
}

impl Settings {
    /// This instance's name.
    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
    }

    /// Embedded mode: SQLite and no Kafka brokers configured.
    pub fn embedded(&self) -> bool {
        self.database.database_url.starts_with("sqlite:") && !self.kafka.external()
    }

    /// Whether the simulator is mounted under `/sim` (`CASSA_SIMULATOR`).
    pub fn simulator_mounted(&self) -> bool {
        self.intermediaries
            .simulator
            .unwrap_or_else(|| self.embedded())
    }

    /// Parses `cassa serve` settings from an argument list (and the environment).
    pub fn parse_from<I, T>(args: I) -> Result<Settings, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        OnlySettings::try_parse_from(args).map(|o| o.settings)
    }

    /// Settings from `args` (flags without the program name) and the defaults, never
    /// from the environment: a test gets what it asks for, whatever `CASSA_*` variables
    /// the developer's shell holds.
    pub fn for_tests<I, T>(args: I) -> Result<Settings, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Self::command().mut_args(|arg| arg.env(None::<&str>));
        let argv = std::iter::once(std::ffi::OsString::from("cassa"))
            .chain(args.into_iter().map(Into::into));
        let matches = command.try_get_matches_from(argv)?;
        <OnlySettings as clap::FromArgMatches>::from_arg_matches(&matches).map(|o| o.settings)
    }

    /// The command line of these settings alone (what `serve` reads).
    pub fn command() -> clap::Command {
        <OnlySettings as clap::CommandFactory>::command()
    }
}

#[derive(Parser)]
struct OnlySettings {
    #[command(flatten)]
    settings: Settings,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The simulator is mounted by default only in the embedded mode.
    #[test]
    fn the_simulator_is_mounted_by_default_only_when_embedded() {
        let embedded = Settings::parse_from(["cassa"]).unwrap();
        assert!(embedded.simulator_mounted());
        let off = Settings::parse_from(["cassa", "--simulator", "off"]).unwrap();
        assert!(!off.simulator_mounted());
        let pg = ["cassa", "--database-url", "postgres://u:p@127.0.0.1/db"];
        assert!(!Settings::parse_from(pg).unwrap().simulator_mounted());
        let brokers = ["cassa", "--kafka-brokers", "127.0.0.1:9092"];
        assert!(!Settings::parse_from(brokers).unwrap().simulator_mounted());
        let asked = [
            "cassa",
            "--database-url",
            "postgres://u:p@127.0.0.1/db",
            "--simulator",
            "on",
        ];
        assert!(Settings::parse_from(asked).unwrap().simulator_mounted());
    }

    /// Tests' settings ignore the environment: a developer's `CASSA_*` variable does not
    /// reach them.
    #[test]
    fn settings_for_tests_ignore_the_environment() {
        // CASSA_LOG changes nothing any other unit test checks.
        std::env::set_var("CASSA_LOG", "debug");
        let from_env = Settings::parse_from(["cassa"]).unwrap();
        let for_tests = Settings::for_tests(["--arbiters", "3"]).unwrap();
        std::env::remove_var("CASSA_LOG");
        assert_eq!(from_env.log.filter, "debug");
        assert_eq!(for_tests.log.filter, "info");
        assert_eq!(for_tests.actors.arbiters, Some(3));
    }

    #[test]
    fn switches_are_on_or_off() {
        for on in ["on", "ON", "true", "1"] {
            assert_eq!(parse_switch(on), Ok(true), "{on}");
        }
        for off in ["off", "false", "0"] {
            assert_eq!(parse_switch(off), Ok(false), "{off}");
        }
        assert!(parse_switch("maybe").is_err());
    }

    #[test]
    fn durations_parse_and_refuse_garbage() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn listen_addresses_take_host_names_and_database_urls_their_scheme() {
        let addr = parse_listen_addr("localhost:8080").unwrap();
        assert!(addr.ip().is_loopback() && addr.port() == 8080, "{addr}");
        assert_eq!(
            parse_listen_addr("127.0.0.1:9000").unwrap(),
            "127.0.0.1:9000".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_listen_addr("localhost").is_err(), "a port is needed");
        assert!(parse_database_url("sqlite://cassa.db").is_ok());
        assert!(parse_database_url("postgres://u:p@127.0.0.1/db").is_ok());
        let err = parse_database_url("mysql://root:hunter2@127.0.0.1/db").unwrap_err();
        assert!(err.0.contains("\"mysql\""), "{err}");
        assert!(
            !err.0.contains("hunter2"),
            "the password is not echoed: {err}"
        );
    }

    #[test]
    fn unknown_cassa_variables_are_refused_by_name() {
        let vars = vec![
            ("CASSA_HTTP_ADDR".to_string(), "x".to_string()),
            ("PATH".into(), "/bin".into()),
        ];
        let known = known_env(&Settings::command());
        assert!(check_env(&known, vars.into_iter()).is_ok());
        let typo = vec![("CASSA_DATABSE_URL".to_string(), "x".to_string())];
        let err = check_env(&known, typo.into_iter()).unwrap_err();
        assert!(err.0.contains("CASSA_DATABSE_URL"), "{err}");
        // Every flag's variable is known, those added last included.
        for name in [
            "CASSA_JWT_MAX_LIFETIME",
            "CASSA_JWT_TAX_CODE_CLAIM",
            "CASSA_KAFKA_GROUP_PROTOCOL",
            "CASSA_LOG",
        ] {
            assert!(known.iter().any(|k| k == name), "{name}");
        }
    }

    #[test]
    fn kafka_client_settings_parse_and_the_password_is_never_shown() {
        let s = Settings::parse_from([
            "cassa",
            "--kafka-security-protocol",
            "SASL_PLAINTEXT",
            "--kafka-sasl-mechanism",
            "scram-sha-256",
            "--kafka-sasl-username",
            "cassa",
            "--kafka-sasl-password",
            "s3cret-pw",
            "--kafka-config",
            "socket.keepalive.enable=true, fetch.wait.max.ms=50",
            "--kafka-group-protocol",
            "consumer",
        ])
        .unwrap();
        assert_eq!(
            s.kafka.client.kafka_config.0,
            vec![
                ("socket.keepalive.enable".to_string(), "true".to_string()),
                ("fetch.wait.max.ms".to_string(), "50".to_string())
            ]
        );
        assert_eq!(s.kafka.client.kafka_group_protocol, GroupProtocol::Consumer);
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("********"), "{shown}");
        assert!(parse_kafka_config("novalue").is_err());
        assert!(parse_kafka_config("bad key=1").is_err());
        assert_eq!(parse_kafka_config("").unwrap(), KafkaProperties::default());
        let err = Settings::parse_from(["cassa", "--kafka-sasl-mechanism", "GSSAPI"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--kafka-sasl-mechanism"), "{err}");
    }

    #[test]
    fn flags_parse_and_bad_values_name_the_setting() {
        let s =
            Settings::parse_from(["cassa", "--poll-schedule", "*:2s", "--roles", "api,updater"])
                .unwrap();
        assert_eq!(s.actors.poll_schedule.to_string(), "*:2s");
        assert_eq!(s.roles, vec![Role::Api, Role::Updater]);
        let err = Settings::parse_from(["cassa", "--poll-schedule", "soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--poll-schedule"), "{err}");
        let err = Settings::parse_from(["cassa", "--roles", "api,cook"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--roles"), "{err}");
    }
}
