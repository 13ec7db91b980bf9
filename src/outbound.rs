//! The guard of every call cassa makes to a URL someone configured (platform notify
//! links, intermediaries and their gateways) and of every redirect it answers: the URL
//! policy (https, allow-listed hosts, no credentials, no odd characters), the pure
//! classification of IP addresses, a DNS resolver that refuses non-public addresses at
//! connect time, and the one way outbound HTTP clients are built (no redirects, a
//! timeout, a response-size cap, no proxy).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::{Host, Url};

/// Why the outbound policy refuses a URL, a name or a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl From<String> for Refused {
    fn from(reason: String) -> Self {
        Refused(reason)
    }
}

impl From<&str> for Refused {
    fn from(reason: &str) -> Self {
        Refused(reason.to_string())
    }
}

/// Longest URL accepted anywhere.
pub const URL_MAX: usize = 2048;
/// Largest response body cassa reads from an outbound call.
pub const RESPONSE_MAX: usize = 1024 * 1024;
/// Time limit of one outbound call unless the caller sets its own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest allow-list of a tenant.
pub const ALLOWED_HOSTS_MAX: usize = 100;

/// What kind of address an IP is, as far as outbound calls care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Reachable on the internet: the only class called without an exact allow-list entry.
    Public,
    Loopback,
    LinkLocal,
    /// RFC 1918, shared (CGNAT) and benchmarking ranges, IPv6 site-local.
    Private,
    /// IPv6 unique-local (fc00::/7).
    UniqueLocal,
    Unspecified,
    Multicast,
    Broadcast,
    /// Documentation, reserved and other special-purpose ranges.
    Reserved,
}

impl AddressClass {
    /// A short name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Private => "private",
            AddressClass::UniqueLocal => "unique-local",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved",
        }
    }
}

/// Classifies an address (pure: no I/O). IPv4-mapped, -compatible and NAT64 IPv6
/// addresses are classified by the IPv4 address they carry.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        _ if ip.is_broadcast() => AddressClass::Broadcast,
        (0, _, _) => AddressClass::Unspecified,
        (127, _, _) => AddressClass::Loopback,
        (169, 254, _) => AddressClass::LinkLocal,
        (10, _, _) | (192, 168, _) => AddressClass::Private,
        (172, 16..=31, _) => AddressClass::Private,
        (100, 64..=127, _) => AddressClass::Private,
        (198, 18..=19, _) => AddressClass::Private,
        (224..=239, _, _) => AddressClass::Multicast,
        (240..=255, _, _) => AddressClass::Reserved,
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    // ::a.b.c.d (deprecated IPv4-compatible) and 64:ff9b::/96 (NAT64) reach an IPv4 host.
    let embedded = Ipv4Addr::new(
        (segments[6] >> 8) as u8,
        segments[6] as u8,
        (segments[7] >> 8) as u8,
        segments[7] as u8,
    );
    if segments[..6] == [0, 0, 0, 0, 0, 0] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded);
    }
    match segments[0] {
        s if s & 0xff00 == 0xff00 => AddressClass::Multicast,
        s if s & 0xffc0 == 0xfe80 => AddressClass::LinkLocal,
        s if s & 0xffc0 == 0xfec0 => AddressClass::Private,
        s if s & 0xfe00 == 0xfc00 => AddressClass::UniqueLocal,
        0x2001 if segments[1] == 0x0db8 => AddressClass::Reserved,
        // Only 2000::/3 is global unicast.
        s if s & 0xe000 == 0x2000 => AddressClass::Public,
        _ => AddressClass::Reserved,
    }
}

/// Which hosts one allow-list entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// That host exactly (a name or an IP): its private addresses are allowed too.
    Exact(Host<String>),
    /// Any name under this domain (stored as `.domain`), public addresses only.
    Under(String),
}

