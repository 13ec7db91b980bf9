//! Secrets at rest: intermediary credentials are sealed with AES-256-GCM under the key of
//! `CASSA_SECRET_KEY` before they reach the database, and opened only where a call to the
//! intermediary needs them. Nothing here implements `Display` or `Debug` of a secret.
//!
//! Without configured secrets, the embedded mode (a SQLite file) generates a JWT secret and
//! a secret key once and keeps them beside the database in `<file>.secrets` (mode 0600),
//! so tokens and sealed credentials survive a restart. An in-memory database gets
//! throw-away ones. Anything else (PostgreSQL) must be configured: several instances
//! share the database and must share the keys.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Prefix of a sealed value: the format version, so keys or ciphers can change later.
const SEALED_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

/// Why a secret could not be sealed, opened or configured.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{0}")]
    Config(String),
    #[error("a sealed secret cannot be opened (wrong CASSA_SECRET_KEY, or corrupted)")]
    Open,
    #[error("cannot seal a secret")]
    Seal,
}

/// Seals and opens secrets with one AES-256-GCM key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box for 32 key bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        SecretBox {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        }
    }

    /// Parses `CASSA_SECRET_KEY`: 32 bytes as base64 (44 characters) or hex (64).
    pub fn from_setting(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        };
        let key: [u8; 32] = bytes
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                SecretError::Config(
                    "CASSA_SECRET_KEY must be 32 random bytes, as base64 (44 characters) or hex (64); e.g. `openssl rand -base64 32`"
                        .into(),
                )
            })?;
        Ok(SecretBox::new(&key))
    }

    /// Seals `plaintext`: `v1:` + base64(nonce ‖ ciphertext ‖ tag). Each call uses a
    /// fresh random nonce, so sealing the same value twice gives different text.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, SecretError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, plaintext)
            .map_err(|_| SecretError::Seal)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ))
    }

    /// Opens what `seal` made (with the same key).
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SecretError::Open)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| SecretError::Open)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Open)
    }
}

/// Generated secrets kept beside an embedded database.
#[derive(Serialize, Deserialize)]
struct KeptSecrets {
    jwt_secret: String,
    secret_key: String,
}

/// The secrets a running cassa uses, whichever way they were obtained.
pub struct Resolved {
    /// HS256 secret (configured or generated); `None` when only RS256 is configured.
    pub jwt_secret: Option<String>,
    pub secret_box: SecretBox,
    /// Where generated secrets are kept, if they were generated.
    pub kept_in: Option<PathBuf>,
}

/// Random bytes as base64 (the form `CASSA_SECRET_KEY` accepts).
pub fn random_base64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The SQLite file of a `sqlite:` URL, or `None` for memory or another database.
pub fn sqlite_file(database_url: &str) -> Option<PathBuf> {
    let rest = database_url.strip_prefix("sqlite:")?;
    let rest = rest.trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Where an embedded database keeps its generated secrets.
pub fn kept_secrets_path(database_file: &Path) -> PathBuf {
    let mut name = database_file.as_os_str().to_owned();
    name.push(".secrets");
    PathBuf::from(name)
}

/// Resolves the JWT secret and the secret key from the settings, or (embedded only) from
/// the kept or newly generated ones.
pub fn resolve(
    database_url: &str,
    jwt_secret: Option<&str>,
    has_public_key: bool,
    secret_key: Option<&str>,
) -> Result<Resolved, SecretError> {
    resolve_keeping(
        database_url,
        jwt_secret,
        has_public_key,
        secret_key,
        Keep::CreateIfMissing,
    )
}

/// Whether missing kept secrets may be generated: the service does; a command that only
/// uses them (`cassa token`) must find the service's, or its tokens would be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    CreateIfMissing,
    MustExist,
}

/// `resolve`, saying whether kept secrets may be created.
pub fn resolve_keeping(
    database_url: &str,
    jwt_secret: Option<&str>,
    has_public_key: bool,
    secret_key: Option<&str>,
    keep: Keep,
) -> Result<Resolved, SecretError> {
    let configured_box = secret_key.map(SecretBox::from_setting).transpose()?;
    if let Some(secret) = jwt_secret {
        if secret.len() < 16 {
            return Err(SecretError::Config(
                "CASSA_JWT_SECRET must be at least 16 characters (32 random bytes recommended)"
                    .into(),
            ));
        }
    }
    let need_generated = (jwt_secret.is_none() && !has_public_key) || configured_box.is_none();
    if !need_generated {
        return Ok(Resolved {
            jwt_secret: jwt_secret.map(str::to_string),
            secret_box: configured_box.ok_or(SecretError::Seal)?,
            kept_in: None,
        });
    }
    let (kept, kept_in) = if database_url.starts_with("sqlite:") {
        match sqlite_file(database_url) {
            Some(file) => {
                let path = kept_secrets_path(&file);
                (load_or_create(&path, keep)?, Some(path))
            }
            None => (
                KeptSecrets {
                    jwt_secret: random_base64(32),
                    secret_key: random_base64(32),
                },
                None,
            ),
        }
    } else {
        let missing: Vec<&str> = [
            (jwt_secret.is_none() && !has_public_key)
                .then_some("CASSA_JWT_SECRET (or CASSA_JWT_PUBLIC_KEY)"),
            configured_box.is_none().then_some("CASSA_SECRET_KEY"),
        ]
        .into_iter()
        .flatten()
        .collect();
        return Err(SecretError::Config(format!(
            "{} must be set when the database is not an embedded SQLite file: every instance sharing the database must use the same keys",
            missing.join(" and ")
        )));
    };
    Ok(Resolved {
        jwt_secret: match jwt_secret {
            Some(s) => Some(s.to_string()),
            None if has_public_key => None,
            None => Some(kept.jwt_secret.clone()),
        },
        secret_box: match configured_box {
            Some(b) => b,
            None => SecretBox::from_setting(&kept.secret_key)?,
        },
        kept_in,
    })
}

