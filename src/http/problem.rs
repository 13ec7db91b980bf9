//! Errors of the HTTP API as RFC 7807 `application/problem+json`. One enum separates
//! what the caller did wrong (4xx, with a detail saying what to fix) from what went
//! wrong inside (500, logged, with a generic detail).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::actors::PaymentError;
use crate::store::StoreError;

/// An error answered as problem+json.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field is missing or invalid.
    #[error("{field}: {detail}")]
    InvalidField { field: String, detail: String },
    /// The body is not valid JSON.
    #[error("{0}")]
    MalformedBody(String),
    /// A query parameter is invalid.
    #[error("{0}")]
    BadRequest(String),
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No valid bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token, but the role or tenant may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Over the per-caller rate limit: retry after this many seconds.
    #[error("too many requests: at most {limit} per second; retry in {retry_after} s")]
    TooManyRequests { limit: String, retry_after: u64 },
    #[error("{0}")]
    Conflict(String),
    /// The request is well formed but cannot be processed (e.g. idempotency key reuse).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// A 400 naming a field.
    pub fn field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            detail: detail.into(),
        }
    }

    fn kind_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::InvalidField { .. } => ("urn:cassa:problem:invalid-field", "Invalid field"),
            ApiError::MalformedBody(_) => {
                ("urn:cassa:problem:malformed-body", "Malformed request body")
            }
            ApiError::BadRequest(_) => ("urn:cassa:problem:bad-request", "Bad request"),
            ApiError::PayloadTooLarge { .. } => (
                "urn:cassa:problem:payload-too-large",
                "Request body too large",
            ),
            ApiError::UnsupportedMediaType(_) => (
                "urn:cassa:problem:unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::Unauthorized(_) => ("urn:cassa:problem:unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => ("urn:cassa:problem:forbidden", "Forbidden"),
            ApiError::NotFound(_) => ("urn:cassa:problem:not-found", "Not found"),
            ApiError::TooManyRequests { .. } => {
                ("urn:cassa:problem:too-many-requests", "Too many requests")
            }
            ApiError::Conflict(_) => (
                "urn:cassa:problem:conflict",
                "Conflict with the current state",
            ),
            ApiError::Unprocessable(_) => (
                "urn:cassa:problem:unprocessable",
                "Request cannot be processed",
            ),
            ApiError::Unavailable(_) => {
                ("urn:cassa:problem:unavailable", "Temporarily unavailable")
            }
            ApiError::Unexpected(_) => ("urn:cassa:problem:internal", "Internal error"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidField { .. }
            | ApiError::MalformedBody(_)
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (kind, title) = self.kind_and_title();
        let detail = match self {
            ApiError::Unexpected(e) => {
                tracing::error!(error = ?e, "internal error");
                "something went wrong inside cassa; it has been logged".to_string()
            }
            other => other.to_string(),
        };
        let field = match self {
            ApiError::InvalidField { field, .. } => Some(field.as_str()),
            _ => None,
        };
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::Unavailable(_) => {
                response.insert_header(("Retry-After", "1"));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                response.insert_header(("Retry-After", retry_after.to_string()));
            }
            ApiError::Unauthorized(_) => {
                response.insert_header(("WWW-Authenticate", "Bearer realm=\"cassa\""));
            }
            _ => {}
        }
        response
            .content_type("application/problem+json")
            .json(Problem {
                kind,
                title,
                status: status.as_u16(),
                detail,
                field,
            })
    }
}

impl From<crate::domain::field::FieldError> for ApiError {
    fn from(e: crate::domain::field::FieldError) -> Self {
        ApiError::InvalidField {
            field: e.field,
            detail: e.detail,
        }
    }
}

impl From<crate::auth::Forbidden> for ApiError {
    fn from(e: crate::auth::Forbidden) -> Self {
        ApiError::Forbidden(e.0)
    }
}

impl From<crate::intake::IntakeError> for ApiError {
    fn from(e: crate::intake::IntakeError) -> Self {
        match e {
            crate::intake::IntakeError::Invalid(e) => e.into(),
            crate::intake::IntakeError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(id) => {
                ApiError::Unavailable(format!("payment {id} changed concurrently; retry"))
            }
            StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable("the database is unavailable; retry shortly".into())
            }
            StoreError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::Conflict(m) | PaymentError::NotReady(m) => ApiError::Conflict(m),
            PaymentError::Unavailable(m) => ApiError::Unavailable(m),
            PaymentError::Store(e) => e.into(),
        }
    }
}