/// One allow-list entry: `[http://]host[:port]` or `[http://]*.domain[:port]`. `http://`
/// opens the host for plain http too (otherwise https only); without a port, any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    http: bool,
    host: HostPattern,
    port: Option<u16>,
}

impl AllowEntry {
    /// Parses an entry, saying what is wrong with a bad one.
    pub fn parse(text: &str) -> Result<Self, Refused> {
        let text = text.trim();
        if text.is_empty() || text.len() > 300 || has_odd_characters(text) {
            return Err(format!(
                "{text:?} is not a host pattern (host, *.domain, optionally http:// and :port)"
            )
            .into());
        }
        let lower = text.to_ascii_lowercase();
        let (http, rest) = match lower.split_once("://") {
            Some(("http", rest)) => (true, rest),
            Some(("https", rest)) => (false, rest),
            Some((scheme, _)) => {
                return Err(format!("{text:?}: scheme {scheme} is not http(s)").into())
            }
            None => (false, lower.as_str()),
        };
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let url = Url::parse(&format!("https://{rest}"))
            .ok()
            .filter(|u| {
                u.path() == "/"
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && !rest.ends_with('/')
            })
            .ok_or_else(|| format!("{text:?}: only a host and an optional port, no path"))?;
        let host = url
            .host()
            .map(|h| h.to_owned())
            .ok_or_else(|| format!("{text:?} names no host"))?;
        let port = url.port();
        if let Host::Domain(name) = &host {
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(
                    format!("{text:?}: a host name is letters, digits, '-' and '.'").into(),
                );
            }
        }
        let host = match (wildcard, host) {
            (false, host) => HostPattern::Exact(host),
            (true, Host::Domain(domain)) if domain.contains('.') => {
                HostPattern::Under(format!(".{domain}"))
            }
            (true, _) => {
                return Err(format!(
                "{text:?}: a wildcard needs a domain of two labels or more (*.comune.example.it)"
            )
                .into())
            }
        };
        Ok(AllowEntry { http, host, port })
    }

    fn matches(&self, host: &Host<&str>, port: Option<u16>) -> bool {
        let host_ok = match (&self.host, host) {
            (HostPattern::Exact(exact), host) => *exact == host.to_owned(),
            (HostPattern::Under(suffix), Host::Domain(name)) => name.ends_with(suffix.as_str()),
            (HostPattern::Under(_), _) => false,
        };
        host_ok && self.port.is_none_or(|p| Some(p) == port)
    }
}

/// A list of allow-list entries (the global `CASSA_OUTBOUND_ALLOW`, or a tenant's
/// `allowed_hosts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<AllowEntry>);

impl AllowList {
    /// Parses every entry; the error names the first bad one by its index.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, (usize, Refused)> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| AllowEntry::parse(e.as_ref()).map_err(|m| (i, m)))
            .collect::<Result<Vec<_>, _>>()
            .map(AllowList)
    }

    /// Parses what was validated when it was stored, skipping what no longer parses
    /// (a skipped entry allows nothing).
    pub fn lenient<S: AsRef<str>>(entries: &[S]) -> Self {
        AllowList(
            entries
                .iter()
                .filter_map(|e| AllowEntry::parse(e.as_ref()).ok())
                .collect(),
        )
    }

    /// This list with `entry` added.
    pub fn with(mut self, entry: AllowEntry) -> Self {
        self.0.push(entry);
        self
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A tenant's `allowed_hosts` as the policy reads them (none for an unknown tenant:
/// only the global allow-list applies).
pub async fn tenant_allow_list(
    store: &dyn crate::store::Store,
    tenant_id: uuid::Uuid,
) -> Result<AllowList, crate::store::StoreError> {
    let tenant = store.tenant(tenant_id).await?;
    Ok(AllowList::lenient(
        tenant.as_ref().map_or(&[][..], |t| &t.allowed_hosts[..]),
    ))
}

/// Parses `CASSA_OUTBOUND_ALLOW` (comma-separated host patterns).
pub fn parse_allow_setting(text: &str) -> Result<AllowList, Refused> {
    let entries: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    AllowList::parse(&entries).map_err(|(_, message)| message)
}

/// The entry that opens the host and port of `url` (e.g. the embedded simulator) for
/// plain http, exactly.
pub fn exact_entry_for(url: &str) -> Result<AllowEntry, Refused> {
    let parsed = Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    let host = parsed
        .host()
        .map(|h| h.to_owned())
        .ok_or_else(|| format!("{url:?} names no host"))?;
    Ok(AllowEntry {
        http: parsed.scheme() == "http",
        host: HostPattern::Exact(host),
        port: parsed.port_or_known_default(),
    })
}

fn has_odd_characters(text: &str) -> bool {
    text.chars().any(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '<' | '>' | '`')
    })
}

