//! `GET /v1/payments/{id}/notice`: the printable payment notice (avviso di pagamento) as
//! a one-page PDF, written directly (PDF 1.4, Helvetica, WinAnsi text): the citizen pays
//! it at a counter with the notice code.

use actix_web::{web, HttpResponse};

use super::problem::ApiError;
use super::AppState;
use crate::domain::payment::{Payment, PaymentType};
use crate::domain::time;

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
    Ok(HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            "Content-Disposition",
            format!("inline; filename=\"avviso-{}.pdf\"", payment.payment.iud),
        ))
        .body(render(&payment)))
}

/// The notice's lines of text.
fn lines(payment: &Payment) -> Vec<(u32, String)> {
    let payer = &payment.payer;
    let name = [Some(payer.name.as_str()), payer.family_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let expiry = time::format(&payment.expires_at());
    vec![
        (20, "Avviso di pagamento / Payment notice".to_string()),
        (12, format!("Causale / Reason: {}", payment.reason)),
        (
            12,
            format!(
                "Importo / Amount: {} {}",
                payment.payment.amount, payment.payment.currency
            ),
        ),
        (
            14,
            format!(
                "Codice avviso / Notice code: {}",
                payment.payment.notice_code.as_deref().unwrap_or("-")
            ),
        ),
        (
            12,
            format!("IUV: {}", payment.payment.iuv.as_deref().unwrap_or("-")),
        ),
        (12, format!("Scadenza / Expires: {expiry}")),
        (
            12,
            format!(
                "Debitore / Payer: {name} ({})",
                payer.tax_identification_number
            ),
        ),
        (12, format!("Ente / Tenant: {}", payment.tenant_id)),
        (12, format!("Stato / Status: {}", payment.status)),
        (10, format!("Pagamento / Payment id: {}", payment.id)),
    ]
}

/// A PDF string literal in WinAnsi: parentheses and backslashes escaped, characters
/// WinAnsi lacks replaced by `?`.
fn pdf_text(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    out.push(b'(');
    for c in text.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push(b'\\');
                out.push(c as u8);
            }
            c if (c as u32) < 0x20 => out.push(b' '),
            c if (c as u32) <= 0xFF => out.push(c as u32 as u8),
            // The WinAnsi characters outside Latin-1 that Italian texts use.
            '€' => out.push(0x80),
            '‘' => out.push(0x91),
            '’' => out.push(0x92),
            '“' => out.push(0x93),
            '”' => out.push(0x94),
            '–' => out.push(0x96),
            '—' => out.push(0x97),
            _ => out.push(b'?'),
        }
    }
    out.push(b')');
    out
}

/// Renders the notice as a PDF document.
pub fn render(payment: &Payment) -> Vec<u8> {
    let mut content = Vec::new();
    content.extend_from_slice(b"BT\n50 790 Td\n");
    for (i, (size, line)) in lines(payment).into_iter().enumerate() {
        let step = if i == 0 { 0 } else { 28 };
        content.extend_from_slice(format!("/F1 {size} Tf\n0 -{step} Td\n").as_bytes());
        content.extend_from_slice(&pdf_text(&line));
        content.extend_from_slice(b" Tj\n");
    }
    content.extend_from_slice(b"ET\n");

    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_vec(),
    ];
    let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
    stream.extend_from_slice(&content);
    stream.extend_from_slice(b"endstream");
    objects.push(stream);
    objects.push(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    );

    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend_from_slice(object);
        pdf.extend_from_slice(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_kept_in_latin_1() {
        assert_eq!(pdf_text("a(b)\\c"), b"(a\\(b\\)\\\\c)".to_vec());
        assert_eq!(pdf_text("città € – ✓"), b"(citt\xe0 \x80 \x96 ?)".to_vec());
    }
}
