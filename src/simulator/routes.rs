//! HTTP handlers of the simulator: the JSON API of the intermediary (debt
//! positions) and of the wallet gateway (payment executions), the HTML checkout
//! page with its Pay/Fail forms, and the statistics endpoint.

use crate::http::routes::{self, endpoint, Endpoint};
use actix_web::http::Method;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::state::{
    cents, ExecuteRequest, NewPosition, Position, PositionStatus, SimError, State, CENTS_HANG,
};

type Shared = web::Data<Arc<State>>;

impl ResponseError for SimError {
    fn status_code(&self) -> StatusCode {
        match self {
            SimError::BadRequest(_) => StatusCode::BAD_REQUEST,
            SimError::NotFound => StatusCode::NOT_FOUND,
            SimError::Unauthorized => StatusCode::UNAUTHORIZED,
            SimError::Conflict(_) => StatusCode::CONFLICT,
            SimError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        json_error(self.status_code(), &self.to_string())
    }
}

fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message }))
}

/// Mounts every `/sim/...` route, with the shared state and JSON error handling
/// scoped to them.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, state: Arc<State>) {
    let json_cfg = web::JsonConfig::default().error_handler(|err, _req| {
        let response = json_error(StatusCode::BAD_REQUEST, &err.to_string());
        actix_web::error::InternalError::from_response(err, response).into()
    });
    let path_cfg = web::PathConfig::default().error_handler(|err, _req| {
        let response = json_error(StatusCode::NOT_FOUND, &err.to_string());
        actix_web::error::InternalError::from_response(err, response).into()
    });
    let scope = web::scope(PREFIX)
        .app_data(web::Data::new(state))
        .app_data(json_cfg)
        .app_data(path_cfg);
    cfg.service(routes::mount_scope(scope, endpoints()));
}

/// Where the simulator is mounted.
const PREFIX: &str = "/sim";

/// The simulator's routes, relative to [`PREFIX`].
fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint(Method::POST, "/positions", create_position),
        endpoint(Method::GET, "/positions/{iuv}", get_position),
        endpoint(Method::DELETE, "/positions/{iuv}", cancel_position),
        endpoint(Method::POST, "/positions/{iuv}/pay", pay_position),
        endpoint(Method::POST, "/positions/{iuv}/fail", fail_position),
        endpoint(Method::GET, "/checkout/{iuv}", checkout_page),
        endpoint(Method::POST, "/checkout/{iuv}/pay", checkout_pay),
        endpoint(Method::POST, "/checkout/{iuv}/fail", checkout_fail),
        endpoint(Method::POST, "/payments", execute_payment),
        endpoint(Method::GET, "/stats", stats),
    ]
}

/// Method and full path of each simulator route.
pub(crate) fn route_list() -> Vec<(Method, String)> {
    routes::listed(PREFIX, endpoints())
}

/// Position as exposed over the JSON API.
#[derive(Serialize)]
struct PositionView<'a> {
    iuv: &'a str,
    iud: &'a str,
    notice_code: &'a str,
    amount_cents: i64,
    reason: &'a str,
    status: PositionStatus,
    created_at: String,
    paid_at: Option<String>,
    transaction_id: Option<&'a str>,
    checkout_url: String,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn view<'a>(req: &HttpRequest, p: &'a Position) -> PositionView<'a> {
    let info = req.connection_info();
    PositionView {
        iuv: &p.iuv,
        iud: &p.iud,
        notice_code: &p.notice_code,
        amount_cents: p.amount_cents,
        reason: &p.reason,
        status: p.status,
        created_at: rfc3339(p.created_at),
        paid_at: p.paid_at.map(rfc3339),
        transaction_id: p.transaction_id.as_deref(),
        checkout_url: format!("{}://{}/sim/checkout/{}", info.scheme(), info.host(), p.iuv),
    }
}

fn position_response(status: StatusCode, req: &HttpRequest, p: &Position) -> HttpResponse {
    HttpResponse::build(status).json(view(req, p))
}

/// Refuses intermediary calls without the configured API key.
fn check_key(state: &State, req: &HttpRequest) -> Result<(), SimError> {
    match &state.config.api_key {
        None => Ok(()),
        Some(key) => {
            let sent = req.headers().get("X-Api-Key").and_then(|v| v.to_str().ok());
            if sent == Some(key.as_str()) {
                Ok(())
            } else {
                Err(SimError::Unauthorized)
            }
        }
    }
}

async fn hang(state: &State) {
    tokio::time::sleep(state.config.hang_for).await;
}

