//! The operators' configuration API: an operator sets up a tenant's service with its
//! intermediary credentials and takes payments on it; the credentials are used but never
//! shown, logged, published or stored in the clear; soft deletes keep data and block new
//! payments; every field rule answers 400 naming the field.

use std::process::{Command, Stdio};

use cassa::auth::Role;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;
use crate::kafka::{read_until, reader};
use crate::restart::{free_port, wait_ready};

const API_KEY: &str = "sim-key-7f3a9c1e5b";
const PASSWORD: &str = "pw-9d2e6b4a8c";
/// The payer of `citizen_body`, and an e-mail for them: never in the logs.
const PAYER_TAX_CODE: &str = "RSSMRA80A01H501U";
const PAYER_EMAIL: &str = "mario.rossi@posta.example.it";

async fn send(request: reqwest::RequestBuilder, status: u16) -> Value {
    let response = request.send().await.unwrap();
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn tenant(id: Uuid) -> Value {
    json!({"id": id, "name": "Comune di Altrove", "tax_identification_number": "02438750586"})
}

fn service(tenant: Uuid, sim: &str, api_key: &str) -> Value {
    json!({
        "tenant_id": tenant, "payment_type": "PAGOPA",
        "remote_collection": {"id": "mensa", "type": "service"},
        "amount_max": "50.00", "reason": "Mensa scolastica", "expire_at": 30,
        "receiver": {"tax_identification_number": "02438750586", "name": "Comune di Altrove"},
        "collection_data": "0101108TS",
        "intermediary": {"kind": "simulator", "url": sim,
                         "credentials": {"username": "altrove", "password": PASSWORD, "api_key": api_key}}
    })
}

fn payment_for(tenant: Uuid, service: &str, amount: &str) -> Value {
    let mut body = citizen_body(amount);
    body["tenant_id"] = json!(tenant);
    body["service_id"] = json!(service);
    body
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [API_KEY, PASSWORD] {
        assert!(!text.contains(secret), "{what} contains a secret: {text}");
    }
}

async fn operator_sets_up_a_service_and_takes_payments(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let keyed =
        TestSimulator::serve_with_key(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), API_KEY);
    let admin = admin_client();
    let tenant_id = Uuid::new_v4();
    let created = send(
        admin.post(app.url("/v1/tenants")).json(&tenant(tenant_id)),
        201,
    )
    .await;
    assert_eq!(created["active"], true);
    send(
        admin.post(app.url("/v1/tenants")).json(&tenant(tenant_id)),
        409,
    )
    .await;

    let operator = client_with(Some(&token(Role::Operator, Some(tenant_id), "op-altrove")));
    let citizen = client_with(Some(&citizen_token_in(
        tenant_id,
        Uuid::new_v4(),
        Some("RSSMRA80A01H501U"),
    )));
    let mut shown = Vec::new();
    let made = send(
        operator
            .post(app.url("/v1/services"))
            .json(&service(tenant_id, &keyed.base, API_KEY)),
        201,
    )
    .await;
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(
        made["intermediary"]["credentials"],
        json!({"username": "********", "password": "********", "api_key": "********"})
    );
    assert_eq!(made["collection_data"], "9/0101108TS/");
    shown.push(made.to_string());
    let mut again = service(tenant_id, &keyed.base, API_KEY);
    again["id"] = json!(id);
    // A tenant's operator may not choose a service id, not even its own service's.
    send(operator.post(app.url("/v1/services")).json(&again), 400).await;
    shown.push(
        send(operator.get(app.url(&format!("/v1/services/{id}"))), 200)
            .await
            .to_string(),
    );
    shown.push(
        send(operator.get(app.url("/v1/services")), 200)
            .await
            .to_string(),
    );

    // The credentials reach the intermediary: it refuses calls without its key.
    let paid = send(
        citizen
            .post(app.url("/v1/payments"))
            .json(&payment_for(tenant_id, &id, "20.00")),
        202,
    )
    .await;
    let paid_id = paid["id"].as_str().unwrap().to_string();
    let pending = app.wait_for(&paid_id, "PAYMENT_PENDING", 15).await;
    // The service's expire_at (30 days) became the payment's expiry.
    assert!(pending["payment"]["expire_at"].is_string(), "{pending}");
    keyed.pay(pending["payment"]["iuv"].as_str().unwrap()).await;
    let complete = app.wait_for(&paid_id, "COMPLETE", 15).await;
    shown.push(complete.to_string());
    let wrong = send(
        operator.post(app.url("/v1/services")).json(&service(
            tenant_id,
            &keyed.base,
            "not-the-key",
        )),
        201,
    )
    .await;
    let refused = send(
        citizen.post(app.url("/v1/payments")).json(&payment_for(
            tenant_id,
            wrong["id"].as_str().unwrap(),
            "20.00",
        )),
        202,
    )
    .await;
    app.wait_for(refused["id"].as_str().unwrap(), "CREATION_FAILED", 15)
        .await;

    // A GET → PUT round trip with the masks keeps the secrets; so does a PATCH.
    let mut doc = send(operator.get(app.url(&format!("/v1/services/{id}"))), 200).await;
    doc.as_object_mut().unwrap().remove("created_at");
    doc.as_object_mut().unwrap().remove("updated_at");
    doc["reason"] = json!("Mensa scolastica 2027");
    let put = send(
        operator
            .put(app.url(&format!("/v1/services/{id}")))
            .json(&doc),
        200,
    )
    .await;
    assert_eq!(put["reason"], "Mensa scolastica 2027");
    shown.push(put.to_string());
    let patched = send(
        operator
            .patch(app.url(&format!("/v1/services/{id}")))
            .json(&json!({"amount_max": "60.00"})),
        200,
    )
    .await;
    assert_eq!(patched["amount_max"], json!(60.0));
    shown.push(patched.to_string());
    let after = send(
        citizen
            .post(app.url("/v1/payments"))
            .json(&payment_for(tenant_id, &id, "21.00")),
        202,
    )
    .await;
    let after = app
        .wait_for(after["id"].as_str().unwrap(), "PAYMENT_PENDING", 15)
        .await;
    shown.push(after.to_string());

    // Stored sealed, not in the clear; no event carries them.
    let stored = app
        .store
        .service(Uuid::parse_str(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let sealed = stored.credentials.unwrap();
    assert!(sealed.starts_with("v1:"));
    assert_no_secret("the stored credentials", &sealed);
    assert_no_secret("the stored document", &stored.document.to_string());
    // A stale write loses: the store only updates the version it read.
    let mut stale = app
        .store
        .service(Uuid::parse_str(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    stale.active = false;
    assert!(app.store.update_service(&stale).await.unwrap());
    assert!(
        !app.store.update_service(&stale).await.unwrap(),
        "the second write read an old version"
    );
    stale.version += 1;
    stale.active = true;
    assert!(app.store.update_service(&stale).await.unwrap());
    // Credentials belong to their intermediary: a new URL keeps none of them, and a
    // mask cannot smuggle them there.
    let moved = send(
        operator
            .patch(app.url(&format!("/v1/services/{id}")))
            .json(&json!({"intermediary": {"url": "http://127.0.0.1:9/elsewhere"}})),
        200,
    )
    .await;
    assert!(
        moved["intermediary"].get("credentials").is_none(),
        "{moved}"
    );
    let refused = send(
        operator.patch(app.url(&format!("/v1/services/{id}"))).json(
            &json!({"intermediary": {"url": keyed.base, "credentials": {"api_key": "********"}}}),
        ),
        400,
    )
    .await;
    assert_eq!(refused["field"], "intermediary.credentials.api_key");
    send(
        operator
            .patch(app.url(&format!("/v1/services/{id}")))
            .json(&json!({"intermediary": {"url": keyed.base, "credentials": {"username": "altrove", "password": PASSWORD, "api_key": API_KEY}}})),
        200,
    )
    .await;

    // Removing the API key (merge patch null) is honoured: the intermediary refuses.
    let cleared = send(
        operator
            .patch(app.url(&format!("/v1/services/{id}")))
            .json(&json!({"intermediary": {"credentials": {"api_key": null}}})),
        200,
    )
    .await;
    assert_eq!(
        cleared["intermediary"]["credentials"],
        json!({"username": "********", "password": "********"})
    );
    let cleared = send(
        operator
            .patch(app.url(&format!("/v1/services/{id}")))
            .json(&json!({"intermediary": {"credentials": null}})),
        200,
    )
    .await;
    assert!(
        cleared["intermediary"].get("credentials").is_none(),
        "{cleared}"
    );
    let without = send(
        citizen
            .post(app.url("/v1/payments"))
            .json(&payment_for(tenant_id, &id, "22.00")),
        202,
    )
    .await;
    app.wait_for(without["id"].as_str().unwrap(), "CREATION_FAILED", 15)
        .await;

    for text in &shown {
        assert_no_secret("an API answer", text);
    }
    for event in app.events(&paid_id).await {
        assert_no_secret("an event", &event.to_string());
    }
}

#[actix_rt::test]
async fn an_operator_sets_up_a_service_with_credentials_and_takes_payments_sqlite() {
    operator_sets_up_a_service_and_takes_payments(Backend::Sqlite).await;
}

#[actix_rt::test]
async fn an_operator_sets_up_a_service_with_credentials_and_takes_payments_postgres() {
    if crate::helpers::postgres_skipped(concat!(
        module_path!(),
        "::an_operator_sets_up_a_service_with_credentials_and_takes_payments_postgres"
    )) {
        return;
    }
    operator_sets_up_a_service_and_takes_payments(Backend::Postgres).await;
}

#[actix_rt::test]
async fn soft_deletes_keep_the_data_and_block_new_payments_only() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = admin_client();
    let tenant_id = Uuid::new_v4();
    send(
        admin.post(app.url("/v1/tenants")).json(&tenant(tenant_id)),
        201,
    )
    .await;
    let mut body = service(tenant_id, &app.sim.base, API_KEY);
    body["intermediary"]
        .as_object_mut()
        .unwrap()
        .remove("credentials");
    let id = send(admin.post(app.url("/v1/services")).json(&body), 201).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let open = app.create(&payment_for(tenant_id, &id, "30.00")).await;
    let open_id = open["id"].as_str().unwrap().to_string();
    let pending = app.wait_for(&open_id, "PAYMENT_PENDING", 15).await;

    // Service deleted: kept, inactive, new payments refused, the open one completes.
    send(admin.delete(app.url(&format!("/v1/services/{id}"))), 204).await;
    let kept = send(admin.get(app.url(&format!("/v1/services/{id}"))), 200).await;
    assert_eq!(kept["active"], false);
    assert_eq!(kept["reason"], "Mensa scolastica");
    let refused = send(
        admin
            .post(app.url("/v1/payments"))
            .json(&payment_for(tenant_id, &id, "31.00")),
        400,
    )
    .await;
    assert_eq!(refused["field"], "service_id");
    app.sim
        .pay(pending["payment"]["iuv"].as_str().unwrap())
        .await;
    app.wait_for(&open_id, "COMPLETE", 15).await;
    // Reactivated, it takes payments again.
    send(
        admin
            .patch(app.url(&format!("/v1/services/{id}")))
            .json(&json!({"active": true})),
        200,
    )
    .await;
    send(
        admin
            .post(app.url("/v1/payments"))
            .json(&payment_for(tenant_id, &id, "32.00")),
        202,
    )
    .await;

    // Tenant deleted: kept (also in the list), inactive, its services take no payments.
    send(
        admin.delete(app.url(&format!("/v1/tenants/{tenant_id}"))),
        204,
    )
    .await;
    let kept = send(admin.get(app.url(&format!("/v1/tenants/{tenant_id}"))), 200).await;
    assert_eq!(kept["active"], false);
    assert_eq!(kept["name"], "Comune di Altrove");
    let listed = send(admin.get(app.url("/v1/tenants?limit=500")), 200).await;
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == json!(tenant_id)));
    let refused = send(
        admin
            .post(app.url("/v1/payments"))
            .json(&payment_for(tenant_id, &id, "33.00")),
        400,
    )
    .await;
    assert_eq!(refused["field"], "tenant_id");
    let refused = send(admin.post(app.url("/v1/services")).json(&body), 400).await;
    assert_eq!(refused["field"], "tenant_id");
}

#[actix_rt::test]
async fn every_field_rule_is_a_400_naming_the_field() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = admin_client();
    let tenant_cases: Vec<(&str, Value)> = vec![
        (
            "name",
            json!({"name": " ", "tax_identification_number": "02438750586"}),
        ),
        (
            "name",
            json!({"name": "n".repeat(256), "tax_identification_number": "02438750586"}),
        ),
        (
            "tax_identification_number",
            json!({"name": "C", "tax_identification_number": "02438750587"}),
        ),
        (
            "tax_identification_number",
            json!({"name": "C", "tax_identification_number": "RSSMRA80A01H501X"}),
        ),
        (
            "id",
            json!({"id": "not-a-uuid", "name": "C", "tax_identification_number": "02438750586"}),
        ),
        (
            "colour",
            json!({"name": "C", "tax_identification_number": "02438750586", "colour": "red"}),
        ),
        ("name", json!({"tax_identification_number": "02438750586"})),
    ];
    for (field, body) in tenant_cases {
        let problem = send(admin.post(app.url("/v1/tenants")).json(&body), 400).await;
        assert_eq!(problem["field"], field, "{problem}");
    }
    let sim = app.sim.base.clone();
    let base = service(cassa::seed::DEMO_TENANT, &sim, API_KEY);
    let service_cases: Vec<(&str, &str, Value)> = vec![
        ("tenant_id", "tenant_id", json!(Uuid::new_v4())),
        ("payment_type", "payment_type", json!("CASH")),
        ("payment_type", "payment_type", json!([])),
        (
            "remote_collection.type",
            "remote_collection",
            json!({"id": "x", "type": "thing"}),
        ),
        ("amount", "amount", json!("0.00")),
        ("amount", "amount", json!("1.234")),
        ("reason", "reason", json!("")),
        ("expire_at", "expire_at", json!(0)),
        (
            "receiver.tax_identification_number",
            "receiver",
            json!({"tax_identification_number": "123", "name": "C"}),
        ),
        (
            "receiver.name",
            "receiver",
            json!({"tax_identification_number": "02438750586", "name": "n".repeat(256)}),
        ),
        ("collection_data", "collection_data", json!("TARI")),
        (
            "intermediary.kind",
            "intermediary",
            json!({"kind": "ftp", "url": sim}),
        ),
        (
            "intermediary.url",
            "intermediary",
            json!({"kind": "simulator", "url": "ftp://x"}),
        ),
        (
            "intermediary.url",
            "intermediary",
            json!({"kind": "simulator", "url": "http://u:p@host/sim"}),
        ),
        (
            "intermediary.credentials.username",
            "intermediary",
            json!({"kind": "simulator", "url": sim, "credentials": {"password": "p"}}),
        ),
        (
            "intermediary.credentials.api_key",
            "intermediary",
            json!({"kind": "simulator", "url": sim, "credentials": {"api_key": "********"}}),
        ),
        (
            "intermediary.credentials.token",
            "intermediary",
            json!({"kind": "simulator", "url": sim, "credentials": {"token": "t"}}),
        ),
    ];
    for (field, key, value) in service_cases {
        let mut body = base.clone();
        body[key] = value;
        let problem = send(admin.post(app.url("/v1/services")).json(&body), 400).await;
        assert_eq!(problem["field"], field, "{problem}");
        assert_no_secret("a 400", &problem.to_string());
    }
    // A PATCH is validated as a whole after merging; a PUT's id must match the path.
    let id = cassa::seed::DEMO_SERVICE;
    let problem = send(
        admin
            .patch(app.url(&format!("/v1/services/{id}")))
            .json(&json!({"reason": ""})),
        400,
    )
    .await;
    assert_eq!(problem["field"], "reason");
    let problem = send(
        admin
            .patch(app.url(&format!("/v1/services/{id}")))
            .json(&json!({"receiver": null})),
        400,
    )
    .await;
    assert_eq!(problem["field"], "receiver");
    let problem = send(
        admin.put(app.url(&format!("/v1/services/{id}"))).json(&{
            let mut b = base.clone();
            b["id"] = json!(Uuid::new_v4());
            b
        }),
        400,
    )
    .await;
    assert_eq!(problem["field"], "id");
    for path in [
        format!("/v1/services/{id}"),
        format!("/v1/tenants/{}", cassa::seed::DEMO_TENANT),
    ] {
        let problem = send(
            admin.patch(app.url(&path)).json(&json!({"active": null})),
            400,
        )
        .await;
        assert_eq!(problem["field"], "active");
    }
    let problem = send(
        admin
            .patch(app.url(&format!("/v1/tenants/{}", cassa::seed::DEMO_TENANT)))
            .json(&json!({"tax_identification_number": "0"})),
        400,
    )
    .await;
    assert_eq!(problem["field"], "tax_identification_number");
    // Nothing was half-written: the demo service is as seeded.
    let demo = send(admin.get(app.url(&format!("/v1/services/{id}"))), 200).await;
    assert_eq!(demo["reason"], "Servizi comunali (demo)");
    // The schemas are form.io forms.
    for path in ["/v1/tenants/schema", "/v1/services/schema"] {
        let schema = send(admin.get(app.url(path)), 200).await;
        assert_eq!(schema["display"], "form");
        assert!(schema["components"].as_array().unwrap().len() > 3);
    }
}

