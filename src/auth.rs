//! Who is calling (CONTRACTS.md §4): `Authorization: Bearer <JWT>`, HS256 with the
//! configured secret or RS256 with a configured public key. `exp` is required (30 s of
//! leeway for clock skew), `alg: none` cannot even be parsed, and each algorithm is only
//! ever checked with its own key, so an HS256 token "signed" with the RSA public key is
//! refused (algorithm confusion).
//!
//! What a caller may do is decided here too, in one place: [`Caller::sees_tenant`] and
//! [`Caller::sees_payment`] answer "may this caller know that this object exists", and
//! the handlers answer 404 when not (existence must not leak across tenants), then
//! [`Caller::require`] answers 403 when the role may not perform the action.

use std::collections::HashSet;

use actix_web::{web, FromRequest, HttpRequest};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::payment::Payment;
use crate::http::problem::ApiError;
use crate::http::AppState;

/// Clock skew tolerated on `exp`.
const LEEWAY_SECONDS: u64 = 30;

/// A caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// A municipality's staff: their tenant's configuration and payments.
    Operator,
    /// A citizen: creates payments for themselves and reads their own.
    Citizen,
    /// The platform (and its poller): creates and checks payments.
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Citizen => "citizen",
            Role::System => "system",
        }
    }
}

/// The claims cassa reads and mints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<Uuid>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Audience: a string or a list (checked by the verifier when one is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    pub role: Role,
    pub tenant_id: Option<Uuid>,
    /// A citizen's user id (`sub` as a UUID).
    pub user_id: Option<Uuid>,
}

impl Caller {
    /// Whether the caller may know that an object of `tenant` exists.
    pub fn sees_tenant(&self, tenant: Uuid) -> bool {
        match self.role {
            Role::Admin => true,
            Role::System => self.tenant_id.is_none_or(|t| t == tenant),
            Role::Operator | Role::Citizen => self.tenant_id == Some(tenant),
        }
    }

    /// Whether the caller may know that this payment exists (and read it).
    pub fn sees_payment(&self, payment: &Payment) -> bool {
        self.sees_tenant(payment.tenant_id)
            && (self.role != Role::Citizen || self.user_id == Some(payment.user_id))
    }

    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role], action: &str) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not {action}",
                self.role.as_str()
            )))
        }
    }

    /// The one tenant the caller is narrowed to (`None`: it sees every tenant), for
    /// what is not one tenant's object but is told apart by tenant (e.g. `/metrics`'
    /// intermediaries).
    pub fn narrowed_to(&self) -> Option<Uuid> {
        match self.role {
            Role::Admin => None,
            Role::System | Role::Operator | Role::Citizen => self.tenant_id,
        }
    }

    /// Whether this is the admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Why a token was refused (the text goes back to the caller in a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `Authorization: Bearer <JWT>`")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies (and, with an HS256 secret, mints) tokens.
pub struct Authenticator {
    hs: Option<(EncodingKey, DecodingKey)>,
    rs: Option<DecodingKey>,
    /// Required `aud`, when configured (otherwise `aud` is not checked).
    audience: Option<String>,
    /// Required `iss`, when configured.
    issuer: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.hs.is_some())
            .field("rs256", &self.rs.is_some())
            .finish()
    }
}