/// Reads the kept secrets, or generates and writes them (readable by the owner only).
fn load_or_create(path: &Path, keep: Keep) -> Result<KeptSecrets, SecretError> {
    let unreadable =
        |e: &dyn std::fmt::Display| SecretError::Config(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| unreadable(&e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && keep == Keep::MustExist => {
            Err(SecretError::Config(format!(
                "no kept keys at {}: this is not the database `cassa serve` uses (pass the same --database-url / CASSA_DATABASE_URL), or it has not started on it yet; with configured keys pass CASSA_JWT_SECRET",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kept = KeptSecrets {
                jwt_secret: random_base64(32),
                secret_key: random_base64(32),
            };
            let text = serde_json::to_string_pretty(&kept).map_err(|e| unreadable(&e))?;
            write_private(path, &text).map_err(|e| unreadable(&e))?;
            Ok(kept)
        }
        Err(e) => Err(unreadable(&e)),
    }
}

/// Creates `path` with mode 0600 (fails if it exists: a concurrent start-up wrote it).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_the_same_key_only() {
        let key = SecretBox::from_setting(&random_base64(32)).unwrap();
        let sealed = key.seal(b"s3cret-password").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("s3cret"));
        assert_ne!(
            sealed,
            key.seal(b"s3cret-password").unwrap(),
            "fresh nonce each time"
        );
        assert_eq!(key.open(&sealed).unwrap(), b"s3cret-password");
        let other = SecretBox::from_setting(&random_base64(32)).unwrap();
        assert!(matches!(other.open(&sealed), Err(SecretError::Open)));
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&sealed[3..])
            .unwrap();
        bytes[NONCE_LEN + 2] ^= 1;
        let tampered = format!(
            "v1:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        assert!(matches!(key.open(&tampered), Err(SecretError::Open)));
        assert!(key.open("plain text").is_err());
    }

    #[test]
    fn keys_parse_as_base64_or_hex_of_32_bytes() {
        assert!(SecretBox::from_setting(&random_base64(32)).is_ok());
        assert!(SecretBox::from_setting(&"ab".repeat(32)).is_ok());
        for bad in ["", "short", &random_base64(16), &"ab".repeat(31)] {
            let err = SecretBox::from_setting(bad).unwrap_err().to_string();
            assert!(err.contains("CASSA_SECRET_KEY"), "{err}");
        }
    }

    #[test]
    fn embedded_secrets_are_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let first = resolve(&url, None, false, None).unwrap();
        let path = first.kept_in.clone().unwrap();
        assert!(path.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read {path:?}");
        }
        let second = resolve(&url, None, false, None).unwrap();
        assert_eq!(first.jwt_secret, second.jwt_secret);
        let sealed = first.secret_box.seal(b"x").unwrap();
        assert_eq!(second.secret_box.open(&sealed).unwrap(), b"x");
    }

    /// `cassa token` on a database the service never kept keys for refuses, naming the
    /// setting, and writes nothing; once the service kept them it mints with the same.
    #[test]
    fn a_command_that_only_uses_the_kept_secrets_never_makes_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let err = resolve_keeping(&url, None, false, None, Keep::MustExist)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--database-url"), "{err}");
        assert!(!kept_secrets_path(&dir.path().join("c.db")).exists());
        let served = resolve(&url, None, false, None).unwrap();
        let used = resolve_keeping(&url, None, false, None, Keep::MustExist).unwrap();
        assert_eq!(served.jwt_secret, used.jwt_secret);
    }

    #[test]
    fn postgres_needs_configured_secrets_and_says_which() {
        let err = resolve("postgres://h/db", None, false, None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("CASSA_JWT_SECRET") && err.contains("CASSA_SECRET_KEY"),
            "{err}"
        );
        let ok = resolve(
            "postgres://h/db",
            Some("a-long-enough-secret"),
            false,
            Some(&random_base64(32)),
        )
        .unwrap();
        assert!(ok.kept_in.is_none());
        let short = resolve(
            "postgres://h/db",
            Some("short"),
            false,
            Some(&random_base64(32)),
        );
        assert!(short.is_err());
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://cassa.db"),
            Some(PathBuf::from("cassa.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///tmp/x.db?mode=rwc"),
            Some(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x"), None);
    }
}
