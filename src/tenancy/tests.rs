use super::*;

fn service() -> serde_json::Value {
    serde_json::json!({
        "tenant_id": Uuid::from_u128(1),
        "payment_type": "PAGOPA",
        "remote_collection": {"id": "mensa", "type": "service"},
        "amount": "12.50",
        "reason": "Mensa scolastica",
        "expire_at": 30,
        "receiver": {"tax_identification_number": "00743110157", "name": "Comune di Demo"},
        "collection_data": "0101108TS",
        "intermediary": {"kind": "simulator", "url": "http://127.0.0.1:9/sim/",
                         "credentials": {"username": "comune", "password": "pw"}}
    })
}

fn check(body: serde_json::Value) -> Result<ServiceBody, FieldError> {
    let mut parsed: ServiceBody =
        serde_json::from_value(body).map_err(|e| FieldError::new("(parse)", e.to_string()))?;
    parsed.validate()?;
    Ok(parsed)
}

#[test]
fn a_good_service_normalises() {
    let s = check(service()).unwrap();
    assert_eq!(s.collection_data.as_deref(), Some("9/0101108TS/"));
    for same in ["0101108ts", "0101108TS/", "9/0101108TS", "9/0101108TS/"] {
        assert_eq!(check_collection_data(same).unwrap(), "9/0101108TS/");
    }
    assert_eq!(s.intermediary.url, "http://127.0.0.1:9/sim");
    assert!(s.public().intermediary.credentials.is_none());
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("\"pw\"") && !debug.contains("comune\""),
        "{debug}"
    );
}

/// A fixed fee or a range, never both; limits and the top-up flag only where they
/// mean something; a citizen pays the fee or within the range.
#[test]
fn fee_and_top_up_rules() {
    let with = |patch: serde_json::Value| {
        let mut body = service();
        merge_patch(&mut body, &patch);
        check(body).err().map(|e| e.field)
    };
    assert_eq!(
        with(serde_json::json!({"amount_min": "1.00"})).as_deref(),
        Some("amount_min")
    );
    assert_eq!(
        with(serde_json::json!({"amount": null, "amount_min": "5.00", "amount_max": "4.99"}))
            .as_deref(),
        Some("amount_min")
    );
    assert_eq!(
        with(serde_json::json!({"amount": null, "amount_min": "5.00", "amount_max": "5.00"})),
        None
    );
    assert_eq!(
        with(serde_json::json!({"top_up_max": "10.00"})).as_deref(),
        Some("top_up_max")
    );
    assert_eq!(
        with(serde_json::json!({"wallet_top_up": true, "payment_type": ["PAGOPA", "WALLET"]}))
            .as_deref(),
        Some("wallet_top_up")
    );
    assert_eq!(
        with(serde_json::json!({"wallet_top_up": true})).as_deref(),
        Some("amount")
    );
    assert_eq!(
        with(
            serde_json::json!({"wallet_top_up": true, "amount": null, "top_up_max": "10.00", "balance_max": "99.00"})
        ),
        None
    );

    let money = |s: &str| Money::parse(s).unwrap();
    let fixed = Fees::of(&serde_json::json!({"amount": 45.0}));
    assert!(fixed.check_citizen_amount(money("45.00")).is_ok());
    let err = fixed.check_citizen_amount(money("0.05")).unwrap_err();
    assert_eq!(err.field, "payment.amount");
    let range =
        Fees::of(&serde_json::json!({"amount": null, "amount_min": "10.00", "amount_max": 20}));
    assert!(range.check_citizen_amount(money("9.99")).is_err());
    assert!(range.check_citizen_amount(money("10.00")).is_ok());
    assert!(range.check_citizen_amount(money("20.01")).is_err());
    // Defaults when the top-up service does not say.
    let top_up = Fees::of(&serde_json::json!({"wallet_top_up": true}));
    assert!(top_up.wallet_top_up);
    assert_eq!(
        (top_up.top_up_max_cents, top_up.balance_max_cents),
        (500_000, 1_000_000)
    );
    // Older documents have none of these.
    assert_eq!(Fees::of(&serde_json::json!({})).amount, None);
}

#[test]
fn every_field_rule_names_its_field() {
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("payment_type", serde_json::json!([])),
        ("payment_type", serde_json::json!(["PAGOPA", "PAGOPA"])),
        (
            "remote_collection.id",
            serde_json::json!({"id": " ", "type": "service"}),
        ),
        ("reason", serde_json::json!("")),
        ("reason", serde_json::json!("x".repeat(256))),
        ("expire_at", serde_json::json!(0)),
        ("expire_at", serde_json::json!(-3)),
        (
            "receiver.tax_identification_number",
            serde_json::json!({"tax_identification_number": "00743110158", "name": "C"}),
        ),
        (
            "receiver.name",
            serde_json::json!({"tax_identification_number": "00743110157", "name": ""}),
        ),
        (
            "receiver.name",
            serde_json::json!({"tax_identification_number": "00743110157", "name": "n".repeat(256)}),
        ),
        ("collection_data", serde_json::json!("TARI")),
        ("collection_data", serde_json::json!("9/01011TS/")),
        (
            "intermediary.kind",
            serde_json::json!({"kind": "ftp", "url": "http://x"}),
        ),
        (
            "intermediary.url",
            serde_json::json!({"kind": "simulator", "url": "not a url"}),
        ),
        (
            "intermediary.url",
            serde_json::json!({"kind": "simulator", "url": "http://user:pw@host/sim"}),
        ),
        (
            "intermediary.credentials.username",
            serde_json::json!({"kind": "simulator", "url": "http://x", "credentials": {"password": "p"}}),
        ),
        (
            "intermediary.credentials.api_key",
            serde_json::json!({"kind": "simulator", "url": "http://x", "credentials": {"api_key": ""}}),
        ),
        ("landing_url", serde_json::json!("not a url/{payment_id}")),
        ("landing_url", serde_json::json!("javascript:alert(1)")),
    ];
    for (field, value) in cases {
        let mut body = service();
        let top = field.split('.').next().unwrap();
        body[top] = value;
        let err = check(body).unwrap_err();
        assert_eq!(err.field, field, "{err}");
    }
}

