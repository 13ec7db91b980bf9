//! `GET /v1/payments/{id}/notice`: the printable payment notice (avviso di pagamento),
//! an A4 PDF after pagoPA's notice model: subject, creditor, recipient, amount, due date,
//! the notice code in groups of four, and the QR code a citizen pays it by (ISO 18004,
//! version 4, error correction M, drawn as vectors). Fonts are embedded (DejaVu Sans,
//! subset), so it prints the same everywhere.

use actix_web::{web, HttpResponse};

use super::pdf::{self, PdfError, MARGIN, PAGE_HEIGHT, PAGE_WIDTH};
use super::problem::ApiError;
use super::AppState;
use crate::domain::pagopa::{in_groups_of_four, italian_amount, qr_payload};
use crate::domain::payment::{Payment, PaymentType};
use crate::tenancy::Receiver;

/// The notice of a payment (mounted in the `/v1/payments` scope).
pub async fn notice(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid::Uuid::parse_str(&path).map_err(|_| ApiError::field("id", "must be a UUID"))?;
    let payment = state
        .store
        .payment(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no payment {id}")))?
        .payment;
    if payment.kind != PaymentType::Pagopa {
        return Err(ApiError::Conflict(
            "only PAGOPA payments have a printable notice".into(),
        ));
    }
    if payment.payment.notice_code.is_none() {
        return Err(ApiError::Conflict(format!(
            "no notice yet: the payment is {}; the notice exists once the intermediary created the debt position",
            payment.status
        )));
    }
    // The creditor is the service's receiver; a configuration without one (or gone)
    // still gets a notice, without the QR code that needs its fiscal code.
    let creditor = state
        .store
        .service(payment.service_id)
        .await?
        .and_then(|service| {
            serde_json::from_value::<Receiver>(service.document["receiver"].clone()).ok()
        });
    let pdf = render(&Notice::of(&payment, creditor.as_ref()))
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("cannot render the notice: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            "Content-Disposition",
            format!("inline; filename=\"avviso-{}.pdf\"", payment.payment.iud),
        ))
        .body(pdf))
}

/// What a notice prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub subject: String,
    pub creditor_name: String,
    pub creditor_fiscal_code: String,
    pub recipient_name: String,
    pub recipient_tax_code: String,
    pub amount_cents: i64,
    /// `dd/mm/yyyy`, in Italy's time.
    pub due_date: String,
    pub notice_code: String,
    pub iuv: String,
    pub payment_id: String,
}