async fn create_position(
    state: Shared,
    req: HttpRequest,
    body: web::Json<NewPosition>,
) -> Result<HttpResponse, SimError> {
    check_key(&state, &req)?;
    if let Some(url) = body.notify_url.as_deref().filter(|u| !u.is_empty()) {
        if !super::is_loopback_url(url) {
            return Err(SimError::BadRequest(
                "notify_url must be an http(s) URL on a loopback address".into(),
            ));
        }
    }
    let hangs = cents(body.amount_cents) == CENTS_HANG;
    let (position, created) = state.create_position(body.into_inner())?;
    if hangs {
        hang(&state).await;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(position_response(status, &req, &position))
}

async fn get_position(
    state: Shared,
    req: HttpRequest,
    iuv: web::Path<String>,
) -> Result<HttpResponse, SimError> {
    check_key(&state, &req)?;
    let mut position = state.status_call(&iuv)?;
    if cents(position.amount_cents) == CENTS_HANG {
        hang(&state).await;
        // Answer with the state as it is after the hang.
        position = state.get_position(&iuv).ok_or(SimError::NotFound)?;
    }
    Ok(position_response(StatusCode::OK, &req, &position))
}

async fn cancel_position(
    state: Shared,
    req: HttpRequest,
    iuv: web::Path<String>,
) -> Result<HttpResponse, SimError> {
    check_key(&state, &req)?;
    let position = state.cancel(&iuv)?;
    Ok(position_response(StatusCode::OK, &req, &position))
}

/// Pays the position and, on a transition to PAID, pushes the notification.
fn do_pay(state: &Arc<State>, iuv: &str) -> Result<Position, SimError> {
    let (position, transitioned) = state.pay(iuv)?;
    if transitioned {
        notify_paid(state, &position);
    }
    Ok(position)
}

/// Where a paid position is pushed. With a configured notify URL (the simulator mounted
/// in cassa: cassa's own), a position's URL is used only on that same origin: anyone
/// may create positions, so their URL must not make the simulator call elsewhere.
fn push_target(position: Option<&str>, configured: Option<&str>) -> Option<String> {
    let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
    match (position, configured) {
        (Some(asked), Some(own)) if origin(asked).is_some() && origin(asked) == origin(own) => {
            Some(asked.to_string())
        }
        (Some(asked), Some(own)) => {
            tracing::warn!(url = %asked, "simulator: push to another origin than the configured notify URL ignored");
            Some(own.to_string())
        }
        (asked, own) => asked.or(own).map(str::to_string),
    }
}

/// Fire-and-forget push notification of a paid position.
fn notify_paid(state: &Arc<State>, position: &Position) {
    if !state.config.push {
        return;
    }
    let Some(url) = push_target(
        position.notify_url.as_deref(),
        state.config.notify_url.as_deref(),
    ) else {
        return;
    };
    if !super::is_loopback_url(&url) {
        tracing::warn!(%url, "simulator: not pushing to a non-loopback address");
        return;
    }
    let body = serde_json::json!({
        "iuv": position.iuv,
        "iud": position.iud,
        "status": "PAID",
    })
    .to_string();
    let signature = state
        .config
        .push_secret
        .as_deref()
        .map(|secret| crate::intermediary::sign_push(secret, body.as_bytes()));
    let client = state.http.clone();
    tokio::spawn(async move {
        let mut request = client
            .post(&url)
            .timeout(Duration::from_secs(5))
            .header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header(crate::intermediary::PUSH_SIGNATURE_HEADER, signature);
        }
        let result = request.body(body).send().await;
        match result {
            Ok(resp) if resp.status().is_success() => {
                tracing::debug!(%url, "simulator: payment notification delivered");
            }
            Ok(resp) => {
                tracing::warn!(%url, status = %resp.status(), "simulator: payment notification refused");
            }
            Err(err) => {
                tracing::warn!(%url, error = %err, "simulator: payment notification failed");
            }
        }
    });
}

async fn pay_position(
    state: Shared,
    req: HttpRequest,
    iuv: web::Path<String>,
) -> Result<HttpResponse, SimError> {
    check_key(&state, &req)?;
    let position = do_pay(&state, &iuv)?;
    Ok(position_response(StatusCode::OK, &req, &position))
}

async fn fail_position(
    state: Shared,
    req: HttpRequest,
    iuv: web::Path<String>,
) -> Result<HttpResponse, SimError> {
    check_key(&state, &req)?;
    let position = state.fail(&iuv)?;
    Ok(position_response(StatusCode::OK, &req, &position))
}

