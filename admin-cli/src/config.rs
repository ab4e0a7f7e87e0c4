//! `duban config check`: read `duban.toml` and the secrets in the
//! environment the way `serve` does, and report every problem by its key.

use std::path::{Path, PathBuf};

use duban_engine::definition::{self, Definition};
use duban_notifiers::config::{self, Loaded, ProcessEnv};

use crate::exit;

/// The file `serve` and `config check` read: the one given (`--config`,
/// `DUBAN_CONFIG`), which must exist, else `duban.toml` in the home if
/// there is one.
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// Whether it was named, and so must exist.
    pub required: bool,
}

impl Source {
    /// The file named, else the home's `duban.toml`.
    pub fn new(given: Option<PathBuf>, home: &crate::instances::DbArgs) -> Source {
        match given {
            Some(path) => Source {
                path,
                required: true,
            },
            None => Source {
                path: home.under_home(None, "duban.toml"),
                required: false,
            },
        }
    }
}

/// Gives the process's typesetter the fonts of the home's `duban.toml`
/// (`[documents.fonts]`), for the commands that typeset outside `serve`
/// (`case-file`, `simulate --case-file`), so their PDF is set as `serve`'s
/// is. A configuration that does not load leaves the defaults, saying so.
pub fn fonts_from_home(home: &crate::instances::DbArgs) {
    let source = Source::new(None, home);
    let loaded = config::load(&source.path, false, &ProcessEnv, &[]);
    match loaded.config {
        Some(c) => {
            duban_typeset::configure(c.fonts);
        }
        None => errln!(
            "duban: {} has errors (see `duban config check`); the documents use the default fonts",
            source.path.display()
        ),
    }
}

/// The valid definitions of the library at `processes` (none when absent).
fn library(processes: &Path) -> Vec<Definition> {
    if !processes.exists() {
        return Vec::new();
    }
    let files = definition::expand_paths(&[processes.to_path_buf()]).unwrap_or_default();
    definition::load_library(&files, &[])
        .definitions
        .into_values()
        .collect()
}

/// Loads the configuration; `definitions` are the processes whose SMS
/// templates need gateway template codes.
/// The fonts of `[documents.fonts]` become the process's typesetter's
/// (scanned once), and what they lack is warned of.
pub fn load(source: &Source, definitions: &[&Definition]) -> Loaded {
    let mut loaded = config::load(&source.path, source.required, &ProcessEnv, definitions);
    if let Some(c) = &loaded.config {
        duban_typeset::configure(c.fonts.clone());
        let configured = c.fonts != duban_typeset::FontConfig::default();
        loaded.problems.extend(config::font_problems(
            &duban_typeset::shared().fonts(),
            configured,
        ));
    }
    loaded
}

/// `duban config check`: exit 0 when `serve` would accept the
/// configuration (warnings allowed), 1 listing the errors.
pub fn check(source: &Source, processes: &Path, json: bool) -> u8 {
    let path = &source.path;
    let defs = library(processes);
    let refs: Vec<&Definition> = defs.iter().collect();
    let loaded = load(source, &refs);
    if json {
        let v: Vec<_> = loaded
            .problems
            .iter()
            .map(|p| {
                serde_json::json!({
                    "key": p.key,
                    "level": if p.warning { "warning" } else { "error" },
                    "message": p.message,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
    } else {
        for p in &loaded.problems {
            outln!("{p}");
        }
    }
    match &loaded.config {
        Some(c) => {
            if !json {
                let file = c
                    .file
                    .as_ref()
                    .map_or(format!("no {} (defaults)", path.display()), |f| {
                        f.display().to_string()
                    });
                let email = c
                    .email
                    .as_ref()
                    .map_or("off".to_string(), |e| format!("{}:{}", e.host, e.port));
                let sms = match &c.sms {
                    Some(config::SmsSettings::Aliyun(_)) => "aliyun",
                    Some(config::SmsSettings::Webhook(_)) => "webhook",
                    None => "off",
                };
                outln!(
                    "{file}: ok (email {email}, sms {sms}, outbox {} attempts)",
                    c.policy.max_attempts
                );
            }
            exit::OK
        }
        None => {
            if !json {
                let n = loaded.problems.iter().filter(|p| !p.warning).count();
                outln!("{}: {n} error(s)", path.display());
            }
            exit::INVALID
        }
    }
}
