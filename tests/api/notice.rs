//! The printable notice and the receipt as a citizen and a counter see them: the PDF
//! rendered to an image by poppler and its QR code read by a real decoder (zbar), their
//! text extracted by poppler. Needs `pdftoppm`, `pdftotext` and `zbarimg` (`bash .ci/tools-up` installs
//! them).

use std::process::Command;

use crate::helpers::*;

/// Runs a document tool, failing with a message naming it when it is missing or fails.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is needed to read the notice (bash .ci/tools-up installs it): {e}")
        });
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn the_notice_carries_its_codes_and_a_qr_code_that_decodes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_id(&pagopa_body("1020.99")).await;
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 10).await;
    let notice_code = pending["payment"]["notice_code"].as_str().unwrap();

    let notice = app.get(&format!("/v1/payments/{id}/notice")).await;
    assert_eq!(notice.status(), 200);
    assert_eq!(notice.headers()["content-type"], "application/pdf");
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("notice.pdf");
    std::fs::write(&pdf, notice.bytes().await.unwrap()).unwrap();
    let pdf = pdf.to_str().unwrap();

    // The demo service's receiver is the creditor: Comune di Demo, 00743110157.
    let image = dir.path().join("notice");
    run(
        "pdftoppm",
        &[
            "-r",
            "200",
            "-png",
            "-singlefile",
            pdf,
            image.to_str().unwrap(),
        ],
    );
    let decoded = run(
        "zbarimg",
        &["--raw", "-q", &format!("{}.png", image.display())],
    );
    assert_eq!(
        decoded.trim_end(),
        format!("PAGOPA|002|{notice_code}|00743110157|102099")
    );

    let text = run("pdftotext", &["-layout", pdf, "-"]);
    let grouped = cassa::domain::pagopa::in_groups_of_four(notice_code);
    for expected in [
        "AVVISO DI PAGAMENTO",
        "TARI 2026 rata 1",
        "Comune di Demo",
        "Mario Rossi",
        "RSSMRA80A01H501U",
        "1.020,99 Euro",
        grouped.as_str(),
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not in the notice:\n{text}"
        );
    }
}

on_both_databases!(the_notice_carries_its_codes_and_a_qr_code_that_decodes);

/// The receipt of a paid payment, as a PDF by default and as JSON when asked for.
async fn the_receipt_is_a_pdf_of_what_the_intermediary_reported(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.post_json("/v1/payments", &pagopa_body("1020.99")).await;
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 10).await;
    app.sim
        .pay(pending["payment"]["iuv"].as_str().unwrap())
        .await;
    let done: serde_json::Value = app
        .post(&format!("/v1/payments/{id}/update"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "COMPLETE", "{done}");
    let transaction = done["payment"]["transaction_id"].as_str().unwrap();

    let receipt = app.get(&format!("/v1/payments/{id}/receipt")).await;
    assert_eq!(receipt.status(), 200);
    assert_eq!(receipt.headers()["content-type"], "application/pdf");
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("receipt.pdf");
    std::fs::write(&pdf, receipt.bytes().await.unwrap()).unwrap();
    let text = run("pdftotext", &["-layout", pdf.to_str().unwrap(), "-"]);
    let notice_code = done["payment"]["notice_code"].as_str().unwrap();
    let grouped = cassa::domain::pagopa::in_groups_of_four(notice_code);
    for expected in [
        "RICEVUTA DI PAGAMENTO",
        "TARI 2026 rata 1",
        "1.020,99 Euro",
        "Mario Rossi (RSSMRA80A01H501U)",
        grouped.as_str(),
        transaction,
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not in the receipt:\n{text}"
        );
    }

    let json: serde_json::Value = app
        .get_accepting(&format!("/v1/payments/{id}/receipt"), "application/json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["transaction_id"], transaction);
}

on_both_databases!(the_receipt_is_a_pdf_of_what_the_intermediary_reported);
