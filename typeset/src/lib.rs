//! Documents as an office issues them: PDF in the 党政机关公文格式
//! (GB/T 9704-2012), and the case file (案卷) of an instance.
//!
//! The engine renders a document's parts from its definition (title,
//! 发文字号, 主送机关, 正文, 附件, 发文机关 and 成文日期, see
//! `notifiers::render::document_parts`); this crate typesets them. The
//! layouts are typst files shipped in `layouts/` and compiled into the
//! binary: `gongwen.typ` holds the page (A4, 天头 37 mm, 订口 28 mm, 版心
//! 156 × 225 mm, 22 lines of 28 characters in 3号 body type), the 版头 and
//! one function per layout (函, 意见书, 决定书, 通知书, 聘书, 公告, 记录);
//! `case_file.typ` the 案卷. The data goes in as JSON (`/data.json`), never
//! as typst markup, so no value an agency or an administrator typed can
//! change the layout.
//!
//! Typesetting is deterministic: the same parts and fonts give the same
//! bytes (no clock is read; the date is a part). Fonts are the system's
//! (fontconfig's directories) and an office's own directories; the families
//! are configurable ([`FontConfig`]) with a free fallback (Noto Serif CJK SC,
//! Debian's `fonts-noto-cjk`), and every font used is embedded as a subset.
//! A document whose text has a character no font covers is refused
//! ([`PdfError::MissingGlyphs`]) rather than printed with blanks.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use serde::{Deserialize, Serialize};
use typst::diag::{FileError, FileResult, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime, Duration};
use typst::layout::{Frame, FrameItem};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};
use typst_kit::fonts::FontStore;
use typst_layout::PagedDocument;

/// The shared layout library: page, 版头, and one function per layout.
pub const GONGWEN: &str = include_str!("../layouts/gongwen.typ");
/// The case file's layout.
pub const CASE_FILE: &str = include_str!("../layouts/case_file.typ");

/// The free CJK fallback of every family (Debian's `fonts-noto-cjk`).
pub const FALLBACK_SERIF: &str = "Noto Serif CJK SC";
/// The free 黑体 fallback (headings of the case file).
pub const FALLBACK_SANS: &str = "Noto Sans CJK SC";

/// One document's parts, as its definition renders them for an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Official {
    /// One of the process language's layouts (`duban_core::definition::LAYOUTS`):
    /// 函, 意见书, 决定书, 通知书, 公告, 聘书; anything else is set as a 记录.
    pub layout: String,
    /// The definition's kind (督办函, 决定书, …).
    pub kind: String,
    /// The title (标题), in 2号小标宋, centred.
    pub title: String,
    /// The 发文字号, e.g. `许司督〔2026〕3号`.
    pub number: Option<String>,
    /// The 主送机关 (without its `：`).
    pub to: Option<String>,
    /// The 正文: paragraphs are its lines; an empty line is dropped.
    pub body: String,
    /// The 附件, in order.
    pub attachments: Vec<String>,
    /// The 发文机关: the red 发文机关标志 of the 版头 and the 署名.
    pub issuer: Option<String>,
    /// The 成文日期, in Arabic numerals (`2026年3月5日`).
    pub date: Option<String>,
}

/// The case file (案卷) of one instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CaseFile {
    /// The process's name (行政执法监督督办).
    pub process: String,
    /// `supervision_letter 第6版`.
    pub definition: String,
    /// The instance's id.
    pub instance: String,
    /// The profile's name, if any.
    pub profile: Option<String>,
    /// The numbers that identify the case (督办案号, 发文字号), labelled.
    pub numbers: Vec<Labelled>,
    /// The parties (agencies and people named by its variables), labelled.
    pub parties: Vec<Labelled>,
    /// `running`, `completed`, …, in Chinese.
    pub status: String,
    /// When it was opened (Beijing time).
    pub opened: String,
    /// When it ended, if it has.
    pub closed: Option<String>,
    /// Every history entry, in order.
    pub timeline: Vec<Entry>,
    /// Every deadline counted, with its explanation.
    pub deadlines: Vec<DeadlineLine>,
    /// Every document issued, in order.
    pub documents: Vec<Official>,
    /// The day the case file was made.
    pub made: String,
}

