//! The credentials cassa presents to an intermediary. They never print their values
//! (`Debug` masks them), are sealed before they are stored (see `secrets`), and are shown
//! by the API only as [`Credentials::masked`].

use serde::{Deserialize, Serialize};

use crate::domain::field::FieldError;

/// Longest credential value.
pub const CREDENTIAL_MAX: usize = 1024;
/// What the API shows instead of a credential's value. Sending it back keeps the stored one.
pub const MASK: &str = "********";

/// How cassa authenticates at the intermediary: HTTP basic (`username`, `password`)
/// and/or an API key (`X-Api-Key`).
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The secret the intermediary signs its pushes with (`X-Cassa-Signature`, HMAC-SHA256
    /// of the body); without it, its pushes are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = self.masked();
        f.debug_struct("Credentials")
            .field("username", &masked.username)
            .field("password", &masked.password)
            .field("api_key", &masked.api_key)
            .field("push_secret", &masked.push_secret)
            .finish()
    }
}

impl Credentials {
    fn fields_mut(&mut self) -> [(&'static str, &mut Option<String>); 4] {
        [
            ("username", &mut self.username),
            ("password", &mut self.password),
            ("api_key", &mut self.api_key),
            ("push_secret", &mut self.push_secret),
        ]
    }

    /// Every value replaced by the mask: which credentials are set, not what they are.
    pub fn masked(&self) -> Credentials {
        let mask = |v: &Option<String>| v.as_ref().map(|_| MASK.to_string());
        Credentials {
            username: mask(&self.username),
            password: mask(&self.password),
            api_key: mask(&self.api_key),
            push_secret: mask(&self.push_secret),
        }
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.username.is_none()
            && self.password.is_none()
            && self.api_key.is_none()
            && self.push_secret.is_none()
    }

    /// Values sent back as the mask take the stored value (a GET → PUT round trip keeps
    /// the secrets); a mask with nothing stored is an error.
    pub fn unmask(&mut self, stored: Option<&Credentials>) -> Result<(), FieldError> {
        let mut stored = stored.cloned().unwrap_or_default();
        let stored = stored.fields_mut();
        for ((name, value), (_, kept)) in self.fields_mut().into_iter().zip(stored) {
            if value.as_deref() == Some(MASK) {
                *value = Some(kept.clone().ok_or_else(|| {
                    FieldError::new(
                        format!("intermediary.credentials.{name}"),
                        "is the mask, but nothing is stored to keep: send the value",
                    )
                })?);
            }
        }
        Ok(())
    }

    /// Every value printable and bounded; the API key a valid header value; a password
    /// only with a user name.
    pub fn validate(&mut self) -> Result<(), FieldError> {
        for (name, value) in self.fields_mut() {
            if let Some(v) = value {
                if v.is_empty()
                    || v.chars().count() > CREDENTIAL_MAX
                    || v.chars().any(char::is_control)
                {
                    return Err(FieldError::new(
                        format!("intermediary.credentials.{name}"),
                        format!("must be 1 to {CREDENTIAL_MAX} printable characters"),
                    ));
                }
            }
        }
        if self
            .api_key
            .as_deref()
            .is_some_and(|k| !k.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(FieldError::new(
                "intermediary.credentials.api_key",
                "must be visible ASCII (it is sent as an HTTP header)",
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(FieldError::new(
                "intermediary.credentials.username",
                "is required with a password",
            ));
        }
        if self.username.as_deref().is_some_and(|u| u.contains(':')) {
            return Err(FieldError::new(
                "intermediary.credentials.username",
                "must not contain ':' (HTTP basic authentication)",
            ));
        }
        Ok(())
    }
}
