//! The typesetter on its own: every layout typesets a document with every
//! part, the same parts give the same bytes, values are data (never typst
//! markup), and a character no font has refuses the document.
//!
//! Needs a CJK font (`fonts-noto-cjk`) and, for reading the text back,
//! poppler's `pdftotext`; `.ci/run` installs both.

use std::process::Command;

use duban_core::definition::LAYOUTS;
use duban_typeset::{shared, Official, PdfError};

fn letter(layout: &str) -> Official {
    Official {
        layout: layout.into(),
        kind: "督办函".into(),
        title: "关于督促依法履行行政执法职责的行政执法监督督办函".into(),
        number: Some("许司督〔2026〕3号".into()),
        to: Some("许昌市市场监督管理局".into()),
        body: "经监督，发现你单位存在以下问题：\n\n未落实行政执法公示制度。\n请于30日内报告。"
            .into(),
        attachments: vec!["行政执法监督检查记录".into(), "整改台账".into()],
        issuer: Some("许昌市司法局".into()),
        date: Some("2026年3月3日".into()),
    }
}

fn text_of(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = Command::new("pdftotext")
        .args([file.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils)");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_layout_typesets_every_part_and_the_same_parts_give_the_same_bytes() {
    for layout in LAYOUTS {
        let doc = letter(layout);
        let pdf = shared()
            .document(&doc)
            .unwrap_or_else(|e| panic!("{layout}: {e}"));
        assert!(pdf.starts_with(b"%PDF-"), "{layout}");
        let text: String = text_of(&pdf).split_whitespace().collect();
        for part in [
            "许昌市市场监督管理局：",
            "未落实行政执法公示制度。",
            "整改台账",
            "2026年3月3日",
        ] {
            assert!(text.contains(part), "{layout}: {part} not in {text}");
        }
        assert_eq!(
            shared().document(&doc).unwrap(),
            pdf,
            "{layout}: deterministic"
        );
    }
    // Without the optional parts too.
    let bare = Official {
        number: None,
        to: None,
        attachments: vec![],
        issuer: None,
        date: None,
        ..letter("函")
    };
    for layout in LAYOUTS {
        shared()
            .document(&Official {
                layout: layout.to_string(),
                ..bare.clone()
            })
            .unwrap_or_else(|e| panic!("{layout} without parts: {e}"));
    }
}

#[test]
fn values_are_printed_as_written_never_read_as_markup() {
    let doc = Official {
        to: Some("#set page(paper: \"a5\") *某局* $x$".into()),
        body: "#pagebreak() [内容] <label> @ref \\ 结束".into(),
        ..letter("函")
    };
    let pdf = shared().document(&doc).unwrap();
    let text = text_of(&pdf);
    assert!(
        text.contains("#set page(paper: \"a5\") *某局* $x$"),
        "{text}"
    );
    assert!(
        text.contains("#pagebreak() [内容] <label> @ref \\ 结束"),
        "{text}"
    );
    assert_eq!(text.matches('\u{c}').count(), 1, "one page: {text}");
}

#[test]
fn a_character_no_font_has_refuses_the_document() {
    let doc = Official {
        body: "未落实\u{0378}公示制度".into(),
        ..letter("函")
    };
    match shared().document(&doc) {
        Err(PdfError::MissingGlyphs { chars, fonts }) => {
            assert!(chars.contains("U+0378"), "{chars}");
            assert!(fonts.contains("Noto Serif CJK SC"), "{fonts}");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|b| b.len())),
    }
}

#[test]
fn fonts_report_the_fallback_and_chinese_coverage() {
    let r = shared().fonts();
    assert!(r.cjk, "a CJK font is installed (fonts-noto-cjk): {r:?}");
    assert!(
        r.families
            .iter()
            .any(|(n, found)| n == "Noto Serif CJK SC" && *found),
        "{r:?}"
    );
}
