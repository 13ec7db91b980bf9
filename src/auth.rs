//! Who is calling (docs/security.md): `Authorization: Bearer <JWT>`, HS256 with the
//! configured secret or RS256 with a configured public key. `exp` is required (30 s of
//! leeway for clock skew), `alg: none` cannot even be parsed, and each algorithm is only
//! ever checked with its own key, so an HS256 token "signed" with the RSA public key is
//! refused (algorithm confusion). A token lives at most the configured maximum
//! (`exp - iat`, and `exp - now`), `nbf` and `iat` must not be in the future (with the
//! same leeway), and a citizen's `sub` is read as one UUID spelling, so one user has one
//! idempotency scope and one rate bucket. A 401 says what is wrong in cassa's own words,
//! never the parser's.
//!
//! What a caller may do is decided here too, in one place: [`Caller::sees_tenant`] and
//! [`Caller::sees_payment`] answer "may this caller know that this object exists", and
//! the handlers answer 404 when not (existence must not leak across tenants), then
//! [`Caller::require`] answers 403 when the role may not perform the action.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::field::FieldError;
use crate::domain::payment::{Creator, Payer, Payment, PaymentType};
use crate::domain::tax_code::TaxCode;
use crate::store::Account;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: u64 = 30;
/// Default longest token lifetime (`CASSA_JWT_MAX_LIFETIME`).
pub const DEFAULT_MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Default claim carrying a citizen's tax code (`CASSA_JWT_TAX_CODE_CLAIM`).
pub const DEFAULT_TAX_CODE_CLAIM: &str = "tax_code";

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
    /// Not before (checked, with the leeway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Every other claim: the tax code's claim is among them (its name is a setting).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    pub role: Role,
    pub tenant_id: Option<Uuid>,
    /// A citizen's user id (`sub` as a UUID).
    pub user_id: Option<Uuid>,
    /// A citizen's tax code, from the token's tax code claim: the payer of what they create.
    pub tax_code: Option<TaxCode>,
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
    pub fn require(&self, roles: &[Role], action: &str) -> Result<(), Forbidden> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(Forbidden(format!(
                "the {} role may not {action}",
                self.role.as_str()
            )))
        }
    }

    /// Whether the caller may hand cassa URLs to call or to send citizens to
    /// (`links.notify`, `links.online_payment_landing`): the platform, operators and
    /// admins. A citizen's payment gets its service's `landing_url` instead.
    pub fn may_set_links(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Operator | Role::System)
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

    /// Whether the caller may choose the id of a new configuration object (a service):
    /// only a caller that sees every tenant, as an id taken by a tenant it cannot see
    /// would otherwise tell it that the id exists there.
    pub fn may_choose_ids(&self) -> bool {
        self.role == Role::Admin
    }

    /// Who this caller is, as recorded on the payments it creates.
    pub fn creator(&self) -> Creator {
        Creator {
            role: self.role.as_str().into(),
            sub: self.sub.clone(),
        }
    }

    /// 403 unless the caller may cancel this payment (one it may see and whose role may
    /// cancel): a citizen only the payments they created themselves, never a debt an
    /// operator or the platform put in their name; operators and the admin the rest.
    pub fn may_cancel(&self, payment: &Payment) -> Result<(), Forbidden> {
        if self.role == Role::Citizen && payment.created_by.as_ref() != Some(&self.creator()) {
            return Err(Forbidden(
                "a citizen may cancel only the payments they created themselves".into(),
            ));
        }
        Ok(())
    }

    /// The parties a caller may name on a new payment. A citizen's payment has the
    /// citizen as payer: the body's payer tax code must be the token's (nobody creates
    /// debts in another person's name), a citizen token without one cannot create a
    /// PAGOPA payment (a debt position names its debtor), and `debtor` is for operator,
    /// system and admin tokens only.
    pub fn check_parties(
        &self,
        kind: PaymentType,
        payer: &Payer,
        debtor: Option<&Payer>,
    ) -> Result<(), FieldError> {
        if self.role != Role::Citizen {
            return Ok(());
        }
        if debtor.is_some() {
            return Err(FieldError::new(
                "debtor",
                "is set by operators and the platform only (a citizen pays for themselves)",
            ));
        }
        match &self.tax_code {
            Some(own) if *own != payer.tax_identification_number => Err(FieldError::new(
                "payer.tax_identification_number",
                "must be the citizen's own tax code (the token's)",
            )),
            Some(_) => Ok(()),
            None if kind == PaymentType::Pagopa => Err(FieldError::new(
                "payer.tax_identification_number",
                "a citizen token without a tax code claim cannot create PAGOPA payments",
            )),
            None => Ok(()),
        }
    }

    /// Whether this caller is the wallet's owner: a citizen token of the wallet's own
    /// tenant whose user is its owner. Only the owner spends a wallet (WALLET payments)
    /// or tops it up; no operator, admin or system token may spend a citizen's money.
    pub fn owns_wallet(&self, account: &Account) -> bool {
        self.role == Role::Citizen
            && self.user_id == Some(account.owner_id)
            && self.tenant_id.is_some()
            && self.tenant_id == account.tenant_id
    }

    /// Whether the caller may know that this wallet exists: its owner, the admin, and
    /// (to credit it) a system token of its tenant or of every tenant.
    pub fn sees_account(&self, account: &Account) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Citizen => self.owns_wallet(account),
            Role::System => self.tenant_id.is_none() || self.tenant_id == account.tenant_id,
            Role::Operator => false,
        }
    }

    /// Whether the caller may read a wallet's balance and movements.
    pub fn reads_account(&self, account: &Account) -> bool {
        matches!(self.role, Role::Admin | Role::Citizen) && self.sees_account(account)
    }

    /// Whether the caller may credit a wallet directly (a deposit: a refund or a
    /// correction by the platform). Citizens add money only by paying (a top-up).
    pub fn credits_account(&self, account: &Account) -> bool {
        matches!(self.role, Role::Admin | Role::System) && self.sees_account(account)
    }

    /// Whether the caller may set a payment's amount to something other than the
    /// service's fee: the platform's application, an operator or the admin decides
    /// (a citizen pays what the service asks).
    pub fn sets_amounts(&self) -> bool {
        self.role != Role::Citizen
    }
}

