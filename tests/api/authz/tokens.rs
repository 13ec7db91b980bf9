//! Tokens that must be refused, over HTTP; RS256 and HS256 accepted.

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use super::sign;
use crate::helpers::*;

fn claims(role: &str, exp_in: i64) -> Value {
    json!({"sub": "platform", "role": role, "exp": chrono::Utc::now().timestamp() + exp_in})
}

#[actix_rt::test]
async fn tokens_that_are_expired_unsigned_forged_or_confused_are_refused() {
    let public_pem = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt-rs256-public.pem"
    );
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        |s| s.security.keys.jwt_public_key = Some(public_pem.to_string()),
        Default::default(),
    )
    .await;
    let hs = EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes());
    let private =
        EncodingKey::from_rsa_pem(include_bytes!("../../fixtures/jwt-rs256-private.pem")).unwrap();
    let public_text = std::fs::read(public_pem).unwrap();
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let good = sign(Algorithm::HS256, &hs, &claims("system", 60));
    let mut tampered = good.clone();
    tampered.replace_range(good.len() - 4.., "AAAA");
    // An admin token with these times.
    let now = chrono::Utc::now().timestamp();
    let timed = |times: Value| {
        let mut claims = json!({"sub": "x", "role": "admin"});
        claims
            .as_object_mut()
            .unwrap()
            .extend(times.as_object().unwrap().clone());
        Some(format!("Bearer {}", sign(Algorithm::HS256, &hs, &claims)))
    };
    let refused: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "missing bearer token"),
        (
            "another scheme",
            Some(format!("Basic {}", b64(&json!("a:b")))),
            "missing bearer token",
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &hs, &claims("system", -3600))
            )),
            "expired",
        ),
        (
            "wrong secret",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    &EncodingKey::from_secret(b"not-the-secret-at-all"),
                    &claims("system", 60)
                )
            )),
            "signature",
        ),
        (
            "tampered signature",
            Some(format!("Bearer {tampered}")),
            "invalid token",
        ),
        (
            "unsigned",
            Some(format!("Bearer {}.", good.rsplit_once('.').unwrap().0)),
            "invalid token",
        ),
        (
            "alg none",
            Some(format!(
                "Bearer {}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims("admin", 60))
            )),
            "invalid token",
        ),
        (
            "HS256 keyed with the RSA public key",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    &EncodingKey::from_secret(&public_text),
                    &claims("admin", 60)
                )
            )),
            "signature",
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &hs, &json!({"sub": "x", "role": "admin"}))
            )),
            "exp",
        ),
        (
            "unknown role",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &hs, &claims("root", 60))
            )),
            "invalid token",
        ),
        ("garbage", Some("Bearer not-a-jwt".into()), "invalid token"),
        // Issue 25 point 11: lifetimes beyond the maximum, tokens not valid yet.
        ("never expires", timed(json!({"exp": i64::MAX})), "maximum"),
        (
            "a week long",
            timed(json!({"iat": now, "exp": now + 7 * 86_400})),
            "maximum",
        ),
        (
            "not before the future",
            timed(json!({"nbf": now + 600, "exp": now + 900})),
            "not valid yet",
        ),
        (
            "issued in the future",
            timed(json!({"iat": now + 600, "exp": now + 900})),
            "not valid yet",
        ),
    ];
    let client = client_with(None);
    for (what, header, detail) in refused {
        let mut request = client.get(app.url("/v1/payments"));
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{what}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:cassa:problem:unauthorized", "{what}");
        let text = problem["detail"].as_str().unwrap();
        assert!(text.contains(detail), "{what}: {problem}");
        // cassa's own words, not the JWT or JSON parser's.
        for internal in [
            "variant", "expected", "line ", "column", "Base64", "Json", "Error(",
        ] {
            assert!(!text.contains(internal), "{what}: {problem}");
        }
    }
    // The same keys accept good tokens of both algorithms.
    for good in [
        good,
        sign(Algorithm::RS256, &private, &claims("system", 60)),
    ] {
        let r = client
            .get(app.url("/v1/payments"))
            .bearer_auth(good)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
