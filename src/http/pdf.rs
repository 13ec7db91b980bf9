//! One-page A4 documents (the notice, the receipt) written with krilla: DejaVu Sans
//! embedded and subset, so they print the same everywhere; y grows downwards, in points.

use krilla::geom::{PathBuilder, Point, Rect};
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};

static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// A4 in points.
pub const PAGE_WIDTH: f32 = 595.0;
pub const PAGE_HEIGHT: f32 = 842.0;
pub const MARGIN: f32 = 48.0;

/// Why a document cannot be written (a bug, not the payment's fault).
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the embedded font cannot be read")]
    Font,
    #[error("the QR code cannot be built: {0}")]
    Qr(String),
    #[error("the PDF cannot be written: {0}")]
    Pdf(String),
}

/// The page being drawn.
pub struct Page<'s, 'p> {
    surface: &'s mut Surface<'p>,
    regular: Font,
    bold: Font,
}

impl Page<'_, '_> {
    /// A line of text whose baseline starts at (`x`, `y`).
    pub fn text(&mut self, bold: bool, size: f32, x: f32, y: f32, line: &str) {
        let font = if bold { &self.bold } else { &self.regular };
        self.surface.draw_text(
            Point::from_xy(x, y),
            font.clone(),
            size,
            line,
            false,
            TextDirection::Auto,
        );
    }

    /// A label in small capitals and its value below it.
    pub fn field(&mut self, x: f32, y: f32, label: &str, value: &str) {
        self.text(true, 9.0, x, y, label);
        self.text(false, 12.0, x, y + 18.0, value);
    }

    /// A horizontal rule across the page at `y`.
    pub fn rule(&mut self, y: f32) {
        let mut line = PathBuilder::new();
        line.move_to(MARGIN, y);
        line.line_to(PAGE_WIDTH - MARGIN, y);
        if let Some(path) = line.finish() {
            self.surface.set_fill(None);
            self.surface.set_stroke(Some(Stroke::default()));
            self.surface.draw_path(&path);
            self.surface.set_stroke(None);
            self.surface.set_fill(Some(Fill::default()));
        }
    }

    /// Black squares of side `side` at the given top-left corners (a 2D code's modules).
    pub fn squares(&mut self, side: f32, corners: impl IntoIterator<Item = (f32, f32)>) {
        let mut modules = PathBuilder::new();
        for (x, y) in corners {
            if let Some(rect) = Rect::from_xywh(x, y, side, side) {
                modules.push_rect(rect);
            }
        }
        if let Some(path) = modules.finish() {
            self.surface.draw_path(&path);
        }
    }
}

/// A one-page A4 PDF, drawn by `draw`.
pub fn a4(
    draw: impl FnOnce(&mut Page<'_, '_>) -> Result<(), PdfError>,
) -> Result<Vec<u8>, PdfError> {
    let regular = Font::new(REGULAR.into(), 0).ok_or(PdfError::Font)?;
    let bold = Font::new(BOLD.into(), 0).ok_or(PdfError::Font)?;
    let mut document = krilla::Document::new();
    let settings = krilla::page::PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT)
        .ok_or_else(|| PdfError::Pdf("page size".into()))?;
    let mut page = document.start_page_with(settings);
    let mut surface = page.surface();
    surface.set_fill(Some(Fill::default()));
    draw(&mut Page {
        surface: &mut surface,
        regular,
        bold,
    })?;
    surface.finish();
    page.finish();
    document
        .finish()
        .map_err(|e| PdfError::Pdf(format!("{e:?}")))
}