/// A rule refused the caller: the reason, for a 403.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Forbidden(pub String);

/// Why a token was refused (the text goes back to the caller in a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `Authorization: Bearer <JWT>`")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The configured keys cannot verify tokens.
    #[error("{0}")]
    Keys(String),
    /// A token cannot be minted as asked.
    #[error("{0}")]
    Mint(String),
}

/// Verifies (and, with an HS256 secret, mints) tokens.
pub struct Authenticator {
    hs: Option<(EncodingKey, DecodingKey)>,
    rs: Option<DecodingKey>,
    /// Required `aud`, when configured (otherwise `aud` is not checked).
    audience: Option<String>,
    /// Required `iss`, when configured.
    issuer: Option<String>,
    /// Longest lifetime of a token it accepts or mints.
    max_lifetime: std::time::Duration,
    /// The claim that carries a citizen's tax code.
    tax_code_claim: String,
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
    pub fn new(hs_secret: Option<&str>, rs_public_pem: Option<&str>) -> Result<Self, AuthError> {
        let hs = hs_secret.map(|s| {
            (
                EncodingKey::from_secret(s.as_bytes()),
                DecodingKey::from_secret(s.as_bytes()),
            )
        });
        let rs = rs_public_pem
            .map(|pem| {
                DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                    AuthError::Keys(format!(
                        "CASSA_JWT_PUBLIC_KEY is not an RSA public key in PEM: {e}"
                    ))
                })
            })
            .transpose()?;
        if hs.is_none() && rs.is_none() {
            return Err(AuthError::Keys(
                "no JWT key: set CASSA_JWT_SECRET or CASSA_JWT_PUBLIC_KEY".into(),
            ));
        }
        Ok(Authenticator {
            hs,
            rs,
            audience: None,
            issuer: None,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            tax_code_claim: DEFAULT_TAX_CODE_CLAIM.into(),
        })
    }

    /// Accepts (and mints) tokens living at most `max_lifetime`, and reads a citizen's
    /// tax code from `tax_code_claim`.
    pub fn with_token_rules(
        mut self,
        max_lifetime: std::time::Duration,
        tax_code_claim: impl Into<String>,
    ) -> Self {
        self.max_lifetime = max_lifetime;
        self.tax_code_claim = tax_code_claim.into();
        self
    }

    /// The longest lifetime of a token.
    pub fn max_lifetime(&self) -> std::time::Duration {
        self.max_lifetime
    }

    /// Requires (and mints) this `aud` and `iss`.
    pub fn expecting(mut self, audience: Option<String>, issuer: Option<String>) -> Self {
        self.audience = audience;
        self.issuer = issuer;
        self
    }

    /// Checks a token: signature with the key of its algorithm, `exp`, the claims' shape.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        // The parser's own words stay in the log: they help nobody but a prober.
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            tracing::debug!(error = %e, "unreadable token header");
            AuthError::Invalid(format!(
                "not a readable JWT (header.claims.signature); accepted algorithms: {}",
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
        validation.validate_nbf = true;
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
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    "the token is not valid yet (nbf)".into()
                }
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
                _ => {
                    tracing::debug!(error = %e, "token refused");
                    "the token or its claims are malformed (sub, role and a numeric exp are required)".into()
                }
            })
        })?;
        self.check_times(&data.claims)?;
        caller_from(data.claims, &self.tax_code_claim)
    }

    /// `iat` not in the future, and no longer a lifetime than the maximum, counted from
    /// `iat` and from now (a token without `iat` would otherwise be unbounded).
    fn check_times(&self, claims: &Claims) -> Result<(), AuthError> {
        let now = chrono::Utc::now().timestamp();
        let leeway = LEEWAY_SECONDS as i64;
        if claims
            .iat
            .is_some_and(|iat| iat > now.saturating_add(leeway))
        {
            return Err(AuthError::Invalid(
                "the token is not valid yet (iat is in the future)".into(),
            ));
        }
        let max = i64::try_from(self.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        let from_iat = claims.exp.saturating_sub(claims.iat.unwrap_or(now));
        let from_now = claims.exp.saturating_sub(now);
        if from_iat > max || from_now > max.saturating_add(leeway) {
            return Err(AuthError::Invalid(format!(
                "the token lives longer than the maximum of {} s (exp is too far from iat or now)",
                self.max_lifetime.as_secs()
            )));
        }
        Ok(())
    }

    /// Mints an HS256 token valid for `ttl`.
    pub fn mint(
        &self,
        role: Role,
        sub: &str,
        tenant_id: Option<Uuid>,
        ttl: std::time::Duration,
    ) -> Result<String, AuthError> {
        self.mint_with_tax_code(role, sub, tenant_id, None, ttl)
    }

    /// Mints an HS256 token valid for `ttl` (at most the maximum lifetime), carrying
    /// `tax_code` in the tax code claim when given.
    pub fn mint_with_tax_code(
        &self,
        role: Role,
        sub: &str,
        tenant_id: Option<Uuid>,
        tax_code: Option<&TaxCode>,
        ttl: std::time::Duration,
    ) -> Result<String, AuthError> {
        if ttl > self.max_lifetime {
            return Err(AuthError::Mint(format!(
                "a token may live at most {} s (CASSA_JWT_MAX_LIFETIME); asked for {} s",
                self.max_lifetime.as_secs(),
                ttl.as_secs()
            )));
        }
        let mut extra = serde_json::Map::new();
        if let Some(tax_code) = tax_code {
            extra.insert(self.tax_code_claim.clone(), tax_code.as_str().into());
        }
        let (encoding, _) = self.hs.as_ref().ok_or_else(|| {
            AuthError::Mint(
                "minting needs CASSA_JWT_SECRET (an RS256 public key cannot sign)".into(),
            )
        })?;
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_string(),
            role,
            tenant_id,
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat: Some(now),
            aud: self.audience.clone().map(serde_json::Value::String),
            iss: self.issuer.clone(),
            nbf: None,
            extra,
        };
        caller_from(claims.clone(), &self.tax_code_claim)?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding)
            .map_err(|e| AuthError::Mint(format!("cannot sign the token: {e}")))
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
/// for citizens (it becomes the payments' `user_id`, and is kept in its one canonical
/// spelling), and a citizen's tax code in `tax_code_claim` when present.
fn caller_from(claims: Claims, tax_code_claim: &str) -> Result<Caller, AuthError> {
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
    let tax_code = match (claims.role, claims.extra.get(tax_code_claim)) {
        (Role::Citizen, Some(value)) => Some(
            value
                .as_str()
                .and_then(|text| TaxCode::parse(text).ok())
                .ok_or_else(|| {
                    AuthError::Invalid(format!("the {tax_code_claim} claim is not a tax code"))
                })?,
        ),
        _ => None,
    };
    // One spelling per user (braces, `urn:uuid:`, capitals, no hyphens all name the same
    // UUID): the hyphenated lowercase form, in every scope and key built from `sub`.
    let sub = match user_id {
        Some(user_id) => user_id.hyphenated().to_string(),
        None => claims.sub,
    };
    Ok(Caller {
        sub,
        role: claims.role,
        tenant_id: claims.tenant_id,
        user_id,
        tax_code,
    })
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

    /// Issue 25 point 11: a token that never expires, one not valid yet, one issued in
    /// the future and one living beyond the maximum are refused; minting stays within it.
    #[test]
    fn lifetimes_beyond_the_maximum_and_future_tokens_are_refused() {
        let auth = Authenticator::new(Some(SECRET), None).unwrap();
        let now = chrono::Utc::now().timestamp();
        let with = |extra: serde_json::Value| {
            let mut c = claims(60);
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            hs256(SECRET, &c)
        };
        let forever = with(serde_json::json!({"exp": i64::MAX}));
        let err = auth.verify(&forever).unwrap_err();
        assert!(err.to_string().contains("maximum"), "{err}");
        let long = with(serde_json::json!({"iat": now, "exp": now + 24 * 3600 + 60}));
        assert!(auth.verify(&long).is_err(), "exp - iat beyond 24 h");
        let day = with(serde_json::json!({"iat": now, "exp": now + 24 * 3600}));
        assert!(auth.verify(&day).is_ok(), "exactly the maximum");
        let old_iat = with(serde_json::json!({"iat": now - 3600, "exp": now + 24 * 3600}));
        assert!(auth.verify(&old_iat).is_err(), "exp - iat beyond 24 h");
        let not_yet = with(serde_json::json!({"nbf": now + 600}));
        let err = auth.verify(&not_yet).unwrap_err();
        assert!(err.to_string().contains("not valid yet"), "{err}");
        assert!(auth
            .verify(&with(serde_json::json!({"nbf": now + 5})))
            .is_ok());
        let future_iat = with(serde_json::json!({"iat": now + 600}));
        let err = auth.verify(&future_iat).unwrap_err();
        assert!(err.to_string().contains("not valid yet"), "{err}");
        assert!(auth
            .verify(&with(serde_json::json!({"iat": now + 5})))
            .is_ok());
        // Minting: within the maximum only, and a shorter configured maximum holds too.
        let hour = std::time::Duration::from_secs(3600);
        assert!(auth
            .mint(Role::Admin, "a", None, DEFAULT_MAX_LIFETIME)
            .is_ok());
        let err = auth
            .mint(Role::Admin, "a", None, DEFAULT_MAX_LIFETIME + hour)
            .unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
        let strict = Authenticator::new(Some(SECRET), None)
            .unwrap()
            .with_token_rules(hour, DEFAULT_TAX_CODE_CLAIM);
        assert!(strict.mint(Role::Admin, "a", None, hour * 2).is_err());
        assert!(strict.verify(&day).is_err());
    }

    /// One UUID in several spellings is one user: the same `sub` and `user_id`.
    #[test]
    fn a_citizens_sub_is_canonical() {
        let auth = Authenticator::new(Some(SECRET), None).unwrap();
        let user = Uuid::new_v4();
        let exp = chrono::Utc::now().timestamp() + 60;
        let spellings = [
            user.hyphenated().to_string(),
            user.hyphenated().to_string().to_uppercase(),
            user.simple().to_string(),
            format!("{{{user}}}"),
            user.urn().to_string(),
        ];
        for sub in spellings {
            let c =
                serde_json::json!({"sub": sub, "role": "citizen", "tenant_id": TENANT, "exp": exp});
            let caller = auth.verify(&hs256(SECRET, &c)).unwrap();
            assert_eq!(caller.sub, user.to_string(), "{sub}");
            assert_eq!(caller.user_id, Some(user));
        }
    }

    /// A 401 names the problem in cassa's words, never the parser's.
    #[test]
    fn refusals_do_not_echo_parser_details() {
        let auth = Authenticator::new(Some(SECRET), None).unwrap();
        let exp = chrono::Utc::now().timestamp() + 60;
        let bad_role = serde_json::json!({"sub": "x", "role": "root", "exp": exp});
        let bad_exp = serde_json::json!({"sub": "x", "role": "system", "exp": "tomorrow"});
        for token in [
            hs256(SECRET, &bad_role),
            hs256(SECRET, &bad_exp),
            "eyJub3QiOiJqc29uIn0.e30.x".to_string(),
            "%%%.%%%.%%%".to_string(),
        ] {
            let text = auth.verify(&token).unwrap_err().to_string();
            for internal in [
                "variant", "expected", "line", "column", "Base64", "Json", "Error",
            ] {
                assert!(!text.contains(internal), "{text}");
            }
        }
    }

    /// The tax code claim (configurable) becomes the citizen's tax code; a malformed one
    /// refuses the token; minted citizen tokens carry it.
    #[test]
    fn a_citizens_tax_code_comes_from_its_claim() {
        let exp = chrono::Utc::now().timestamp() + 60;
        let user = Uuid::new_v4().to_string();
        let auth = Authenticator::new(Some(SECRET), None)
            .unwrap()
            .with_token_rules(DEFAULT_MAX_LIFETIME, "fiscal_number");
        let with = |claim: &str, value: &str| serde_json::json!({"sub": user, "role": "citizen", "tenant_id": TENANT, "exp": exp, claim: value});
        let caller = auth
            .verify(&hs256(SECRET, &with("fiscal_number", "RSSMRA80A01H501U")))
            .unwrap();
        assert_eq!(caller.tax_code.unwrap().as_str(), "RSSMRA80A01H501U");
        let other_claim = auth
            .verify(&hs256(SECRET, &with("tax_code", "RSSMRA80A01H501U")))
            .unwrap();
        assert_eq!(
            other_claim.tax_code, None,
            "only the configured claim counts"
        );
        assert!(auth
            .verify(&hs256(SECRET, &with("fiscal_number", "RSSMRA80A01H501X")))
            .is_err());
        let code = TaxCode::parse("RSSMRA80A01H501U").unwrap();
        let minted = auth
            .mint_with_tax_code(
                Role::Citizen,
                &user,
                Some(TENANT),
                Some(&code),
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(auth.verify(&minted).unwrap().tax_code, Some(code));
    }

    #[test]
    fn only_the_owner_spends_a_wallet_and_only_the_platform_credits_one() {
        let owner = Uuid::from_u128(7);
        let account = Account {
            id: Uuid::from_u128(8),
            owner_id: owner,
            tenant_id: Some(TENANT),
            currency: "EUR".into(),
            balance_cents: 0,
            held_cents: 0,
        };
        let caller = |role, tenant_id, user_id| Caller {
            sub: "s".into(),
            role,
            tenant_id,
            user_id,
            tax_code: None,
        };
        let citizen = caller(Role::Citizen, Some(TENANT), Some(owner));
        assert!(citizen.owns_wallet(&account) && citizen.reads_account(&account));
        assert!(!citizen.credits_account(&account));
        // The owner's id under another tenant's token is not the owner.
        let elsewhere = caller(Role::Citizen, Some(Uuid::from_u128(2)), Some(owner));
        assert!(!elsewhere.owns_wallet(&account) && !elsewhere.sees_account(&account));
        assert!(
            !caller(Role::Citizen, Some(TENANT), Some(Uuid::from_u128(9))).owns_wallet(&account)
        );
        // Nobody else spends it, whatever they may otherwise do.
        for role in [Role::Admin, Role::Operator, Role::System] {
            assert!(!caller(role, Some(TENANT), Some(owner)).owns_wallet(&account));
        }
        assert!(caller(Role::Admin, None, None).credits_account(&account));
        assert!(caller(Role::System, None, None).credits_account(&account));
        assert!(caller(Role::System, Some(TENANT), None).credits_account(&account));
        assert!(!caller(Role::System, Some(Uuid::from_u128(2)), None).sees_account(&account));
        assert!(!caller(Role::Operator, Some(TENANT), None).sees_account(&account));
        assert!(caller(Role::Operator, Some(TENANT), None).sets_amounts());
        assert!(!citizen.sets_amounts());
    }

    #[test]
    fn visibility_follows_role_and_tenant() {
        let other = Uuid::from_u128(2);
        let caller = |role, tenant_id| Caller {
            sub: "s".into(),
            role,
            tenant_id,
            user_id: None,
            tax_code: None,
        };
        assert!(caller(Role::Admin, None).sees_tenant(other));
        assert!(caller(Role::System, None).sees_tenant(other));
        assert!(!caller(Role::System, Some(TENANT)).sees_tenant(other));
        assert!(caller(Role::Operator, Some(TENANT)).sees_tenant(TENANT));
        assert!(!caller(Role::Operator, Some(TENANT)).sees_tenant(other));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// Anything as a bearer token, and a valid token with one character changed:
        /// verifying never panics, and only the unchanged token is accepted (issue 21).
        #[test]
        fn tokens_are_verified_without_panicking(
            text in proptest::prelude::any::<String>(),
            at in 0usize..512,
            c in proptest::char::range('!', '~'),
        ) {
            let auth = Authenticator::new(Some(SECRET), None).unwrap();
            proptest::prop_assert!(auth.verify(&text).is_err());
            let token = auth
                .mint(Role::System, "platform", None, std::time::Duration::from_secs(60))
                .unwrap();
            let mut chars: Vec<char> = token.chars().collect();
            let at = at % chars.len();
            let changed = chars[at] != c;
            chars[at] = c;
            let mutated: String = chars.into_iter().collect();
            proptest::prop_assert_eq!(auth.verify(&mutated).is_ok(), !changed || mutated == token);
        }
    }
}