/// The real binary, its own embedded keys, logs at debug captured to a file, its Kafka
/// topic read over the protocol, its SQLite file read byte by byte: the credentials
/// appear in none of them, nor the payer's tax code, name or e-mail in the logs, and
/// `cassa token` mints working tokens from the kept secret.
#[actix_rt::test]
async fn credentials_never_appear_in_answers_logs_events_or_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let db_file = dir.path().join("cassa.db");
    let db_url = format!("sqlite://{}", db_file.display());
    let log_path = dir.path().join("cassa.log");
    let keyed =
        TestSimulator::serve_with_key(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), API_KEY);
    let (port, kafka_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(&log_path).unwrap();
    // What it prints (the demo banner, whose example payer is this test's) apart from
    // its logs (stderr).
    let printed_path = dir.path().join("cassa.out");
    let printed = std::fs::File::create(&printed_path).unwrap();
    let mut child = crate::restart::Spawned(
        Command::new(env!("CARGO_BIN_EXE_cassa"))
            .arg("serve")
            .env("CASSA_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("CASSA_DATABASE_URL", &db_url)
            .env("CASSA_KAFKA_EMBEDDED_PORT", kafka_port.to_string())
            .env("CASSA_POLL_SCHEDULE", "*:1s")
            .env("CASSA_LOG", "debug")
            .env("CASSA_OUTBOUND_ALLOW", TEST_OUTBOUND_ALLOW)
            .stdout(printed)
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let mint = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cassa"))
            .arg("token")
            .args(args)
            .args(["--database-url", &db_url])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    wait_ready(&client_with(None), &base).await;
    let secrets_file = dir.path().join("cassa.db.secrets");
    assert!(
        secrets_file.exists(),
        "the embedded keys are kept beside the database"
    );
    let admin = client_with(Some(&mint(&["--role", "admin"])));
    let tenant_id = Uuid::new_v4();
    let mut shown = vec![send(
        admin
            .post(format!("{base}/v1/tenants"))
            .json(&tenant(tenant_id)),
        201,
    )
    .await
    .to_string()];
    let tenant_arg = tenant_id.to_string();
    let operator = client_with(Some(&mint(&[
        "--role",
        "operator",
        "--tenant",
        &tenant_arg,
    ])));
    let made = send(
        operator.post(format!("{base}/v1/services")).json(&service(
            tenant_id,
            &keyed.base,
            API_KEY,
        )),
        201,
    )
    .await;
    let id = made["id"].as_str().unwrap().to_string();
    shown.push(made.to_string());
    shown.push(
        send(operator.get(format!("{base}/v1/services/{id}")), 200)
            .await
            .to_string(),
    );
    shown.push(
        send(
            operator
                .patch(format!("{base}/v1/services/{id}"))
                .json(&json!({"reason": "Refezione"})),
            200,
        )
        .await
        .to_string(),
    );
    let citizen = client_with(Some(&mint(&[
        "--role",
        "citizen",
        "--tenant",
        &tenant_arg,
        "--sub",
        &Uuid::new_v4().to_string(),
        "--tax-code",
        "RSSMRA80A01H501U",
    ])));
    let mut with_email = payment_for(tenant_id, &id, "40.00");
    with_email["payer"]["email"] = json!(PAYER_EMAIL);
    let created = send(
        citizen
            .post(format!("{base}/v1/payments"))
            .json(&with_email),
        202,
    )
    .await;
    let payment_id = created["id"].as_str().unwrap().to_string();
    let pending = wait_for_status(&citizen, &base, &payment_id, "PAYMENT_PENDING", 20).await;
    keyed.pay(pending["payment"]["iuv"].as_str().unwrap()).await;
    shown.push(
        wait_for_status(&citizen, &base, &payment_id, "COMPLETE", 20)
            .await
            .to_string(),
    );

    // The events as Kafka carries them.
    let records = read_until(
        &reader(&format!("127.0.0.1:{kafka_port}"), "payments"),
        30,
        |seen| {
            seen.iter().any(|(k, payload, _)| {
                k.as_deref() == Some(payment_id.as_str())
                    && String::from_utf8_lossy(payload).contains("\"COMPLETE\"")
            })
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();

    for text in &shown {
        assert_no_secret("an API answer", text);
    }
    assert!(records.len() >= 3);
    for (_, payload, headers) in &records {
        assert_no_secret("a Kafka record", &String::from_utf8_lossy(payload));
        assert_no_secret("Kafka headers", &format!("{headers:?}"));
    }
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.contains("service config created"),
        "logs were captured: {logs}"
    );
    assert!(logs.contains("DEBUG"), "debug logs were captured");
    assert_no_secret("the logs", &logs);
    assert_no_secret(
        "what it printed",
        &std::fs::read_to_string(&printed_path).unwrap(),
    );
    // Personal data neither (issue 23): payment ids only, even at debug level.
    for personal in [PAYER_TAX_CODE, PAYER_EMAIL, "Rossi"] {
        assert!(
            !logs.contains(personal),
            "the logs contain the payer's {personal}: {logs}"
        );
    }
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let path = file.unwrap().path();
        if path.to_string_lossy().contains("cassa.db") && path != secrets_file {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert_no_secret(&path.display().to_string(), &text);
        }
    }
}