/// A URL the policy lets cassa call (or send a citizen to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub url: Url,
    /// The host, when an entry names it exactly: only then may it resolve to a
    /// non-public address.
    pub private_ok: Option<String>,
}

/// Checks a URL against the global allow-list and a tenant's: the reason when refused.
/// Pure (no DNS): the resolved addresses are checked at connect time by [`GuardedResolver`].
pub fn check(url: &str, global: &AllowList, tenant: &AllowList) -> Result<Admitted, Refused> {
    if url.len() > URL_MAX {
        return Err(format!("must be at most {URL_MAX} characters").into());
    }
    if has_odd_characters(url) {
        return Err(
            "must not contain quotes, backslashes, angle brackets, spaces or control characters"
                .into(),
        );
    }
    let parsed = Url::parse(url).map_err(|e| format!("must be an absolute https URL ({e})"))?;
    let http = match parsed.scheme() {
        "https" => false,
        "http" => true,
        other => return Err(format!("must be an https URL, not {other}").into()),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials (user:password@)".into());
    }
    let host = parsed
        .host()
        .ok_or_else(|| "must name a host".to_string())?;
    let port = parsed.port_or_known_default();
    let host_text = host.to_string();
    let matching: Vec<&AllowEntry> = global
        .0
        .iter()
        .chain(tenant.0.iter())
        .filter(|e| e.matches(&host, port))
        .collect();
    if matching.is_empty() {
        return Err(format!(
            "host {host_text} is not in the outbound allow-list (the tenant's allowed_hosts or CASSA_OUTBOUND_ALLOW)"
        ).into());
    }
    let usable: Vec<&&AllowEntry> = matching.iter().filter(|e| e.http || !http).collect();
    if usable.is_empty() {
        return Err(format!(
            "must be https: plain http only for hosts an allow-list entry opens for it (http://{host_text})"
        ).into());
    }
    let exact = usable
        .iter()
        .any(|e| matches!(e.host, HostPattern::Exact(_)));
    let ip = match host {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    };
    if let Some(ip) = ip {
        let class = classify(ip);
        if class != AddressClass::Public && !exact {
            return Err(format!("{ip} is a {} address", class.as_str()).into());
        }
    }
    Ok(Admitted {
        private_ok: exact.then_some(host_text),
        url: parsed,
    })
}

/// Whether `url` is one of cassa's own pages (under its public URL).
pub fn is_own(url: &str, public_url: &str) -> bool {
    let own = public_url.trim_end_matches('/');
    url.strip_prefix(own)
        .is_some_and(|rest| rest.starts_with('/') && !rest.starts_with("//"))
        && !has_odd_characters(url)
}

/// A DNS resolver for reqwest that drops non-public addresses from what a name resolves
/// to (unless the allow-list names that host exactly), so a name that points at
/// loopback, or changes between the check and the call, is refused at connect time.
#[derive(Clone)]
pub struct GuardedResolver {
    private_ok: Option<String>,
    /// Tests: names resolved from this map only (no DNS at all).
    fixed: Option<Arc<HashMap<String, Vec<IpAddr>>>>,
    refused: Arc<AtomicU64>,
}

