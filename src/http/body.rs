//! Reading request bodies: at most `BODY_LIMIT` bytes (413 beyond), JSON only (415
//! otherwise), parsed with the path of the failing field so a 400 can name it.

use actix_web::{web, HttpRequest};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use crate::domain::field::FieldError;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Reads the whole body, refusing more than `BODY_LIMIT` bytes.
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT) {
        return Err(ApiError::PayloadTooLarge { limit: BODY_LIMIT });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::MalformedBody(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(ApiError::PayloadTooLarge { limit: BODY_LIMIT });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses a JSON body into `T`, naming the field that fails.
pub fn parse_json<T: DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !(essence == "application/json" || essence.ends_with("+json")) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "send the body as application/json (got {content_type:?})"
        )));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        if e.inner().is_syntax() || e.inner().is_eof() {
            ApiError::MalformedBody(format!("the body is not valid JSON: {}", e.inner()))
        } else {
            ApiError::from(FieldError::from_json(e))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::MalformedBody(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// Reads and parses a JSON body.
pub async fn json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(T, web::Bytes), ApiError> {
    let body = read_limited(req, payload).await?;
    let value = parse_json(req, &body)?;
    Ok((value, body))
}

/// Reads a JSON value (e.g. a merged PATCH document) into `T`, naming the field that
/// fails as a body would.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| ApiError::from(FieldError::from_json(e)))
}

/// Reads a `PATCH` body: a JSON merge patch (RFC 7396), which must be an object.
pub async fn merge_patch(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<serde_json::Value, ApiError> {
    let (patch, _): (serde_json::Value, _) = json(req, payload).await?;
    if !patch.is_object() {
        return Err(ApiError::MalformedBody(
            "a PATCH body is a JSON merge patch: an object of the fields to change".into(),
        ));
    }
    Ok(patch)
}
