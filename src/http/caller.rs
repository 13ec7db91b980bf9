//! Who is calling: the `Caller` of a request, from its bearer token (`auth` verifies
//! the token and holds the rules on what each caller may do).

use actix_web::{web, FromRequest, HttpRequest};

use super::problem::ApiError;
use super::AppState;
use crate::auth::{AuthError, Caller};

/// The bearer token of a request.
pub fn bearer(req: &HttpRequest) -> Result<&str, AuthError> {
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
