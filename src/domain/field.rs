//! A field that breaks a rule, the shape every refusal takes: a 400 naming the field,
//! or a dead-letter record whose reason starts with it.

/// A field that breaks a rule: names the field and says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct FieldError {
    pub field: String,
    pub detail: String,
}

impl FieldError {
    /// A broken rule of `field`.
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// The field a JSON document fails to deserialize at, and why. serde reports a
    /// missing or unknown field at its parent's path, naming the field in the message,
    /// and appends the position in the text, which only a syntax error needs.
    pub fn from_json(error: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        let detail = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        FieldError::new(field_of(&path, &detail), detail)
    }
}

/// The full name of the failing field.
fn field_of(path: &str, detail: &str) -> String {
    let parent = if path == "." { "" } else { path };
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| detail.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match named {
        Some(name) if parent.is_empty() => name.to_string(),
        Some(name) if !parent.ends_with(name) => format!("{parent}.{name}"),
        _ if parent.is_empty() => "body".to_string(),
        _ => parent.to_string(),
    }
}

/// A URL's shape: absolute http(s), at most 2 048 characters, no white space. Whether
/// cassa may call it is the outbound policy's question (`outbound`).
pub fn check_url(field: &str, url: &str) -> Result<(), FieldError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 2048
        && !url.chars().any(char::is_whitespace)
        && url.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(field, "must be an absolute http(s) URL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        amount: u32,
    }

    fn error_of(text: &str) -> FieldError {
        let mut de = serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, Outer>(&mut de) {
            Ok(v) => panic!("parsed {v:?}"),
            Err(e) => FieldError::from_json(e),
        }
    }

    #[test]
    fn names_the_field_of_a_wrong_value_a_missing_and_an_unknown_one() {
        let wrong = error_of(r#"{"inner": {"amount": -1}}"#);
        assert_eq!(wrong.field, "inner.amount");
        assert!(!wrong.detail.contains("line"), "{wrong}");
        assert_eq!(error_of(r#"{"inner": {}}"#).field, "inner.amount");
        assert_eq!(error_of(r#"{}"#).field, "inner");
        assert_eq!(
            error_of(r#"{"inner": {"amount": 1, "x": 2}}"#).field,
            "inner.x"
        );
    }
}