impl Authenticator {
    /// From an HS256 secret and/or an RS256 public key (PEM); at least one is needed.
    pub fn new(hs_secret: Option<&str>, rs_public_pem: Option<&str>) -> Result<Self, String> {
        let hs = hs_secret.map(|s| {
            (
                EncodingKey::from_secret(s.as_bytes()),
                DecodingKey::from_secret(s.as_bytes()),
            )
        });
        let rs = rs_public_pem
            .map(|pem| {
                DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                    format!("CASSA_JWT_PUBLIC_KEY is not an RSA public key in PEM: {e}")
                })
            })
            .transpose()?;
        if hs.is_none() && rs.is_none() {
            return Err("no JWT key: set CASSA_JWT_SECRET or CASSA_JWT_PUBLIC_KEY".into());
        }
        Ok(Authenticator {
            hs,
            rs,
            audience: None,
            issuer: None,
        })
    }

    /// Requires (and mints) this `aud` and `iss`.
    pub fn expecting(mut self, audience: Option<String>, issuer: Option<String>) -> Self {
        self.audience = audience;
        self.issuer = issuer;
        self
    }

    /// Checks a token: signature with the key of its algorithm, `exp`, the claims' shape.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            AuthError::Invalid(format!(
                "unreadable header ({e}); accepted algorithms: {}",
                self.accepted()
            ))
        })?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs.as_ref().map(|(_, d)| d),
            Algorithm::RS256 => self.rs.as_ref(),
            _ => None,
        }
        .ok_or_else(|| {
            AuthError::Invalid(format!(
                "algorithm {:?} is not accepted here (accepted: {})",
                header.alg,
                self.accepted()
            ))
        })?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.required_spec_claims = HashSet::from(["exp".to_string(), "sub".to_string()]);
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            // An identity provider's tokens carry an `aud`; with none configured it is
            // not checked (rather than every such token refused).
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            AuthError::Invalid(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired".into(),
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    "the signature does not match".into()
                }
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(c) => {
                    format!("the {c} claim is required")
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    "the token is meant for another audience (aud)".into()
                }
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    "the token comes from another issuer (iss)".into()
                }
                _ => e.to_string(),
            })
        })?;
        caller_from(data.claims)
    }

    /// Mints an HS256 token valid for `ttl`.
    pub fn mint(
        &self,
        role: Role,
        sub: &str,
        tenant_id: Option<Uuid>,
        ttl: std::time::Duration,
    ) -> Result<String, String> {
        let (encoding, _) = self
            .hs
            .as_ref()
            .ok_or("minting needs CASSA_JWT_SECRET (an RS256 public key cannot sign)")?;
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_string(),
            role,
            tenant_id,
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat: Some(now),
            aud: self.audience.clone().map(serde_json::Value::String),
            iss: self.issuer.clone(),
        };
        caller_from(claims.clone()).map_err(|e| e.to_string())?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding)
            .map_err(|e| format!("cannot sign the token: {e}"))
    }

    fn accepted(&self) -> &'static str {
        match (self.hs.is_some(), self.rs.is_some()) {
            (true, true) => "HS256, RS256",
            (true, false) => "HS256",
            _ => "RS256",
        }
    }
}

/// Checks the claims a role needs: a tenant for operators and citizens, a UUID `sub`
/// for citizens (it becomes the payments' `user_id`).
fn caller_from(claims: Claims) -> Result<Caller, AuthError> {
    if claims.sub.trim().is_empty() {
        return Err(AuthError::Invalid("the sub claim is empty".into()));
    }
    if matches!(claims.role, Role::Operator | Role::Citizen) && claims.tenant_id.is_none() {
        return Err(AuthError::Invalid(format!(
            "a {} token needs a tenant_id claim",
            claims.role.as_str()
        )));
    }
    let user_id = match claims.role {
        Role::Citizen => Some(Uuid::parse_str(&claims.sub).map_err(|_| {
            AuthError::Invalid("a citizen token's sub must be the user id (a UUID)".into())
        })?),
        _ => None,
    };
    Ok(Caller {
        sub: claims.sub,
        role: claims.role,
        tenant_id: claims.tenant_id,
        user_id,
    })
}