/// A label and its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Labelled {
    /// E.g. 督办案号.
    pub label: String,
    /// E.g. 许司督案〔2026〕1号.
    pub value: String,
}

/// One history entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// When (Beijing time, `2026-03-05 10:00`).
    pub at: String,
    /// Who acted (a person's name and id, or 系统).
    pub actor: String,
    /// What happened, in Chinese.
    pub what: String,
}

/// One deadline of the case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadlineLine {
    /// The task or notice it bounds.
    pub task: String,
    /// The last day.
    pub last_day: String,
    /// How it was counted, in Chinese.
    pub explanation: String,
    /// 按期办结, 逾期办结, 期限届满, 已逾期, 未届满, ….
    pub state: String,
}

/// The font families of the layouts, each tried in order, and where to
/// find fonts besides the system's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FontConfig {
    /// 正文 (3号仿宋).
    pub body: Vec<String>,
    /// 标题 and 发文机关标志 (小标宋).
    pub title: Vec<String>,
    /// Headings of the case file (黑体).
    pub heading: Vec<String>,
    /// Directories scanned for fonts (an office's licensed fonts).
    pub dirs: Vec<PathBuf>,
    /// Whether the system's fonts are used too.
    pub system: bool,
}

impl Default for FontConfig {
    fn default() -> Self {
        FontConfig {
            body: vec!["FangSong_GB2312".into(), "FangSong".into()],
            title: vec!["FZXiaoBiaoSong-B05S".into()],
            heading: vec!["SimHei".into()],
            dirs: Vec::new(),
            system: true,
        }
    }
}

/// Why a document was not typeset.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    /// The layout failed (a bad override, or a bug in a shipped one).
    #[error("the layout `{layout}` does not typeset: {message}")]
    Layout {
        /// The layout.
        layout: String,
        /// typst's errors, one per line.
        message: String,
    },
    /// Characters no font covers.
    #[error("no installed font has a glyph for {chars} (the families configured: {fonts}; every other installed font was tried too); install fonts-noto-cjk or the office's fonts ([documents.fonts] in duban.toml), then restart `duban serve`")]
    MissingGlyphs {
        /// The characters.
        chars: String,
        /// The families configured.
        fonts: String,
    },
    /// The PDF writer failed.
    #[error("writing the PDF: {0}")]
    Export(String),
}

/// What [`Typesetter::fonts`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FontReport {
    /// Each configured family (fallbacks included) and whether it is there.
    pub families: Vec<(String, bool)>,
    /// Whether some font covers the test characters (督办函：〔〕).
    pub cjk: bool,
    /// How many font faces were found in all.
    pub faces: usize,
}

/// Typesets documents and case files with one set of fonts.
pub struct Typesetter {
    fonts: FontStore,
    library: LazyHash<Library>,
    config: FontConfig,
}

fn file_id(path: &str) -> FileId {
    FileId::new(RootedPath::new(
        VirtualRoot::Project,
        VirtualPath::new(path).expect("a fixed virtual path"),
    ))
}

static MAIN: LazyLock<FileId> = LazyLock::new(|| file_id("/main.typ"));
static LIB: LazyLock<FileId> = LazyLock::new(|| file_id("/gongwen.typ"));
static DATA: LazyLock<FileId> = LazyLock::new(|| file_id("/data.json"));

/// typst's caches are process-wide; one compilation at a time keeps their
/// memory bounded ([`comemo::evict`] after each).
static COMPILING: Mutex<()> = Mutex::new(());

struct Job<'a> {
    ts: &'a Typesetter,
    main: Source,
    lib: Source,
    data: Bytes,
}