/// Why the resolver refused a name.
#[derive(Debug, thiserror::Error)]
#[error("refused by the outbound policy: {0}")]
pub struct NameRefused(pub String);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let this = self.clone();
        Box::pin(async move {
            let found: Vec<IpAddr> = match &this.fixed {
                Some(map) => map.get(&host).cloned().unwrap_or_default(),
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await?
                    .map(|a| a.ip())
                    .collect(),
            };
            let private_ok = this.private_ok.as_deref() == Some(host.as_str());
            let kept: Vec<SocketAddr> = found
                .iter()
                .filter(|ip| private_ok || classify(**ip) == AddressClass::Public)
                .map(|ip| SocketAddr::new(*ip, 0))
                .collect();
            if kept.is_empty() {
                this.refused.fetch_add(1, Ordering::Relaxed);
                let listed: Vec<String> = found
                    .iter()
                    .map(|ip| format!("{ip} ({})", classify(*ip).as_str()))
                    .collect();
                let reason = if listed.is_empty() {
                    format!("{host} does not resolve")
                } else {
                    format!("{host} resolves to {}", listed.join(", "))
                };
                tracing::warn!(%host, %reason, "outbound call refused at connect time");
                return Err(
                    Box::new(NameRefused(reason)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Counts of refused outbound calls, by where they were refused.
#[derive(Debug, Default)]
pub struct OutboundStats {
    /// URLs refused by the policy when about to be called.
    pub refused_url: AtomicU64,
    /// Names refused by the resolver (they resolved to non-public addresses).
    pub refused_dns: Arc<AtomicU64>,
    /// Redirects cassa did not answer (the target was off the allow-list).
    pub refused_redirect: AtomicU64,
}

/// The outbound policy in force and the clients that obey it: every outbound call site
/// asks [`Outbound::admit`] for its URL and client.
pub struct Outbound {
    global: AllowList,
    fixed: Option<Arc<HashMap<String, Vec<IpAddr>>>>,
    timeout: Duration,
    stats: OutboundStats,
    clients: Mutex<HashMap<Option<String>, reqwest::Client>>,
}

impl Outbound {
    /// The policy `global` (the setting plus what the embedded mode opens), resolving
    /// names with the system resolver.
    pub fn new(global: AllowList, timeout: Duration) -> Self {
        Outbound {
            global,
            fixed: None,
            timeout,
            stats: OutboundStats::default(),
            clients: Mutex::default(),
        }
    }

    /// Tests: resolve names from `names` only, never through DNS.
    pub fn resolving_only(mut self, names: &[(String, IpAddr)]) -> Self {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (name, ip) in names {
            map.entry(name.to_ascii_lowercase()).or_default().push(*ip);
        }
        self.fixed = Some(Arc::new(map));
        self
    }

    /// The global allow-list.
    pub fn global(&self) -> &AllowList {
        &self.global
    }

    /// The counters shown in `/metrics`.
    pub fn stats(&self) -> &OutboundStats {
        &self.stats
    }

    /// Checks `url` for a call (`what`, for the log) with the tenant's allow-list, and
    /// hands out the client to make it with. A refusal is counted and logged.
    pub fn admit(
        &self,
        what: &str,
        url: &str,
        tenant: &AllowList,
    ) -> Result<(Url, reqwest::Client), Refused> {
        let admitted = check(url, &self.global, tenant).map_err(|reason| {
            self.stats.refused_url.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(call = what, %url, %reason, "outbound call refused");
            format!("{url}: refused by the outbound policy: {reason}")
        })?;
        let client = self.client(admitted.private_ok.as_deref())?;
        Ok((admitted.url, client))
    }

    /// Checks a URL about to be stored: the policy, and for a name that only a wildcard
    /// allows, what it resolves to now (a name pointing at loopback is refused when it
    /// is written, not only when it is called). The reason when refused.
    pub async fn check_stored(&self, url: &str, tenant: &AllowList) -> Result<(), Refused> {
        let admitted = check(url, &self.global, tenant)?;
        let name = match admitted.url.host() {
            Some(Host::Domain(name)) if admitted.private_ok.is_none() => name.to_string(),
            _ => return Ok(()),
        };
        let resolver = GuardedResolver {
            private_ok: None,
            fixed: self.fixed.clone(),
            refused: self.stats.refused_dns.clone(),
        };
        let name: reqwest::dns::Name = name
            .parse()
            .map_err(|_| format!("{name} is not a host name"))?;
        reqwest::dns::Resolve::resolve(&resolver, name)
            .await
            .map(|_| ())
            .map_err(|e| Refused(e.to_string()))
    }

    /// Checks a redirect target: cassa's own pages, or an allowed host (by the same
    /// rules as a stored URL: a wildcard-allowed name must resolve to public addresses,
    /// so citizens are not sent to internal hosts either). A refusal is counted and
    /// logged.
    pub async fn admit_redirect(
        &self,
        url: &str,
        public_url: &str,
        tenant: &AllowList,
    ) -> Result<(), Refused> {
        if is_own(url, public_url) {
            return Ok(());
        }
        self.check_stored(url, tenant).await.map_err(|reason| {
            self.stats.refused_redirect.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%url, %reason, "redirect refused");
            reason
        })
    }

    /// The client for hosts whose private addresses are (`Some(host)`) or are not allowed.
    pub fn client(&self, private_ok: Option<&str>) -> Result<reqwest::Client, Refused> {
        let key = private_ok.map(str::to_string);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let resolver = GuardedResolver {
            private_ok: key.clone(),
            fixed: self.fixed.clone(),
            refused: self.stats.refused_dns.clone(),
        };
        let client = client_builder(resolver, self.timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        // Bounded: one client per exactly allowed host, and one for all others.
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// The one way outbound clients are built: redirects never followed (a 3xx is an
/// answer, so nothing, credentials included, is sent to a host other than the
/// configured one), no proxy from the environment (it would resolve names instead of
/// the guard), names resolved by the guard, a time limit.
fn client_builder(resolver: GuardedResolver, timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(resolver))
        .timeout(timeout)
        .connect_timeout(timeout)
}

/// Reads a response body, refusing one over `RESPONSE_MAX` bytes.
pub async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, Refused> {
    if response
        .content_length()
        .is_some_and(|n| n > RESPONSE_MAX as u64)
    {
        return Err(format!("answer larger than {RESPONSE_MAX} bytes").into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("unreadable answer: {}", describe(&e)))?
    {
        if body.len() + chunk.len() > RESPONSE_MAX {
            return Err(format!("answer larger than {RESPONSE_MAX} bytes").into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its causes (reqwest's own text hides why a connection failed, e.g.
/// the resolver's refusal).
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn every_special_range_is_classified() {
        use AddressClass::*;
        let cases = [
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("::1", Loopback),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.1", LinkLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", Private),
            ("198.18.0.1", Private),
            ("fec0::1", Private),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("::", Unspecified),
            ("224.0.0.1", Multicast),
            ("239.255.255.255", Multicast),
            ("ff02::1", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.2.1", Reserved),
            ("2001:db8::1", Reserved),
            // IPv4 inside IPv6: mapped, compatible, NAT64.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:0.0.0.0", Unspecified),
            ("::127.0.0.1", Loopback),
            ("64:ff9b::a00:1", Private),
            ("::ffff:93.184.216.34", Public),
            // Public neighbours of the ranges.
            ("172.15.255.255", Public),
            ("172.32.0.0", Public),
            ("169.253.255.255", Public),
            ("11.0.0.1", Public),
            ("126.255.255.255", Public),
            ("128.0.0.1", Public),
            ("192.167.255.255", Public),
            ("223.255.255.255", Public),
            ("93.184.216.34", Public),
            ("2a00:1450::1", Public),
            ("2606:4700::1111", Public),
        ];
        for (text, class) in cases {
            assert_eq!(classify(ip(text)), class, "{text}");
        }
    }

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(entries).unwrap()
    }

    #[test]
    fn urls_need_https_an_allowed_host_and_no_credentials() {
        let global = list(&["pay.example.it", "http://127.0.0.1:8090"]);
        let tenant = list(&["*.comune.example.it"]);
        let ok = |url: &str| check(url, &global, &tenant);
        assert!(ok("https://pay.example.it/notify")
            .unwrap()
            .private_ok
            .is_some());
        assert!(ok("https://www.comune.example.it/x")
            .unwrap()
            .private_ok
            .is_none());
        assert!(ok("https://a.b.comune.example.it:8443/x").is_ok());
        assert!(ok("http://127.0.0.1:8090/sim").is_ok());
        for (url, says) in [
            ("http://pay.example.it/notify", "https"),
            (
                "https://comune.example.it/x",
                "not in the outbound allow-list",
            ),
            (
                "https://evil.example/phish",
                "not in the outbound allow-list",
            ),
            ("https://user:pass@pay.example.it/", "credentials"),
            ("https://user@pay.example.it/", "credentials"),
            ("https://127.0.0.1/x", "not in the outbound allow-list"),
            (
                "http://127.0.0.1:8091/sim",
                "not in the outbound allow-list",
            ),
            ("https://[::1]/x", "not in the outbound allow-list"),
            ("https://0.0.0.0/x", "not in the outbound allow-list"),
            ("ftp://pay.example.it/", "https"),
            ("https://pay.example.it/a\"b", "quotes"),
            ("https://pay.example.it/a\\b", "backslashes"),
            ("https://pay.example.it/a b", "spaces"),
            ("https://pay.example.it/a\nb", "control"),
            ("https://pay.example.it/a'onload", "quotes"),
            ("not a url", "spaces"),
            ("/relative", "absolute"),
        ] {
            let err = ok(url).unwrap_err();
            assert!(err.0.contains(says), "{url}: {err}");
        }
        // A wildcard never opens an IP or a non-public literal.
        let wild = list(&["*.example.it"]);
        assert!(check("https://10.0.0.1/", &wild, &AllowList::default()).is_err());
    }

    #[test]
    fn allow_entries_parse_and_refuse_garbage() {
        for good in [
            "pay.example.it",
            "*.comune.example.it",
            "http://127.0.0.1:8090",
            "https://pay.example.it:8443",
            "[::1]",
            "PAY.Example.IT",
        ] {
            assert!(AllowEntry::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "*.it",
            "*",
            "pay.example.it/path",
            "ftp://x.example",
            "user@x.example",
            "x .example",
            "x\"y",
        ] {
            assert!(AllowEntry::parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse_allow_setting("a.example, http://127.0.0.1:8080 ,").is_ok());
        assert!(parse_allow_setting("a.example,b/c").is_err());
        let entry = exact_entry_for("http://127.0.0.1:8080/sim").unwrap();
        assert!(check(
            "http://127.0.0.1:8080/sim/positions",
            &AllowList::default().with(entry),
            &AllowList::default()
        )
        .is_ok());
    }

    #[test]
    fn own_pages_are_recognised() {
        let own = "http://127.0.0.1:8080";
        assert!(is_own("http://127.0.0.1:8080/sim/checkout/1", own));
        assert!(!is_own("http://127.0.0.1:8080.evil.example/x", own));
        assert!(!is_own("http://127.0.0.1:8080//evil.example/x", own));
        assert!(!is_own("http://127.0.0.1:80801/x", own));
    }

    #[tokio::test]
    async fn the_resolver_drops_non_public_addresses_unless_named_exactly() {
        use reqwest::dns::Resolve;
        let fixed = Arc::new(HashMap::from([
            ("trap.test".to_string(), vec![ip("127.0.0.1")]),
            (
                "mixed.test".to_string(),
                vec![ip("10.0.0.1"), ip("93.184.216.34")],
            ),
        ]));
        let resolver = |private_ok: Option<&str>| GuardedResolver {
            private_ok: private_ok.map(str::to_string),
            fixed: Some(fixed.clone()),
            refused: Arc::default(),
        };
        let name = |n: &str| n.parse::<reqwest::dns::Name>().unwrap();
        let err = resolver(None)
            .resolve(name("trap.test"))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("127.0.0.1 (loopback)"), "{err}");
        let kept: Vec<_> = resolver(None)
            .resolve(name("mixed.test"))
            .await
            .unwrap()
            .collect();
        assert_eq!(kept, vec!["93.184.216.34:0".parse().unwrap()]);
        assert!(resolver(Some("trap.test"))
            .resolve(name("trap.test"))
            .await
            .is_ok());
        // Named exactly is per host: another name is still refused.
        assert!(resolver(Some("other.test"))
            .resolve(name("trap.test"))
            .await
            .is_err());
        assert!(resolver(None).resolve(name("unknown.test")).await.is_err());
    }

    /// A loopback server answering every request with `response` (then closing), and
    /// how many connections it took.
    async fn answering(response: Vec<u8>) -> (std::net::SocketAddr, Arc<AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::Relaxed);
                let response = response.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = socket.write_all(&response).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        (addr, hits)
    }

    fn guarded_client() -> reqwest::Client {
        let resolver = GuardedResolver {
            private_ok: None,
            fixed: Some(Arc::default()),
            refused: Arc::default(),
        };
        client_builder(resolver, Duration::from_secs(5))
            .build()
            .unwrap()
    }

    /// A 3xx is an answer, not a hop: the credentials sent with the call never reach the
    /// host it points at.
    #[tokio::test]
    async fn outbound_calls_follow_no_redirect() {
        let (elsewhere, hits) =
            answering(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        let redirect = format!(
            "HTTP/1.1 302 Found\r\nlocation: http://{elsewhere}/steal\r\ncontent-length: 0\r\n\r\n"
        );
        let (first, _) = answering(redirect.into_bytes()).await;
        let answer = guarded_client()
            .get(format!("http://{first}/position"))
            .header("Ocp-Apim-Subscription-Key", "secret")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 302);
        assert_eq!(hits.load(Ordering::Relaxed), 0, "the redirect was followed");
    }

    /// Answers over `RESPONSE_MAX` are refused whether they announce their length or not.
    #[tokio::test]
    async fn answers_over_the_cap_are_refused_announced_or_not() {
        let client = guarded_client();
        let read = |addr: std::net::SocketAddr| {
            let client = client.clone();
            async move {
                let response = client.get(format!("http://{addr}/")).send().await.unwrap();
                read_capped(response).await
            }
        };
        let announced = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            RESPONSE_MAX + 1
        );
        let (addr, _) = answering(announced.into_bytes()).await;
        let err = read(addr).await.unwrap_err();
        assert!(err.0.contains("larger than"), "{err}");

        // No length: the body ends when the connection closes, one byte past the cap.
        let mut unannounced = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        unannounced.extend(std::iter::repeat_n(b'x', RESPONSE_MAX + 1));
        let (addr, _) = answering(unannounced).await;
        let err = read(addr).await.unwrap_err();
        assert!(err.0.contains("larger than"), "{err}");

        let mut at_the_cap =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {RESPONSE_MAX}\r\n\r\n").into_bytes();
        at_the_cap.extend(std::iter::repeat_n(b'x', RESPONSE_MAX));
        let (addr, _) = answering(at_the_cap).await;
        assert_eq!(read(addr).await.unwrap().len(), RESPONSE_MAX);
    }
}
