//! The embedded demo as the README starts it: `cassa serve` with no settings at all (no
//! `CASSA_OUTBOUND_ALLOW`, no secrets given, the simulator it mounts itself), in an
//! empty directory. The walkthrough works out of the box, and the two attacks of
//! issue 23 fail with the defaults.

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::outbound::trap;
use crate::restart::{free_port, wait_ready, Spawned};

const TENANT: &str = "00000000-0000-4000-8000-000000000001";
const SERVICE: &str = "00000000-0000-4000-8000-000000000002";
const CITIZEN: &str = "00000000-0000-4000-8000-000000000004";
const TAX_CODE: &str = "RSSMRA80A01H501U";

/// `cassa <args>` in `dir` with an empty environment (only what finds programs).
fn cassa(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cassa"));
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A token minted as the README does, from the secret the service kept.
fn mint(dir: &std::path::Path, args: &[&str]) -> String {
    let out = cassa(dir, &[&["token"], args].concat())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The README's payment body.
fn walkthrough_body(amount: &str) -> Value {
    json!({
        "type": "PAGOPA", "tenant_id": TENANT, "service_id": SERVICE, "reason": "TARI 2026 rata 1",
        "payment": {"amount": amount, "currency": "EUR"},
        "payer": {"type": "human", "tax_identification_number": TAX_CODE, "name": "Mario", "family_name": "Rossi"}
    })
}

#[actix_rt::test]
async fn the_demo_works_out_of_the_box_and_the_outbound_attacks_fail_with_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _serving = Spawned(
        cassa(dir.path(), &["serve"])
            .env("CASSA_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .spawn()
            .unwrap(),
    );
    let anonymous = client_with(None);
    wait_ready(&anonymous, &base).await;
    let citizen = client_with(Some(&mint(
        dir.path(),
        &[
            "--role",
            "citizen",
            "--tenant",
            TENANT,
            "--sub",
            CITIZEN,
            "--tax-code",
            TAX_CODE,
        ],
    )));
    let system = client_with(Some(&mint(dir.path(), &["--role", "system"])));

    // The walkthrough: created, pending at the simulator cassa mounts, paid, complete.
    let (status, made) = send_json(
        &citizen,
        &format!("{base}/v1/payments"),
        &walkthrough_body("12.34"),
    )
    .await;
    assert_eq!(status, 202, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    let pending = wait_for_status(&citizen, &base, &id, "PAYMENT_PENDING", 30).await;
    let iuv = pending["payment"]["iuv"].as_str().unwrap();
    let r = anonymous
        .get(format!("{base}/v1/payments/{id}/online-payment"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let checkout = r.headers()["location"].to_str().unwrap();
    assert!(
        checkout.starts_with(&format!("{base}/sim/checkout/")),
        "{checkout}"
    );
    let r = anonymous
        .post(format!("{base}/sim/positions/{iuv}/pay"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = system
        .post(format!("{base}/v1/payments/{id}/update"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    wait_for_status(&citizen, &base, &id, "COMPLETE", 30).await;
    let r = anonymous
        .get(format!("{base}/v1/payments/{id}/receipt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The attacks, with the defaults: a loopback notify target (an internal admin port)
    // and a landing off cassa's own host are refused, by any token; nothing is written
    // and the trap hears nothing.
    let trap = trap("127.0.0.1:0").await.unwrap();
    let internal = format!("http://127.0.0.1:{}/internal-admin", trap.port);
    let landing = format!("http://127.0.0.2:{}/phish", trap.port);
    for client in [&citizen, &system] {
        for (links, field) in [
            (
                json!({"notify": [{"url": internal, "method": "POST"}]}),
                "links.notify",
            ),
            (
                json!({"online_payment_landing": {"url": landing}}),
                "links.online_payment_landing",
            ),
        ] {
            let mut body = walkthrough_body("5.00");
            body["links"] = links;
            let (status, problem) = send_json(client, &format!("{base}/v1/payments"), &body).await;
            assert_eq!(status, 400, "{problem}");
            assert!(
                problem["field"].as_str().unwrap().starts_with(field),
                "{problem}"
            );
        }
    }
    let listing = get_json(&system, &format!("{base}/v1/payments")).await;
    assert_eq!(listing["items"].as_array().unwrap().len(), 1, "{listing}");
    // The walkthrough payment's landing goes to cassa's own page, never elsewhere.
    let r = anonymous
        .get(format!("{base}/v1/payments/{id}/landing"))
        .send()
        .await
        .unwrap();
    match r.status().as_u16() {
        200 => assert!(r.headers().get("location").is_none()),
        302 => {
            let location = r.headers()["location"].to_str().unwrap();
            assert!(location.starts_with(&base), "{location}");
        }
        other => panic!("/landing answered {other}"),
    }
    assert_eq!(trap.hits.load(Ordering::SeqCst), 0);
}