async fn execute_payment(
    state: Shared,
    req: HttpRequest,
    body: web::Json<ExecuteRequest>,
) -> Result<HttpResponse, SimError> {
    check_key(&state, &req)?;
    let execution = state.execute(&body)?;
    if cents(execution.amount_cents) == CENTS_HANG {
        hang(&state).await;
    }
    Ok(HttpResponse::Ok().json(execution))
}

async fn stats(state: Shared) -> HttpResponse {
    HttpResponse::Ok().json(state.stats())
}

// ---------------------------------------------------------------- checkout (HTML)

/// Escapes text for safe inclusion in HTML content and attribute values.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Formats cents as euros, e.g. `1234` -> `"12.34 EUR"`.
pub(crate) fn format_euros(amount_cents: i64) -> String {
    let sign = if amount_cents < 0 { "-" } else { "" };
    let abs = amount_cents.unsigned_abs();
    format!("{sign}{}.{:02} EUR", abs / 100, abs % 100)
}

fn html_page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>\n",
        title = escape_html(title),
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(html)
}

fn html_error(err: &SimError) -> HttpResponse {
    let status = err.status_code();
    let title = match err {
        SimError::NotFound => "Debt position not found",
        _ => "Operation not allowed",
    };
    html_page(
        status,
        title,
        &format!("<p>{}</p>", escape_html(&err.to_string())),
    )
}

async fn checkout_page(state: Shared, iuv: web::Path<String>) -> HttpResponse {
    let Some(position) = state.get_position(&iuv) else {
        return html_error(&SimError::NotFound);
    };
    let iuv_e = escape_html(&position.iuv);
    let status = serde_json::to_value(position.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let form = |action: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"/sim/checkout/{iuv_e}/{action}\">\
             <button type=\"submit\">{label}</button></form>"
        )
    };
    let body = format!(
        "<dl><dt>Reason</dt><dd>{reason}</dd>\
         <dt>Amount</dt><dd>{amount}</dd>\
         <dt>Notice code</dt><dd>{notice}</dd>\
         <dt>Status</dt><dd>{status}</dd></dl>{pay}{fail}",
        reason = escape_html(&position.reason),
        amount = escape_html(&format_euros(position.amount_cents)),
        notice = escape_html(&position.notice_code),
        status = escape_html(&status),
        pay = form("pay", "Pay"),
        fail = form("fail", "Fail"),
    );
    html_page(StatusCode::OK, "pagoPA checkout (simulator)", &body)
}

/// cassa's landing of the position's payment (its iud is the payment id), the only
/// place the checkout sends the citizen back to.
fn landing_of(state: &State, iuv: &str) -> Option<String> {
    let base = state.config.cassa_url.as_deref()?.trim_end_matches('/');
    let position = state.get_position(iuv)?;
    let payment = uuid::Uuid::parse_str(&position.iud).ok()?;
    Some(format!("{base}/v1/payments/{payment}/landing"))
}

/// Answers a checkout form: back to cassa's landing, or a small "done" page.
fn checkout_done(state: &State, iuv: &str, done: &str) -> HttpResponse {
    match landing_of(state, iuv).and_then(|url| HeaderValue::from_str(&url).ok()) {
        Some(location) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .finish(),
        None => html_page(StatusCode::OK, done, "<p>You can close this page.</p>"),
    }
}

async fn checkout_pay(state: Shared, iuv: web::Path<String>) -> HttpResponse {
    match do_pay(&state, &iuv) {
        Ok(_) => checkout_done(&state, &iuv, "Payment done"),
        Err(err) => html_error(&err),
    }
}

async fn checkout_fail(state: Shared, iuv: web::Path<String>) -> HttpResponse {
    match state.fail(&iuv) {
        Ok(_) => checkout_done(&state, &iuv, "Payment failed"),
        Err(err) => html_error(&err),
    }
}

#[cfg(test)]
mod push_tests {
    use super::push_target;

    #[test]
    fn a_mounted_simulator_pushes_only_to_its_own_origin() {
        let own = Some("http://127.0.0.1:8080/v1/intermediaries/sim/notify");
        let same = "http://127.0.0.1:8080/v1/intermediaries/default/notify";
        assert_eq!(push_target(Some(same), own).as_deref(), Some(same));
        for elsewhere in [
            "http://127.0.0.1:18731/internal-admin",
            "http://127.0.0.1:8080.evil.test/x",
            "https://127.0.0.1:8080/x",
            "not a url",
        ] {
            assert_eq!(push_target(Some(elsewhere), own), own.map(str::to_string));
        }
        // Alone (`cassa simulator` without --notify-url): the position's own URL.
        assert_eq!(push_target(Some(same), None).as_deref(), Some(same));
        assert_eq!(push_target(None, own), own.map(str::to_string));
    }
}