impl World for Job<'_> {
    fn library(&self) -> &LazyHash<Library> {
        &self.ts.library
    }
    fn book(&self) -> &LazyHash<FontBook> {
        self.ts.fonts.book()
    }
    fn main(&self) -> FileId {
        *MAIN
    }
    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == *MAIN {
            Ok(self.main.clone())
        } else if id == *LIB {
            Ok(self.lib.clone())
        } else {
            Err(FileError::NotFound(
                id.get().vpath().get_without_slash().into(),
            ))
        }
    }
    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == *DATA {
            Ok(self.data.clone())
        } else {
            self.source(id)
                .map(|s| Bytes::from_string(s.text().to_string()))
        }
    }
    fn font(&self, index: usize) -> Option<Font> {
        self.ts.fonts.font(index)
    }
    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        // Deterministic: the date a document shows is one of its parts.
        None
    }
}

#[derive(Serialize)]
struct Fonts<'a> {
    body: Vec<&'a str>,
    title: Vec<&'a str>,
    heading: Vec<&'a str>,
}

#[derive(Serialize)]
struct Data<'a, T: Serialize> {
    fonts: Fonts<'a>,
    doc: &'a T,
}

impl Typesetter {
    /// A typesetter with the fonts of `config`: the system's (when
    /// `config.system`) and those in `config.dirs`, scanned once.
    pub fn new(config: FontConfig) -> Self {
        let mut fonts = FontStore::new();
        if config.system {
            fonts.extend(typst_kit::fonts::system());
        }
        for dir in &config.dirs {
            fonts.extend(typst_kit::fonts::scan(dir));
        }
        Typesetter {
            fonts,
            library: LazyHash::new(Library::builder().build()),
            config,
        }
    }

    fn with_fallback<'a>(list: &'a [String], fallback: &'a str) -> Vec<&'a str> {
        let mut v: Vec<&str> = list.iter().map(String::as_str).collect();
        if !v.contains(&fallback) {
            v.push(fallback);
        }
        v
    }

    fn fonts_json(&self) -> Fonts<'_> {
        Fonts {
            body: Self::with_fallback(&self.config.body, FALLBACK_SERIF),
            title: Self::with_fallback(&self.config.title, FALLBACK_SERIF),
            heading: Self::with_fallback(&self.config.heading, FALLBACK_SANS),
        }
    }

    /// Which configured families are installed, and whether any font can
    /// set Chinese: what `duban config check` reports.
    pub fn fonts(&self) -> FontReport {
        let book = self.fonts.book();
        let f = self.fonts_json();
        let mut families = Vec::new();
        let mut seen = BTreeSet::new();
        for name in f.body.iter().chain(&f.title).chain(&f.heading) {
            if seen.insert(name.to_lowercase()) {
                let found = book.contains_family(&name.to_lowercase());
                families.push((name.to_string(), found));
            }
        }
        let infos: Vec<_> = (0..).map_while(|i| book.info(i)).collect();
        let cjk = "督办函：〔〕"
            .chars()
            .all(|c| infos.iter().any(|info| info.coverage.contains(c as u32)));
        let faces = infos.len();
        FontReport {
            families,
            cjk,
            faces,
        }
    }

    /// The PDF of one document.
    pub fn document(&self, doc: &Official) -> Result<Vec<u8>, PdfError> {
        let main = "#import \"/gongwen.typ\": *\n#let data = json(\"/data.json\")\n#show: page-setup.with(data.fonts, number-first: data.doc.layout != \"函\")\n#official(data.fonts, data.doc)\n";
        self.compile(&doc.layout, main, GONGWEN, doc)
    }

    /// The PDF of a case file.
    pub fn case_file(&self, case: &CaseFile) -> Result<Vec<u8>, PdfError> {
        self.compile("案卷", CASE_FILE, GONGWEN, case)
    }

    fn compile<T: Serialize>(
        &self,
        layout: &str,
        main: &str,
        lib: &str,
        doc: &T,
    ) -> Result<Vec<u8>, PdfError> {
        let data = Data {
            fonts: self.fonts_json(),
            doc,
        };
        let job = Job {
            ts: self,
            main: Source::new(*MAIN, main.to_string()),
            lib: Source::new(*LIB, lib.to_string()),
            data: Bytes::new(serde_json::to_vec(&data).expect("documents serialise")),
        };
        let _one = COMPILING.lock().unwrap_or_else(|p| p.into_inner());
        let result = typst::compile::<PagedDocument>(&job);
        let out = match result.output {
            Err(errors) => Err(PdfError::Layout {
                layout: layout.to_string(),
                message: messages(&job, &errors),
            }),
            Ok(document) => match missing_glyphs(&document) {
                Some(chars) => Err(PdfError::MissingGlyphs {
                    chars,
                    fonts: {
                        let mut all: Vec<&str> = Vec::new();
                        for f in data
                            .fonts
                            .body
                            .iter()
                            .chain(&data.fonts.title)
                            .chain(&data.fonts.heading)
                        {
                            if !all.contains(f) {
                                all.push(f);
                            }
                        }
                        all.join(", ")
                    },
                }),
                None => typst_pdf::pdf(&document, &pdf_options())
                    .map_err(|e| PdfError::Export(messages(&job, &e))),
            },
        };
        typst::comemo::evict(10);
        out
    }
}

