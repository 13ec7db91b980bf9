//! `/metrics` (issue 25 point 9): the exposition stays parseable whatever an
//! intermediary's URL holds, intermediaries are labelled by a short name (never their
//! URL), and a tenant-scoped system token sees only its own tenant's intermediaries.

use cassa::auth::Role;
use cassa::domain::payment::PaymentType;
use cassa::seed::DEMO_TENANT;
use cassa::store::{ServiceConfig, Tenant};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

/// One sample of the exposition: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// A strict reader of the Prometheus text format (what cassa writes of it): `# HELP`
/// and `# TYPE` lines, and samples `name{label="value",…} number` whose label values
/// use only the `\\`, `\"` and `\n` escapes. Any other line is an error.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if !name_ok(name) {
                return Err(format!("bad HELP line: {line:?}"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !name_ok(name) || !matches!(kind, "counter" | "gauge") || parts.next().is_some() {
                return Err(format!("bad TYPE line: {line:?}"));
            }
            continue;
        }
        let end = line
            .find(['{', ' '])
            .ok_or(format!("bad sample: {line:?}"))?;
        let name = &line[..end];
        if !name_ok(name) {
            return Err(format!("bad metric name: {line:?}"));
        }
        let mut rest = &line[end..];
        let mut labels = Vec::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            loop {
                let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
                let eq = body[start..]
                    .find('=')
                    .ok_or(format!("bad label: {line:?}"))?
                    + start;
                let key = &body[start..eq];
                if !name_ok(key) || !body[eq + 1..].starts_with('"') {
                    return Err(format!("bad label: {line:?}"));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= eq + 1) {
                    chars.next();
                }
                let mut value = String::new();
                loop {
                    match chars
                        .next()
                        .ok_or(format!("unterminated value: {line:?}"))?
                    {
                        (_, '\\') => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => return Err(format!("bad escape: {line:?}")),
                        },
                        (_, '"') => break,
                        (_, '\n') => return Err(format!("raw newline: {line:?}")),
                        (_, c) => value.push(c),
                    }
                }
                labels.push((key.to_string(), value));
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        rest = &body[i + 1..];
                        break;
                    }
                    _ => return Err(format!("bad label list: {line:?}")),
                }
            }
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or(format!("no value: {line:?}"))?
            .parse::<f64>()
            .map_err(|_| format!("bad value: {line:?}"))?;
        samples.push((name.to_string(), labels, value));
    }
    Ok(samples)
}

/// The `intermediary` labels of the exposition `client` gets.
async fn intermediaries_seen(app: &TestApp, client: &reqwest::Client) -> Vec<String> {
    let r = client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut seen: Vec<String> = samples
        .into_iter()
        .flat_map(|(_, labels, _)| labels)
        .filter(|(k, _)| k == "intermediary")
        .map(|(_, v)| v)
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

#[actix_rt::test]
async fn metrics_stay_parseable_and_show_each_tenant_only_its_intermediaries() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Another tenant whose intermediary URL would break a naive exposition: written to
    // the database directly (the configuration API refuses such URLs). On loopback,
    // where nothing answers.
    let evil = "http://127.0.0.1:9/x\"} 1\ncassa_fake{a=\"\\";
    let now = cassa::domain::time::now();
    let other = Uuid::new_v4();
    assert!(app
        .store
        .insert_tenant(&Tenant {
            id: other,
            name: "Comune di Prova".into(),
            tax_identification_number: "80016350821".into(),
            active: true,
            created_at: now,
            updated_at: now,
            version: 0,
            allowed_hosts: Vec::new(),
        })
        .await
        .unwrap());
    let service = Uuid::new_v4();
    assert!(app
        .store
        .insert_service(&ServiceConfig {
            id: service,
            tenant_id: other,
            payment_types: vec![PaymentType::Pagopa],
            intermediary_kind: "simulator".into(),
            intermediary_url: evil.into(),
            active: true,
            document: json!({}),
            credentials: None,
            created_at: now,
            updated_at: now,
            version: 0,
        })
        .await
        .unwrap());
    // A payment on each intermediary, so each has a guard.
    let demo = app.create(&pagopa_body("3.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&demo, "PAYMENT_PENDING", 10).await;
    let mut body = pagopa_body("4.00");
    body["tenant_id"] = json!(other);
    body["service_id"] = json!(service);
    app.create(&body).await;
    let (demo_name, evil_name) = (
        cassa::intermediary::label(&app.sim.base),
        cassa::intermediary::label(evil),
    );
    assert_eq!(evil_name.chars().filter(|c| *c == '"').count(), 0);
    let admin = admin_client();
    // The outbound policy refuses the planted URL before any call (quotes are never in
    // a URL cassa calls), so it gets no guard; /metrics stays parseable all the same.
    eventually("refused", std::time::Duration::from_secs(10), || async {
        let text = admin
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.lines().any(|l| {
            l.starts_with("cassa_outbound_refused_total{reason=\"url\"}") && !l.ends_with(" 0")
        }) {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;
    let all = intermediaries_seen(&app, &admin).await;
    assert!(!all.contains(&evil_name), "{all:?}");
    assert!(all.contains(&demo_name), "{all:?}");
    assert!(all.iter().all(|l| !l.contains("://")), "{all:?}");
    let demo_system = client_with(Some(&token(Role::System, Some(DEMO_TENANT), "platform")));
    assert_eq!(intermediaries_seen(&app, &demo_system).await, [demo_name]);
    let other_system = client_with(Some(&token(Role::System, Some(other), "platform")));
    // The other tenant's only intermediary was refused (no guard): it sees none, and
    // never the demo tenant's.
    assert_eq!(
        intermediaries_seen(&app, &other_system).await,
        Vec::<String>::new()
    );
}

/// The reader refuses what a naive exposition of such a URL would have been.
#[test]
fn the_reader_is_strict() {
    assert!(parse_exposition("a_total{x=\"1\"} 2\n# TYPE a_total counter\n").is_ok());
    assert!(parse_exposition("a{x=\"http://h/x\"} 1\"} 1\n").is_err());
    assert!(parse_exposition("a{x=\"\\q\"} 1\n").is_err());
    assert!(parse_exposition("a{x=\"ok\\\"\\\\\"} 1\n").is_ok());
    assert!(parse_exposition("garbage\n").is_err());
}