/// The URLs of a service against the outbound policy: the tenant's allow-list opens
/// its hosts, everything else is a 400 naming the field.
#[tokio::test]
async fn service_urls_follow_the_outbound_policy() {
    use crate::outbound::{AllowList, Outbound};
    let outbound = Outbound::new(AllowList::default(), std::time::Duration::from_secs(1));
    let tenant = AllowList::parse(&["http://127.0.0.1:9", "pay.comune.example.it"]).unwrap();
    let mut s = check(service()).unwrap();
    s.landing_url = Some("https://pay.comune.example.it/back/{payment_id}".into());
    s.check_outbound(&outbound, &tenant).await.unwrap();
    let err = s
        .check_outbound(&outbound, &AllowList::default())
        .await
        .unwrap_err();
    assert_eq!(err.field, "intermediary.url");
    s.landing_url = Some("https://evil.test/{payment_id}".into());
    let err = s.check_outbound(&outbound, &tenant).await.unwrap_err();
    assert_eq!(err.field, "landing_url");
    assert_eq!(
        landing_for("https://x.example/{payment_id}", Uuid::from_u128(1)),
        "https://x.example/00000000-0000-0000-0000-000000000001"
    );
}

#[test]
fn tenants_need_a_name_and_a_valid_tax_code() {
    let mut good = TenantBody {
        id: None,
        name: "  Comune di Roma ".into(),
        tax_identification_number: "02438750586".into(),
        active: true,
        allowed_hosts: vec![" *.Comune.Example.it".into()],
    };
    good.validate().unwrap();
    assert_eq!(good.name, "Comune di Roma");
    let mut bad = good.clone();
    bad.tax_identification_number = "02438750587".into();
    assert_eq!(
        bad.validate().unwrap_err().field,
        "tax_identification_number"
    );
    assert_eq!(good.allowed_hosts, vec!["*.comune.example.it"]);
    let mut bad = good.clone();
    bad.name = "x".repeat(256);
    assert_eq!(bad.validate().unwrap_err().field, "name");
    for pattern in ["*.it", "host/path", "ftp://x.example", "a b"] {
        let mut bad = good.clone();
        bad.allowed_hosts = vec!["ok.example.it".into(), pattern.into()];
        assert_eq!(
            bad.validate().unwrap_err().field,
            "allowed_hosts[1]",
            "{pattern}"
        );
    }
    let mut bad = good.clone();
    bad.allowed_hosts = vec!["a.example".into(); 101];
    assert_eq!(bad.validate().unwrap_err().field, "allowed_hosts");
}

#[test]
fn masks_sent_back_keep_the_stored_secret() {
    let stored = Credentials {
        username: Some("u".into()),
        password: Some("secret".into()),
        api_key: None,
        push_secret: None,
    };
    let mut sent = stored.masked();
    assert_eq!(sent.password.as_deref(), Some(MASK));
    sent.unmask(Some(&stored)).unwrap();
    assert_eq!(sent, stored);
    let mut new_key = Credentials {
        api_key: Some(MASK.into()),
        ..Default::default()
    };
    assert_eq!(
        new_key.unmask(Some(&stored)).unwrap_err().field,
        "intermediary.credentials.api_key"
    );
}

#[test]
fn merge_patch_follows_rfc_7396() {
    let mut doc = serde_json::json!({"a": "b", "c": {"d": "e", "f": "g"}});
    merge_patch(&mut doc, &serde_json::json!({"a": "z", "c": {"f": null}}));
    assert_eq!(doc, serde_json::json!({"a": "z", "c": {"d": "e"}}));
    merge_patch(&mut doc, &serde_json::json!({"c": [1]}));
    assert_eq!(doc, serde_json::json!({"a": "z", "c": [1]}));
}

#[test]
fn schemas_are_form_io_forms_covering_every_field() {
    for (schema, fields) in [
        (
            tenant_schema(),
            vec![
                "id",
                "name",
                "tax_identification_number",
                "active",
                "allowed_hosts",
            ],
        ),
        (
            service_schema(),
            vec![
                "id",
                "tenant_id",
                "payment_type",
                "remote_collection",
                "amount",
                "amount_min",
                "amount_max",
                "wallet_top_up",
                "top_up_max",
                "balance_max",
                "reason",
                "expire_at",
                "receiver",
                "collection_data",
                "active",
                "intermediary",
                "landing_url",
            ],
        ),
    ] {
        assert_eq!(schema["display"], "form");
        let keys: Vec<&str> = schema["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["key"].as_str())
            .collect();
        for field in fields {
            assert!(keys.contains(&field), "{field} missing from {keys:?}");
        }
    }
}