/// The bearer token of a request.
fn bearer(req: &HttpRequest) -> Result<&str, AuthError> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Invalid("the Authorization header is not ASCII".into()))?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token.trim())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let result = match req.app_data::<web::Data<AppState>>() {
            None => Err(ApiError::Unexpected(anyhow::anyhow!("no AppState"))),
            Some(state) => bearer(req)
                .and_then(|token| state.auth.verify(token))
                .map_err(|e| ApiError::Unauthorized(e.to_string())),
        };
        std::future::ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const SECRET: &str = "test-secret-of-enough-length";
    const TENANT: Uuid = Uuid::from_u128(1);

    fn b64(v: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn claims(exp_in: i64) -> serde_json::Value {
        serde_json::json!({"sub": "platform", "role": "system", "exp": chrono::Utc::now().timestamp() + exp_in})
    }

    fn hs256(secret: &str, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn a_minted_token_verifies_as_the_caller() {
        let auth = Authenticator::new(Some(SECRET), None).unwrap();
        let user = Uuid::new_v4();
        let token = auth
            .mint(
                Role::Citizen,
                &user.to_string(),
                Some(TENANT),
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        let caller = auth.verify(&token).unwrap();
        assert_eq!(caller.role, Role::Citizen);
        assert_eq!(caller.user_id, Some(user));
        assert_eq!(caller.tenant_id, Some(TENANT));
    }

    #[test]
    fn expired_unsigned_wrongly_signed_and_alg_none_tokens_are_refused() {
        let auth = Authenticator::new(Some(SECRET), None).unwrap();
        assert!(auth.verify(&hs256(SECRET, &claims(60))).is_ok());
        // Expired beyond the leeway.
        let err = auth.verify(&hs256(SECRET, &claims(-120))).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        // Within the leeway: still accepted.
        assert!(auth.verify(&hs256(SECRET, &claims(-5))).is_ok());
        // Wrong secret.
        let err = auth
            .verify(&hs256("another-secret-entirely", &claims(60)))
            .unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
        // No exp.
        let no_exp = serde_json::json!({"sub": "p", "role": "system"});
        let err = auth.verify(&hs256(SECRET, &no_exp)).unwrap_err();
        assert!(err.to_string().contains("exp"), "{err}");
        // alg none, with and without a trailing signature.
        let none = format!(
            "{}.{}",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&claims(60))
        );
        assert!(auth.verify(&format!("{none}.")).is_err());
        assert!(auth.verify(&none).is_err());
        // Signature stripped from a good token.
        let good = hs256(SECRET, &claims(60));
        let unsigned = good.rsplit_once('.').unwrap().0.to_string() + ".";
        assert!(auth.verify(&unsigned).is_err());
        // Garbage.
        assert!(auth.verify("not.a.token").is_err());
        assert!(auth.verify("").is_err());
    }

    #[test]
    fn an_hs256_token_signed_with_the_rsa_public_key_is_refused() {
        let public = include_str!("../tests/fixtures/jwt-rs256-public.pem");
        let private = include_str!("../tests/fixtures/jwt-rs256-private.pem");
        let auth = Authenticator::new(None, Some(public)).unwrap();
        let rs = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims(60),
            &EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(auth.verify(&rs).unwrap().role, Role::System);
        // Confusion: HMAC keyed with the public key's text.
        let confused = hs256(public, &claims(60));
        let err = auth.verify(&confused).unwrap_err();
        assert!(err.to_string().contains("not accepted"), "{err}");
        // And an RS256 token is refused where only HS256 is configured.
        let hs_only = Authenticator::new(Some(SECRET), None).unwrap();
        assert!(hs_only.verify(&rs).is_err());
    }

    #[test]
    fn audience_and_issuer_are_checked_only_when_configured() {
        let exp = chrono::Utc::now().timestamp() + 60;
        let idp = serde_json::json!({"sub": "p", "role": "system", "exp": exp, "aud": ["cassa", "x"], "iss": "https://idp"});
        let plain = Authenticator::new(Some(SECRET), None).unwrap();
        assert!(
            plain.verify(&hs256(SECRET, &idp)).is_ok(),
            "aud present, none configured"
        );
        let strict = Authenticator::new(Some(SECRET), None)
            .unwrap()
            .expecting(Some("cassa".into()), Some("https://idp".into()));
        assert!(strict.verify(&hs256(SECRET, &idp)).is_ok());
        let other_aud = serde_json::json!({"sub": "p", "role": "system", "exp": exp, "aud": "billing", "iss": "https://idp"});
        let err = strict.verify(&hs256(SECRET, &other_aud)).unwrap_err();
        assert!(err.to_string().contains("aud"), "{err}");
        let no_aud =
            serde_json::json!({"sub": "p", "role": "system", "exp": exp, "iss": "https://idp"});
        assert!(strict.verify(&hs256(SECRET, &no_aud)).is_err());
        let other_iss = serde_json::json!({"sub": "p", "role": "system", "exp": exp, "aud": "cassa", "iss": "https://evil"});
        assert!(strict.verify(&hs256(SECRET, &other_iss)).is_err());
        // What it mints, it accepts.
        let minted = strict
            .mint(Role::Admin, "a", None, std::time::Duration::from_secs(60))
            .unwrap();
        assert!(strict.verify(&minted).is_ok());
    }

    #[test]
    fn role_claims_are_checked() {
        let auth = Authenticator::new(Some(SECRET), None).unwrap();
        let exp = chrono::Utc::now().timestamp() + 60;
        let operator_without_tenant =
            serde_json::json!({"sub": "o", "role": "operator", "exp": exp});
        assert!(auth
            .verify(&hs256(SECRET, &operator_without_tenant))
            .is_err());
        let citizen_not_uuid =
            serde_json::json!({"sub": "mario", "role": "citizen", "tenant_id": TENANT, "exp": exp});
        assert!(auth.verify(&hs256(SECRET, &citizen_not_uuid)).is_err());
        let unknown_role = serde_json::json!({"sub": "x", "role": "root", "exp": exp});
        assert!(auth.verify(&hs256(SECRET, &unknown_role)).is_err());
    }

    #[test]
    fn visibility_follows_role_and_tenant() {
        let other = Uuid::from_u128(2);
        let caller = |role, tenant_id| Caller {
            sub: "s".into(),
            role,
            tenant_id,
            user_id: None,
        };
        assert!(caller(Role::Admin, None).sees_tenant(other));
        assert!(caller(Role::System, None).sees_tenant(other));
        assert!(!caller(Role::System, Some(TENANT)).sees_tenant(other));
        assert!(caller(Role::Operator, Some(TENANT)).sees_tenant(TENANT));
        assert!(!caller(Role::Operator, Some(TENANT)).sees_tenant(other));
    }
}
