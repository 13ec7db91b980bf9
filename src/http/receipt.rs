//! `GET /v1/payments/{id}/receipt`: the receipt of a COMPLETE payment, from what the
//! intermediary reported. A one-page A4 PDF, or its JSON form for `Accept:
//! application/json`.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::pdf::{self, PdfError, MARGIN, PAGE_HEIGHT, PAGE_WIDTH};
use super::problem::ApiError;
use super::AppState;
use crate::domain::money::Money;
use crate::domain::pagopa::{in_groups_of_four, italian_amount};
use crate::domain::payment::Payment;
use crate::domain::status::PaymentStatus;
use crate::domain::time;

#[derive(Debug, Serialize)]
pub struct Receipt {
    payment_id: Uuid,
    status: PaymentStatus,
    reason: String,
    amount: Money,
    currency: String,
    notice_code: Option<String>,
    iuv: Option<String>,
    transaction_id: Option<String>,
    #[serde(with = "time::rome_opt")]
    paid_at: Option<DateTime<Utc>>,
    payer_tax_identification_number: String,
    #[serde(skip)]
    payer_name: String,
}

impl Receipt {
    pub fn of(payment: Payment) -> Receipt {
        let payer_name = [
            Some(payment.payer.name.as_str()),
            payment.payer.family_name.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        Receipt {
            payment_id: payment.id,
            status: payment.status,
            reason: payment.reason,
            amount: payment.payment.amount,
            currency: payment.payment.currency,
            notice_code: payment.payment.notice_code,
            iuv: payment.payment.iuv,
            transaction_id: payment.payment.transaction_id,
            paid_at: payment.payment.paid_at,
            payer_tax_identification_number: payment.payer.tax_identification_number.to_string(),
            payer_name,
        }
    }
}

/// Whether the caller asked for the JSON form.
fn wants_json(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(actix_web::http::header::ACCEPT)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|kind| {
            let kind = kind.split(';').next().unwrap_or("").trim();
            kind.eq_ignore_ascii_case("application/json")
        })
}

/// The receipt (mounted in the `/v1/payments` scope).
pub async fn receipt(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let payment = super::payments::load(&state, &path).await?;
    if payment.status != PaymentStatus::Complete {
        return Err(ApiError::Conflict(format!(
            "no receipt: the payment is {}, a receipt exists once it is COMPLETE",
            payment.status
        )));
    }
    let iud = payment.payment.iud.clone();
    let receipt = Receipt::of(payment);
    if wants_json(&req) {
        return Ok(HttpResponse::Ok().json(receipt));
    }
    let pdf = render(&receipt)
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("cannot render the receipt: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            "Content-Disposition",
            format!("inline; filename=\"ricevuta-{iud}.pdf\""),
        ))
        .body(pdf))
}

/// Renders the receipt as a one-page A4 PDF.
pub fn render(receipt: &Receipt) -> Result<Vec<u8>, PdfError> {
    let paid_at = receipt.paid_at.map_or_else(String::new, |at| {
        at.with_timezone(&chrono_tz::Europe::Rome)
            .format("%d/%m/%Y %H:%M")
            .to_string()
    });
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    pdf::a4(|page| {
        page.text(true, 22.0, MARGIN, 80.0, "RICEVUTA DI PAGAMENTO");
        page.text(false, 11.0, MARGIN, 104.0, &receipt.reason);
        let amount = format!("{} Euro", italian_amount(receipt.amount.cents()));
        page.text(true, 9.0, MARGIN, 150.0, "IMPORTO PAGATO");
        page.text(true, 20.0, MARGIN, 176.0, &amount);
        page.field(PAGE_WIDTH / 2.0 + 10.0, 150.0, "PAGATO IL", &paid_at);
        page.rule(200.0);
        let payer = format!(
            "{} ({})",
            receipt.payer_name, receipt.payer_tax_identification_number
        );
        page.field(MARGIN, 236.0, "PAGATORE", &payer);
        let notice_code = receipt
            .notice_code
            .as_deref()
            .map_or_else(|| "-".into(), in_groups_of_four);
        page.field(MARGIN, 286.0, "CODICE AVVISO", &notice_code);
        page.field(MARGIN, 336.0, "IUV", &or_dash(&receipt.iuv));
        let transaction = or_dash(&receipt.transaction_id);
        page.field(
            MARGIN,
            386.0,
            "IDENTIFICATIVO DELLA TRANSAZIONE",
            &transaction,
        );
        let footer = format!("Pagamento {}", receipt.payment_id);
        page.text(false, 8.0, MARGIN, PAGE_HEIGHT - MARGIN, &footer);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_answered_only_when_asked_for() {
        let ask = |accept: &str| {
            let req = actix_web::test::TestRequest::get()
                .insert_header(("Accept", accept))
                .to_http_request();
            wants_json(&req)
        };
        assert!(ask("application/json"));
        assert!(ask("text/html, application/json;q=0.9"));
        assert!(!ask("*/*"));
        assert!(!ask("application/pdf"));
        assert!(!wants_json(
            &actix_web::test::TestRequest::get().to_http_request()
        ));
    }
}
