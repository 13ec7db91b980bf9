//! `GET /v1/payments/{id}/notice`: the printable payment notice (avviso di pagamento),
//! an A4 PDF after pagoPA's notice model: subject, creditor, recipient, amount, due date,
//! the notice code in groups of four, and the QR code a citizen pays it by (ISO 18004,
//! version 4, error correction M, drawn as vectors). Fonts are embedded (DejaVu Sans,
//! subset), so it prints the same everywhere.

use actix_web::{web, HttpResponse};

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

/// Why a notice cannot be rendered (a bug, not the payment's fault).
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("the embedded font cannot be read")]
    Font,
    #[error("the QR code cannot be built: {0}")]
    Qr(String),
    #[error("the PDF cannot be written: {0}")]
    Pdf(String),
}

static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// A4 in points.
const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 48.0;
/// One QR module: 33 modules and the 4-module quiet zone on each side make 4.5 cm.
const QR_MODULE: f32 = 3.1;

/// Renders the notice as a one-page A4 PDF.
pub fn render(notice: &Notice) -> Result<Vec<u8>, NoticeError> {
    use krilla::geom::{PathBuilder, Point, Rect};
    use krilla::page::PageSettings;
    use krilla::paint::{Fill, Stroke};
    use krilla::text::{Font, TextDirection};

    let regular = Font::new(REGULAR.into(), 0).ok_or(NoticeError::Font)?;
    let bold = Font::new(BOLD.into(), 0).ok_or(NoticeError::Font)?;
    let mut document = krilla::Document::new();
    let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT)
        .ok_or_else(|| NoticeError::Pdf("page size".into()))?;
    let mut page = document.start_page_with(settings);
    let mut surface = page.surface();
    surface.set_fill(Some(Fill::default()));
    let mut text = |font: &Font, size: f32, x: f32, y: f32, line: &str| {
        surface.draw_text(
            Point::from_xy(x, y),
            font.clone(),
            size,
            line,
            false,
            TextDirection::Auto,
        );
    };

    text(&bold, 22.0, MARGIN, 80.0, "AVVISO DI PAGAMENTO");
    text(&regular, 11.0, MARGIN, 104.0, &notice.subject);

    text(&bold, 9.0, MARGIN, 150.0, "ENTE CREDITORE");
    text(&regular, 12.0, MARGIN, 168.0, &notice.creditor_name);
    let creditor_code = format!("Codice fiscale {}", notice.creditor_fiscal_code);
    text(&regular, 10.0, MARGIN, 184.0, &creditor_code);

    let right = PAGE_WIDTH / 2.0 + 10.0;
    text(&bold, 9.0, right, 150.0, "DESTINATARIO AVVISO");
    text(&regular, 12.0, right, 168.0, &notice.recipient_name);
    let recipient_code = format!("Codice fiscale {}", notice.recipient_tax_code);
    text(&regular, 10.0, right, 184.0, &recipient_code);

    let amount = format!("{} Euro", italian_amount(notice.amount_cents));
    text(&bold, 9.0, MARGIN, 240.0, "QUANTO E QUANDO PAGARE?");
    text(&bold, 20.0, MARGIN, 268.0, &amount);
    let due = format!("entro il {}", notice.due_date);
    text(&regular, 12.0, MARGIN, 290.0, &due);

    text(&bold, 9.0, MARGIN, 350.0, "CODICE AVVISO");
    text(
        &bold,
        16.0,
        MARGIN,
        372.0,
        &in_groups_of_four(&notice.notice_code),
    );
    text(&bold, 9.0, MARGIN, 400.0, "CODICE FISCALE ENTE CREDITORE");
    text(&regular, 12.0, MARGIN, 418.0, &notice.creditor_fiscal_code);
    text(&regular, 9.0, MARGIN, 446.0, &format!("IUV {}", notice.iuv));

    let qr_size = 41.0 * QR_MODULE;
    let qr_left = PAGE_WIDTH - MARGIN - qr_size;
    let qr_top = 330.0;
    match notice.qr_payload() {
        Some(payload) => {
            let code = qrcode::QrCode::with_version(
                payload.as_bytes(),
                qrcode::Version::Normal(4),
                qrcode::EcLevel::M,
            )
            .map_err(|e| NoticeError::Qr(e.to_string()))?;
            let width = code.width();
            let mut modules = PathBuilder::new();
            for (i, color) in code.to_colors().into_iter().enumerate() {
                if color == qrcode::Color::Dark {
                    let (x, y) = ((i % width) as f32 + 4.0, (i / width) as f32 + 4.0);
                    if let Some(rect) = Rect::from_xywh(
                        qr_left + x * QR_MODULE,
                        qr_top + y * QR_MODULE,
                        QR_MODULE,
                        QR_MODULE,
                    ) {
                        modules.push_rect(rect);
                    }
                }
            }
            if let Some(path) = modules.finish() {
                surface.draw_path(&path);
            }
        }
        None => text(
            &regular,
            9.0,
            qr_left,
            qr_top + 20.0,
            "Nessun codice QR: codici incompleti",
        ),
    }

    // The tear-off line of the payment part.
    surface.set_fill(None);
    surface.set_stroke(Some(Stroke::default()));
    let mut rule = PathBuilder::new();
    rule.move_to(MARGIN, 310.0);
    rule.line_to(PAGE_WIDTH - MARGIN, 310.0);
    if let Some(path) = rule.finish() {
        surface.draw_path(&path);
    }
    surface.set_stroke(None);
    surface.set_fill(Some(Fill::default()));
    let footer = format!("Pagamento {}", notice.payment_id);
    surface.draw_text(
        Point::from_xy(MARGIN, PAGE_HEIGHT - MARGIN),
        regular.clone(),
        8.0,
        &footer,
        false,
        TextDirection::Auto,
    );
    surface.finish();
    page.finish();
    document
        .finish()
        .map_err(|e| NoticeError::Pdf(format!("{e:?}")))
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