/// typst's errors, each with the layout file and line it points at.
fn messages(job: &Job<'_>, errors: &[SourceDiagnostic]) -> String {
    use typst::WorldExt;
    errors
        .iter()
        .map(|e| {
            let hints: String = e
                .hints
                .iter()
                .map(|h| format!(" (hint: {})", h.v))
                .collect();
            let at = e
                .span
                .id()
                .zip(job.range(e.span))
                .and_then(|(id, range)| {
                    let source = job.source(id).ok()?;
                    let line = source.text()[..range.start].matches('\n').count() + 1;
                    Some(format!("{}:{line}: ", id.get().vpath().get_without_slash()))
                })
                .unwrap_or_default();
            format!("{at}{}{hints}", e.message)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The characters typeset with no glyph (the font's `.notdef`).
fn missing_glyphs(doc: &PagedDocument) -> Option<String> {
    fn walk(frame: &Frame, out: &mut BTreeSet<char>) {
        for (_, item) in frame.items() {
            match item {
                FrameItem::Group(g) => walk(&g.frame, out),
                FrameItem::Text(t) => {
                    for g in t.glyphs.iter().filter(|g| g.id == 0) {
                        let range = g.range();
                        out.extend(
                            t.text
                                .get(range)
                                .unwrap_or_default()
                                .chars()
                                .filter(|c| !c.is_whitespace()),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    let mut missing = BTreeSet::new();
    for page in doc.pages() {
        walk(&page.frame, &mut missing);
    }
    (!missing.is_empty()).then(|| {
        missing
            .into_iter()
            .map(|c| format!("`{c}` (U+{:04X})", c as u32))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

static SHARED: std::sync::OnceLock<Typesetter> = std::sync::OnceLock::new();

/// Sets the fonts of the process's one [`Typesetter`] ([`shared`]), before
/// its first use: `serve` does it from `[documents.fonts]`. Returns false
/// when the typesetter was already made (its fonts then stay).
pub fn configure(config: FontConfig) -> bool {
    let mut fresh = false;
    SHARED.get_or_init(|| {
        fresh = true;
        Typesetter::new(config)
    });
    fresh
}

/// The process's typesetter: fonts are scanned once, on first use, with
/// the [`FontConfig`] given to [`configure`] or the default one.
pub fn shared() -> &'static Typesetter {
    SHARED.get_or_init(|| Typesetter::new(FontConfig::default()))
}

/// The PDF's options: untagged, because poppler (Debian's `pdfinfo`,
/// `pdftotext`, what an office's tools read PDFs with) reports the tagged
/// catalogue's `/MarkInfo` of typst 0.15 as a syntax error on every read.
fn pdf_options() -> typst_pdf::PdfOptions {
    typst_pdf::PdfOptions {
        tagged: false,
        ..Default::default()
    }
}