impl Notice {
    pub fn of(payment: &Payment, creditor: Option<&Receiver>) -> Notice {
        let debtor = payment.debtor.as_ref().unwrap_or(&payment.payer);
        let recipient_name = [Some(debtor.name.as_str()), debtor.family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        Notice {
            subject: payment.reason.clone(),
            creditor_name: creditor.map(|c| c.name.clone()).unwrap_or_default(),
            creditor_fiscal_code: creditor
                .map(|c| c.tax_identification_number.clone())
                .unwrap_or_default(),
            recipient_name,
            recipient_tax_code: debtor.tax_identification_number.as_str().to_string(),
            amount_cents: payment.payment.amount.cents(),
            due_date: payment
                .expires_at()
                .with_timezone(&chrono_tz::Europe::Rome)
                .format("%d/%m/%Y")
                .to_string(),
            notice_code: payment.payment.notice_code.clone().unwrap_or_default(),
            iuv: payment.payment.iuv.clone().unwrap_or_default(),
            payment_id: payment.id.to_string(),
        }
    }

    /// The QR code's text, when the codes allow one.
    pub fn qr_payload(&self) -> Option<String> {
        qr_payload(
            &self.notice_code,
            &self.creditor_fiscal_code,
            self.amount_cents,
        )
    }
}

/// One QR module: 33 modules and the 4-module quiet zone on each side make 4.5 cm.
const QR_MODULE: f32 = 3.1;

/// Renders the notice as a one-page A4 PDF.
pub fn render(notice: &Notice) -> Result<Vec<u8>, PdfError> {
    let qr = notice
        .qr_payload()
        .map(|payload| {
            qrcode::QrCode::with_version(
                payload.as_bytes(),
                qrcode::Version::Normal(4),
                qrcode::EcLevel::M,
            )
            .map_err(|e| PdfError::Qr(e.to_string()))
        })
        .transpose()?;
    pdf::a4(|page| {
        page.text(true, 22.0, MARGIN, 80.0, "AVVISO DI PAGAMENTO");
        page.text(false, 11.0, MARGIN, 104.0, &notice.subject);

        let right = PAGE_WIDTH / 2.0 + 10.0;
        page.field(MARGIN, 150.0, "ENTE CREDITORE", &notice.creditor_name);
        let creditor_code = format!("Codice fiscale {}", notice.creditor_fiscal_code);
        page.text(false, 10.0, MARGIN, 184.0, &creditor_code);
        page.field(right, 150.0, "DESTINATARIO AVVISO", &notice.recipient_name);
        let recipient_code = format!("Codice fiscale {}", notice.recipient_tax_code);
        page.text(false, 10.0, right, 184.0, &recipient_code);

        let amount = format!("{} Euro", italian_amount(notice.amount_cents));
        page.text(true, 9.0, MARGIN, 240.0, "QUANTO E QUANDO PAGARE?");
        page.text(true, 20.0, MARGIN, 268.0, &amount);
        let due = format!("entro il {}", notice.due_date);
        page.text(false, 12.0, MARGIN, 290.0, &due);
        // Above it what to pay, below it what to pay by.
        page.rule(310.0);

        page.text(true, 9.0, MARGIN, 350.0, "CODICE AVVISO");
        let grouped = in_groups_of_four(&notice.notice_code);
        page.text(true, 16.0, MARGIN, 372.0, &grouped);
        let creditor = &notice.creditor_fiscal_code;
        page.field(MARGIN, 400.0, "CODICE FISCALE ENTE CREDITORE", creditor);
        page.text(false, 9.0, MARGIN, 446.0, &format!("IUV {}", notice.iuv));

        let qr_size = 41.0 * QR_MODULE;
        let (qr_left, qr_top) = (PAGE_WIDTH - MARGIN - qr_size, 330.0);
        match &qr {
            Some(code) => {
                let width = code.width();
                let dark = code
                    .to_colors()
                    .into_iter()
                    .enumerate()
                    .filter(|(_, color)| *color == qrcode::Color::Dark)
                    .map(|(i, _)| {
                        let (x, y) = ((i % width) as f32 + 4.0, (i / width) as f32 + 4.0);
                        (qr_left + x * QR_MODULE, qr_top + y * QR_MODULE)
                    });
                page.squares(QR_MODULE, dark);
            }
            None => page.text(
                false,
                9.0,
                qr_left,
                qr_top + 20.0,
                "Nessun codice QR: codici incompleti",
            ),
        }

        let footer = format!("Pagamento {}", notice.payment_id);
        page.text(false, 8.0, MARGIN, PAGE_HEIGHT - MARGIN, &footer);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Notice {
        Notice {
            subject: "TARI 2026, rata unica — città".into(),
            creditor_name: "Comune di Demo".into(),
            creditor_fiscal_code: "00743110157".into(),
            recipient_name: "Mario Rossi".into(),
            recipient_tax_code: "RSSMRA80A01H501U".into(),
            amount_cents: 102_099,
            due_date: "31/12/2026".into(),
            notice_code: "301000000000009949".into(),
            iuv: "01000000000009949".into(),
            payment_id: "p".into(),
        }
    }

    #[test]
    fn a_notice_renders_with_its_qr_payload() {
        let notice = notice();
        assert_eq!(
            notice.qr_payload().as_deref(),
            Some("PAGOPA|002|301000000000009949|00743110157|102099")
        );
        let pdf = render(&notice).unwrap();
        assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    }

    #[test]
    fn a_notice_without_usable_codes_renders_without_a_qr_code() {
        let mut notice = notice();
        notice.creditor_fiscal_code = String::new();
        assert_eq!(notice.qr_payload(), None);
        assert!(render(&notice).unwrap().starts_with(b"%PDF-"));
    }
}
